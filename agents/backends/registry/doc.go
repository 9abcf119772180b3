// Package registry is branchml's image registry concern: an embedded OCI
// registry served on loopback with its data on disk (Server, EnsureLocal, the
// `branchml registry serve` command), and the Registry interface the stages
// push and pull images through, with a real implementation for any OCI
// registry (Remote) and one for the embedded registry (Local), picked by Open.
//
// # The embedded registry across processes
//
// Its data lives in <state dir>/registry (see agents/internal/statedir): blobs/,
// manifests/ (persisted by this package: go-containerregistry v0.22 keeps
// manifests in memory only), id (the directory's identity) and addr (the
// host:port it last listened on).
//
//   - `branchml registry serve` runs it until interrupted and writes addr.
//   - EnsureLocal (used by Open for backends.registry.type local, so by the
//     build stage, the training runner and the deploy stage) reuses the
//     registry at addr when it answers with this directory's id; otherwise
//     it starts one inside the calling process, on the recorded port when
//     free, else on a new free port that it records, and stops it when the
//     command ends.
//   - The port can still change between runs; consumers therefore resolve
//     references recorded in locks with Rewrite or Local.Pull, which swap
//     the host for the current address. Digests never change.
//
// Two commands starting at the same instant with no registry running may
// both start one on the same directory; blobs and manifests are written
// atomically, so both see consistent data, but each serves only the
// manifests it loaded at start and those pushed through it. Run `branchml
// registry serve` for long multi-process sessions (the quickstart does).
//
// As part of the registry backend it imports only packages of that concern
// (agents/backends/registry/...), agents/records, agents/config and helpers;
// never a stage, a command or another concern.
package registry
