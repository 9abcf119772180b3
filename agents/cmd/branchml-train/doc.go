// Command branchml-train runs the train stage of branchml; see agents/README.md.
//
// It imports only agents/cli and its binary's command package under
// agents/cli.
package main
