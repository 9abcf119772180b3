// Command release builds the versioned branchml agent archives, reproducibly,
// and pins their digests: for linux/amd64 and linux/arm64 it builds every
// agents/cmd binary from a commit's tree (git archive, so nothing uncommitted
// leaks in) with -trimpath, -buildvcs=false, CGO_ENABLED=0 and the Go
// toolchain the pins name (GOTOOLCHAIN), and packs them into
// branchml-agents-<version>-linux-<arch>.tar.gz: entries sorted, owner 0,
// mode 0755, mtime the commit's time, gzip without name or time. The same
// commit, version and toolchain give the same bytes.
//
//	go run ./tools/release -version v0.1.0            # dist/ + resources/branchml/agents.sha256
//	go run ./tools/release -check                     # rebuild what the pins name; exit 1 on another digest
//
// The pins file (resources/branchml/agents.sha256, read by the Jenkins step
// branchmlAgent) records the version, the release URL, the source commit,
// the Go toolchain and one "<sha256>  <archive>" line per platform.
//
// It is a maintainer's tool of the repository, outside the agents' module
// tree (agents/): it imports only the standard library.
package main
