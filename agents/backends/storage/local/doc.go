// Package local is the embedded storage backend: volumes are directories,
// snapshots are immutable, content-deduplicated trees of hard links into a
// content-addressed store, taken in time proportional to what changed.
//
// Layout under the state directory:
//
//	volumes/<name>/                  live volumes (plain writable directories)
//	volmeta/<name>.json              volume metadata (size asked, labels, clone origin)
//	cas/sha256/ab/cdef…              content-addressed blobs, read-only (0444)
//	snapshots/<name>/tree/…          the snapshot: read-only dirs, files hard-linked to blobs
//	snapshots/<name>/manifest.json   what the tree must contain (immutable)
//	snapshots/<name>/meta.json       labels, annotations (the lineage) and statistics
//	index/<volume>.json              path → (size, mtime, ctime, inode, sha256) of the last snapshot
//
// Blobs are copies of the live files, never links to them, so a writer that
// changes a live file in place cannot change a snapshot. One process at a
// time mutates a state directory (an flock on <stateDir>/.lock).
//
// As an implementation of the storage backend it imports only packages of
// that concern (agents/backends/storage/...), agents/records, agents/config
// and helpers; never a stage, a command or another concern.
package local
