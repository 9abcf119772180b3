// Package serving holds the tests of the Kubernetes serving backend on the
// test bed's node: real pods of the example serve image (the djia30 TF
// Serving stand-in, pulled from the test bed's registry on 127.0.0.1), the
// model on a CSI PVC, the ConfigMap synced by the kubelet, EndpointSlices
// made by the controller manager, and the deploy stage's canary driven
// through them. The backend runs as branchml-deploy does with
// backends.serving.access: apiserver, with the branchml-agent account of
// resources/branchml/agent-rbac.yaml: it reaches the Services and the pods
// through the API server's proxy. The tests' load, standing in for the
// model's clients, goes through a kube-proxy stand-in per Service (package
// podnet: port-forwards through the API server). Everything the tests send
// goes to 127.0.0.1; the API server and the kubelet carry it to the pods.
// There is no non-test code here.
package serving
