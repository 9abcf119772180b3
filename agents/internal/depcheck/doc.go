// Package depcheck fences the layout of agents/: Place puts a package in
// its group by folder, Allowed says which groups may import which, and
// ThirdParty keeps protocol-specific modules to the packages that own the
// protocol. Its test reads the import graph of every package under agents/
// (`go list -json`) and fails on an arrow the rules forbid, as
// go-containerregistry's pkg/registry/depcheck_test.go does. The rules are
// also written down in agents/README.md (Layout). It imports nothing of ours.
package depcheck
