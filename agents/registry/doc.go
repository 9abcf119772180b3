// Package registry is branchml's image registry concern: an embedded OCI
// registry served on loopback with its data on disk (Server, EnsureLocal, the
// `branchml registry serve` command), and the Registry interface the stages
// push and pull images through, with a real implementation for any OCI
// registry (Remote) and one for the embedded registry (Local), picked by Open.
package registry
