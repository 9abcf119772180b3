// Package records defines the files the stages write back to their branches
// and read from each other: the components lock, the pipeline lock, run
// records, the deploy spec and the deploy status. Each is JSON (deploy.yaml is
// YAML) with apiVersion "branchml.dev/v1" and a kind.
//
// ParseJSON is the one reader of records: a corrupted record is an
// agent.StateError naming the file and its repair (Repair).
//
// It imports only backend interface packages, for their value types, and
// helpers (agents/internal/agent for StateError).
package records
