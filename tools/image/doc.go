// Package image tests scripts/image.sh, the daemonless build of the agents
// image (buildah, vfs storage, chroot isolation), on a minimal root file
// system: the image holds the agents at /usr/local/bin and runs as
// 10001:10001, it is pushed to a Distribution registry on 127.0.0.1 (Debian's
// docker-registry), pulled back (skopeo), unpacked (umoci) and `branchml
// version` runs from its root file system (chroot); building it twice gives
// the same image ID. A second test builds it as `make image` does (the
// Debian root file system of mmdebstrap, the pinned Go toolchain module, every
// agent built from the work tree instead of the pinned release) and runs
// `branchml-build run --dry-run` on examples/djia30 from its root file system
// (chroot as 10001 with the image's environment, new mount, pid and network
// namespaces: /proc, loopback only; the example's modules from a file://
// GOPROXY), comparing the plan with the one made on the host.
//
// It has no code of its own; it imports only the standard library.
package image
