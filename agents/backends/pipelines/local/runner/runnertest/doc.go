// Package runnertest helps tests run real pipelines with the local runner:
// it builds the tiny static test program (agents/backends/pipelines/local/runner/testdata/tool) once,
// packs it into an OCI image with go-containerregistry's mutate/empty/tarball,
// and pushes it to a registry (e.g. an httptest server of pkg/registry).
//
// As an implementation of the pipelines backend it imports only packages of
// that concern (agents/backends/pipelines/...), agents/records,
// agents/config and helpers; never a stage, a command or another concern.
package runnertest
