// Package statedir says where branchml's local backends keep their data on
// this machine: the embedded registry, the bare git remote, the runner's
// volumes and snapshots.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package statedir
