// Package jenkinssetup tests the files of the Jenkins set-up guide
// (docs/jenkins.md) against the library and each other: the JCasC file
// (docs/jenkins/casc.yaml) approves the hash of the seed script as it is,
// declares exactly the credential IDs the steps and the seed script use,
// configures the library the Jenkinsfiles load; the RBAC manifest
// (resources/branchml/agent-rbac.yaml) has the pod template's
// ServiceAccount with what the agents' Kubernetes backends call; plugins.txt
// is in the plugin installation manager's format.
//
// It has no code of its own; it imports the standard library, sigs.k8s.io/yaml
// and agents/backends/jenkins (the script approval hash).
package jenkinssetup
