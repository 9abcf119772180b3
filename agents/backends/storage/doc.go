// Package storage is the interface to volumes and their snapshots: PVCs and
// CSI VolumeSnapshots on a NetApp Trident storage/snapshot class, or local
// directories with immutable, deduplicated snapshots.
//
// As part of the storage backend it imports only packages of that concern
// (agents/backends/storage/...), agents/records, agents/config and helpers;
// never a stage, a command or another concern.
package storage
