// Package imagebuild makes OCI images of components without a Docker daemon:
// Go components are compiled and layered with go-containerregistry (BuildGo),
// Dockerfile components are built by an external builder found on PATH
// (docker buildx, buildah or kaniko; see DetectBuilder).
//
// As part of the build stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package imagebuild
