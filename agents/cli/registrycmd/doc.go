// Package registrycmd is `branchml registry`: it serves the embedded OCI
// registry of agents/backends/registry on loopback.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package registrycmd
