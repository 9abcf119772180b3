// Package snapshot is the branchml-snapshot agent: its commands and flags.
// The work is done by agents/stages/snapshot, agents/stages/snapshot/lineage and the storage
// backends (agents/backends/storage/storagefactory).
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package snapshotcmd
