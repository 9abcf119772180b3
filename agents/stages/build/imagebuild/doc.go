// Package imagebuild makes OCI images of components without a Docker daemon:
// Go components are compiled (CompileGo: one go build for several
// binaries) and layered with go-containerregistry on branchml's base image
// (ImageFromBinary, agents/internal/baseimage), one image per platform and
// an index for several (Index); Dockerfile components are built by an
// external builder found on PATH (docker buildx, buildah or kaniko; see
// DetectBuilder). Labels and the revision are set on the config (Meta,
// WithMeta), so that the same content can be given back its first revision.
//
// As part of the build stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package imagebuild
