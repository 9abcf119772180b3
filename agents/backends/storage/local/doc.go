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
//	index/<volume>.json              path → stat data and sha256 of the last snapshot (a checked cache)
//
// Blobs are copies of the live files (reflinks, FICLONE, where the file
// system shares extents: btrfs, XFS with reflink=1), never hard links to
// them, so a writer that changes a live file in place cannot change a
// snapshot. One process at a time mutates a state directory (an flock on
// <stateDir>/.lock).
//
// Stat data is not trusted alone. A file is not re-read only when git's
// stat fields (ctime, mtime, dev, inode, mode, uid, gid, size) are those
// the index recorded, the file was not racy then (changed in the clock
// tick of that snapshot), and the index itself is the one written for the
// volume's latest snapshot: its checksum matches, that snapshot exists
// with the handle it names, and its hashes are the ones that snapshot's
// manifest records. Anything else is doubt, and every file is re-hashed
// (meta.json's indexDoubt says why). Clone and restore hash what they copy
// and refuse a snapshot whose tree is not its manifest (storage.ErrCorrupt).
//
// As an implementation of the storage backend it imports only packages of
// that concern (agents/backends/storage/...), agents/records, agents/config
// and helpers; never a stage, a command or another concern.
package local
