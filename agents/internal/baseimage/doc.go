// Package baseimage makes the base image of branchml's component images, in
// the spirit of distroless' static:nonroot but built here, byte for byte
// the same on every machine: a non-root user (nonroot, 65532:65532) with
// its home, a writable /tmp (1777), /etc/passwd, /etc/group,
// /etc/nsswitch.conf and the Mozilla (NSS) root certificates at
// /etc/ssl/certs/ca-certificates.crt, taken from the Go module
// golang.org/x/crypto/x509roots/fallback pinned in go.mod (not from the
// machine that builds), so the base's digest depends only on branchml's
// version. The build stage puts Go components on it; the agents image can
// start from it too.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package baseimage
