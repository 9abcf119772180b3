package local

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// IndexSchemaVersion is the schemaVersion of index/<volume>.json.
const IndexSchemaVersion = 2

// index is index/<volume>.json: what the latest snapshot of a volume saw of
// each live file, so that the next snapshot need not re-read files whose
// stat data is unchanged (git's index does the same for the work tree).
//
// It is a cache and trusted only when it is provably the one this backend
// wrote for a snapshot that still exists unchanged: its checksum matches,
// the snapshot it names exists with that handle, and every hash it holds is
// the one that snapshot's manifest records for the path. Anything else puts
// it in doubt, and every file is re-hashed.
type index struct {
	SchemaVersion int    `json:"schemaVersion"`
	Volume        string `json:"volume"`
	// Snapshot and Handle name the snapshot the entries were taken for.
	Snapshot string                `json:"snapshot"`
	Handle   string                `json:"handle"`
	Files    map[string]indexEntry `json:"files"`
	// Checksum is "sha256:<hex>" of the index's JSON with Checksum empty.
	Checksum string `json:"checksum"`
}

// indexEntry is the stat data of one live file, the fields git compares
// (ctime, mtime, dev, ino, mode, uid, gid, size), and its content hash.
type indexEntry struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtimeNs"`
	CtimeNs int64  `json:"ctimeNs"`
	Ino     uint64 `json:"ino"`
	Dev     uint64 `json:"dev"`
	Mode    uint32 `json:"mode"`
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	// SHA256 is "" when the entry was racy (changed in the clock tick of
	// the snapshot that saw it): such a file is re-hashed next time.
	SHA256 string `json:"sha256,omitempty"`
}

func statKey(fi fs.FileInfo) indexEntry {
	st := fi.Sys().(*syscall.Stat_t)
	return indexEntry{
		Size: fi.Size(), Ino: st.Ino, Dev: uint64(st.Dev), Mode: st.Mode, UID: st.Uid, GID: st.Gid,
		MtimeNs: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		CtimeNs: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
	}
}

// sameStat reports whether a and b have equal stat data (hashes aside).
func sameStat(a, b indexEntry) bool {
	a.SHA256, b.SHA256 = "", ""
	return a == b
}

func (x *index) checksum() string {
	c := *x
	c.Checksum = ""
	js, _ := json.Marshal(c)
	sum := sha256.Sum256(js)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// loadIndex returns the trusted entries of volume's index, or none and why
// the index was not trusted ("" when there was no index: a first snapshot).
func (b *Backend) loadIndex(volume string) (map[string]indexEntry, string) {
	raw, err := os.ReadFile(b.indexPath(volume))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]indexEntry{}, ""
	}
	doubt := func(format string, args ...any) (map[string]indexEntry, string) {
		return map[string]indexEntry{}, fmt.Sprintf("index of volume %s not trusted: ", volume) + fmt.Sprintf(format, args...)
	}
	if err != nil {
		return doubt("%v", err)
	}
	var x index
	if err := json.Unmarshal(raw, &x); err != nil {
		return doubt("%v", err)
	}
	switch {
	case x.SchemaVersion != IndexSchemaVersion:
		return doubt("schemaVersion %d, want %d", x.SchemaVersion, IndexSchemaVersion)
	case x.Checksum != x.checksum():
		return doubt("its checksum does not match its content")
	case x.Volume != volume:
		return doubt("it describes volume %q", x.Volume)
	}
	meta, err := b.readMeta(x.Snapshot)
	if err != nil {
		return doubt("its snapshot %s: %v", x.Snapshot, err)
	}
	man, err := b.Manifest(x.Snapshot)
	if err != nil {
		return doubt("its snapshot %s: %v", x.Snapshot, err)
	}
	if meta.Handle != x.Handle || handleOf(man.Entries) != x.Handle {
		return doubt("snapshot %s no longer has handle %s", x.Snapshot, x.Handle)
	}
	recorded := make(map[string]Entry, len(man.Entries))
	for _, e := range man.Entries {
		if e.Type == "file" {
			recorded[e.Path] = e
		}
	}
	for p, e := range x.Files {
		if e.SHA256 == "" {
			continue
		}
		if m, ok := recorded[p]; !ok || m.SHA256 != e.SHA256 || m.Size != e.Size {
			return doubt("its entry %s is not what snapshot %s recorded", p, x.Snapshot)
		}
	}
	if x.Files == nil {
		x.Files = map[string]indexEntry{}
	}
	return x.Files, ""
}

// writeIndex replaces volume's index with files, taken for snapshot m.
func (b *Backend) writeIndex(volume string, m *Meta, files map[string]indexEntry) error {
	x := index{SchemaVersion: IndexSchemaVersion, Volume: volume, Snapshot: m.Name, Handle: m.Handle, Files: files}
	x.Checksum = x.checksum()
	return atomicfile.WriteJSON(b.indexPath(volume), x)
}
