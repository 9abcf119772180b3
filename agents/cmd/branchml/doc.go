// Command branchml is the operators' umbrella command; see agents/README.md.
//
// It imports only agents/cli and its binary's command package under
// agents/cli.
package main
