// Package imagebuild makes OCI images of components without a Docker daemon:
// Go components are compiled and layered with go-containerregistry (BuildGo),
// Dockerfile components are built by an external builder found on PATH
// (docker buildx, buildah or kaniko; see DetectBuilder).
package imagebuild
