// Package image tests scripts/image.sh, the daemonless build of the agents
// image (buildah, vfs storage, chroot isolation), on a minimal root file
// system: the image holds the agents at /usr/local/bin and runs as
// 10001:10001, it is pushed to a Distribution registry on 127.0.0.1 (Debian's
// docker-registry), pulled back (skopeo), unpacked (umoci) and `branchml
// version` runs from its root file system (chroot); building it twice gives
// the same image ID. `make image` adds what this test leaves out to stay fast:
// the Debian root file system (mmdebstrap) and the Go toolchain.
//
// It has no code of its own; it imports only the standard library.
package image
