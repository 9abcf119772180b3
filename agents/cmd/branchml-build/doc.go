// Command branchml-build runs the build stage of branchml; see agents/README.md.
//
// It imports only agents/cli and its binary's command package under
// agents/cli.
package main
