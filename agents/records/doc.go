// Package records defines the files the stages write back to their branches
// and read from each other: the components lock, the pipeline lock, run
// records, the deploy spec and the deploy status. Each is JSON (deploy.yaml is
// YAML) with apiVersion "branchml.dev/v1" and a kind.
//
// It imports only backend interface packages, for their value types.
package records
