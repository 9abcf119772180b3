// Package prcmd is `branchml pr`: the pull requests of the local forge
// (agents/backends/forge/gitremote) for a person, as a forge's web UI
// offers them: list, show, open, approve, merge, close.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package prcmd
