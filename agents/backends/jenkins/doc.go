// Package jenkins drives a Jenkins controller over its REST API through
// gojenkins: it creates or updates the branchml seed job (config.xml),
// triggers a branch build of a Multibranch Pipeline job, follows the queue
// item to its build number, streams the console (progressiveText) and reports
// the result. Authentication is a user and API token (Basic); when Jenkins
// asks for a CSRF crumb, the crumb is sent with the session cookie it is bound
// to and fetched afresh once after a 403.
//
// As part of the jenkins backend it imports only packages of that concern
// (agents/backends/jenkins/...), agents/records, agents/config and helpers;
// never a stage, a command or another concern.
package jenkins
