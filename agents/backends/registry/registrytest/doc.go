// Package registrytest starts a real CNCF Distribution registry (Debian's
// docker-registry, the registry Docker Hub and most self-hosted registries
// run) on 127.0.0.1 for integration tests: with htpasswd authentication,
// with TLS from a CA the test makes, or both. Everything it starts is
// stopped when the test ends (process group, parent-death signal).
//
// Tests only. As part of the registry backend it imports only packages of
// that concern, agents/config and helpers.
package registrytest
