package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// ManifestSchemaVersion is the schemaVersion of manifest.json.
const ManifestSchemaVersion = 1

// Manifest is snapshots/<name>/manifest.json: every directory, file and
// symbolic link of the snapshot, sorted by path (slash-separated, relative).
type Manifest struct {
	SchemaVersion int     `json:"schemaVersion"`
	Snapshot      string  `json:"snapshot"`
	Volume        string  `json:"volume"`
	Entries       []Entry `json:"entries"`
}

// Entry is one manifest entry. Type is "dir", "file" or "symlink"; Mode the
// permission bits the live file had; SHA256 the hex digest of a file's
// content (its blob is cas/sha256/<SHA256[:2]>/<SHA256[2:]>); Target a
// symlink's target.
type Entry struct {
	Path   string      `json:"path"`
	Type   string      `json:"type"`
	Mode   fs.FileMode `json:"mode"`
	Size   int64       `json:"size,omitempty"`
	SHA256 string      `json:"sha256,omitempty"`
	Target string      `json:"target,omitempty"`
}

// Meta is snapshots/<name>/meta.json: the snapshot's identity, labels,
// annotations (the lineage record goes here) and the cost of taking it.
type Meta struct {
	Name   string `json:"name"`
	Volume string `json:"volume"`
	// Handle is "sha256:<hex>" of the manifest's entries: equal trees have equal handles.
	Handle      string            `json:"handle"`
	CreatedAt   time.Time         `json:"createdAt"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Files and Bytes count the regular files and their total size.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// Hashed is how many files were read and hashed (the rest were
	// unchanged since the previous snapshot); NewBytes how many bytes of new
	// content were added to the content store.
	Hashed   int           `json:"hashed"`
	NewBytes int64         `json:"newBytes"`
	Took     time.Duration `json:"took"`
	// IndexDoubt says why the previous snapshot's index was not trusted
	// (then every file was re-hashed); "" when it was, or there was none.
	IndexDoubt string `json:"indexDoubt,omitempty"`
}

// Snapshot takes an immutable snapshot of volume named spec.Name. A file
// is not re-read when its stat data (ctime, mtime, dev, inode, mode, owner,
// size) is what the previous snapshot's index recorded, that index is
// trusted (see index) and the file was not racy then; every other file is
// put into the content store while hashed. A file that changes while it is
// read is read again, and after a few tries the snapshot fails. A snapshot
// of that name is returned as is (an error wrapping ErrExists when it
// belongs to another volume).
func (b *Backend) Snapshot(ctx context.Context, volume string, spec storage.SnapshotSpec) (*storage.Snapshot, error) {
	if err := storage.ValidName(volume); err != nil {
		return nil, err
	}
	if err := storage.ValidName(spec.Name); err != nil {
		return nil, err
	}
	unlock, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if m, err := b.readMeta(spec.Name); err == nil {
		if m.Volume != volume {
			return nil, &storage.ObjectError{Op: "create", Kind: "Snapshot", Name: spec.Name, Status: 409,
				Err: fmt.Errorf("%w: it is a snapshot of volume %s, not %s", storage.ErrExists, m.Volume, volume)}
		}
		return b.toSnapshot(m), nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	src := b.volumeDir(volume)
	if st, err := os.Stat(src); err != nil || !st.IsDir() {
		return nil, notFound("Volume", volume)
	}
	b.sweep()
	started := time.Now()
	tmp, err := os.MkdirTemp(filepath.Join(b.root, "snapshots"), ".tmp-"+spec.Name+"-")
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			removeTree(tmp)
		}
	}()
	// The file system's own clock now: files changed at or after it are
	// "racy" (a change in the same clock tick would not move mtime).
	probe := filepath.Join(tmp, ".probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return nil, err
	}
	pst, err := os.Stat(probe)
	if err != nil {
		return nil, err
	}
	os.Remove(probe)
	fsNow := statKey(pst).MtimeNs

	prev, doubt := b.loadIndex(volume)
	ing := &ingester{b: b, prev: prev, fsNow: fsNow, next: map[string]indexEntry{}}
	entries, err := ing.run(ctx, src, filepath.Join(tmp, "tree"))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s of volume %s: %w", spec.Name, volume, err)
	}
	man := Manifest{SchemaVersion: ManifestSchemaVersion, Snapshot: spec.Name, Volume: volume, Entries: entries}
	meta := Meta{
		Name: spec.Name, Volume: volume, Handle: handleOf(entries), CreatedAt: b.opt.now().UTC(),
		Labels: spec.Labels, Annotations: spec.Annotations,
		Hashed: ing.hashed, NewBytes: ing.newBytes, IndexDoubt: doubt,
	}
	for _, e := range entries {
		if e.Type == "file" {
			meta.Files++
			meta.Bytes += e.Size
		}
	}
	meta.Took = time.Since(started)
	if err := atomicfile.WriteJSON(filepath.Join(tmp, "manifest.json"), man); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Join(tmp, "manifest.json"), 0o444); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteJSON(filepath.Join(tmp, "meta.json"), meta); err != nil {
		return nil, err
	}
	if err := freeze(filepath.Join(tmp, "tree"), entries); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, b.snapDir(spec.Name)); err != nil {
		return nil, err
	}
	done = true
	if err := b.writeIndex(volume, &meta, ing.next); err != nil {
		// The snapshot is complete; a missing index only costs re-hashing next time.
		os.Remove(b.indexPath(volume))
	}
	return b.toSnapshot(&meta), nil
}

// sweep removes what a process killed in the middle of a snapshot, clone,
// restore or delete left behind (temporary trees and blobs). The caller
// holds the state directory's lock, so nobody else is writing them.
func (b *Backend) sweep() {
	for _, dir := range []string{"snapshots", "volumes"} {
		ents, _ := os.ReadDir(filepath.Join(b.root, dir))
		for _, e := range ents {
			if n := e.Name(); strings.HasPrefix(n, ".tmp-") || strings.HasPrefix(n, ".trash-") {
				removeTree(filepath.Join(b.root, dir, n))
			}
		}
	}
	ents, _ := os.ReadDir(filepath.Join(b.root, "cas", "tmp"))
	for _, e := range ents {
		os.Remove(filepath.Join(b.root, "cas", "tmp", e.Name()))
	}
}

func handleOf(entries []Entry) string {
	h := sha256.New()
	json.NewEncoder(h).Encode(entries)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func (b *Backend) toSnapshot(m *Meta) *storage.Snapshot {
	return &storage.Snapshot{
		Name: m.Name, Volume: m.Volume, Handle: m.Handle, RestoreSize: strconv.FormatInt(m.Bytes, 10),
		CreatedAt: m.CreatedAt, Labels: m.Labels, Path: filepath.Join(b.snapDir(m.Name), "tree"),
	}
}

// readMeta reads a snapshot's meta.json; ErrNotFound (wrapped) when absent.
func (b *Backend) readMeta(name string) (*Meta, error) {
	var m Meta
	if err := readJSON(filepath.Join(b.snapDir(name), "meta.json"), &m); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound("Snapshot", name)
		}
		return nil, err
	}
	return &m, nil
}

// Meta returns a snapshot's metadata (annotations, statistics).
func (b *Backend) Meta(name string) (*Meta, error) { return b.readMeta(name) }

// Manifest returns a snapshot's manifest.
func (b *Backend) Manifest(name string) (*Manifest, error) {
	var m Manifest
	if err := readJSON(filepath.Join(b.snapDir(name), "manifest.json"), &m); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound("Snapshot", name)
		}
		return nil, err
	}
	return &m, nil
}

type ingester struct {
	b     *Backend
	prev  map[string]indexEntry
	fsNow int64

	mu       sync.Mutex
	next     map[string]indexEntry
	hashed   int
	newBytes int64
}

type fileJob struct {
	idx       int
	src, dst  string
	rel       string
	key       indexEntry
	knownHash string
}

// run walks src, recreates its directories and symlinks under dst, and
// ingests every regular file with the worker pool; it returns the sorted
// manifest entries.
func (g *ingester) run(ctx context.Context, src, dst string) ([]Entry, error) {
	var entries []Entry
	var jobs []fileJob
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		slash := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			if err := os.Mkdir(out, 0o755); err != nil {
				return err
			}
			entries = append(entries, Entry{Path: slash, Type: "dir", Mode: info.Mode().Perm()})
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, out); err != nil {
				return err
			}
			entries = append(entries, Entry{Path: slash, Type: "symlink", Target: target})
		case d.Type().IsRegular():
			key := statKey(info)
			j := fileJob{idx: len(entries), src: p, dst: out, rel: slash, key: key}
			if old, ok := g.prev[slash]; ok && old.SHA256 != "" && sameStat(old, key) {
				j.knownHash = old.SHA256
			}
			jobs = append(jobs, j)
			entries = append(entries, Entry{Path: slash, Type: "file", Mode: info.Mode().Perm(), Size: info.Size()})
		default:
			return fmt.Errorf("%s: unsupported file type %s (only directories, regular files and symlinks)", p, d.Type())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ch := make(chan fileJob)
	errs := make(chan error, g.b.opt.workers)
	var wg sync.WaitGroup
	for range g.b.opt.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				e, err := g.ingest(j)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", j.src, err)
					for range ch {
					}
					return
				}
				entries[j.idx].SHA256, entries[j.idx].Size, entries[j.idx].Mode = e.SHA256, e.Size, fs.FileMode(e.Mode).Perm()
			}
		}()
	}
feed:
	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
			break feed
		case err := <-errs:
			errs <- err
			break feed
		}
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, k int) bool { return entries[i].Path < entries[k].Path })
	return entries, nil
}

// ingest puts one live file into the content store (unless its stat data
// vouches for a known hash whose blob is present) and links the blob into
// the snapshot tree. It returns the file's index entry: the stat data its
// content was read under, and its hash.
func (g *ingester) ingest(j fileJob) (indexEntry, error) {
	e := j.key
	e.SHA256 = j.knownHash
	if e.SHA256 == "" || !g.b.hasBlob(e.SHA256, e.Size) {
		var added int64
		var err error
		e, added, err = g.b.storeLive(j.src)
		if err != nil {
			return e, err
		}
		g.mu.Lock()
		g.hashed++
		g.newBytes += added
		g.mu.Unlock()
	}
	if err := linkOrCopy(g.b.blobPath(e.SHA256), j.dst); err != nil {
		return e, err
	}
	next := e
	if next.MtimeNs >= g.fsNow || next.CtimeNs >= g.fsNow {
		next.SHA256 = "" // racy: a change in this clock tick would leave the stat data as it is
	}
	g.mu.Lock()
	g.next[j.rel] = next
	g.mu.Unlock()
	return e, nil
}

// maxReads is how often a file that changes while it is read is read again
// before the snapshot gives up.
const maxReads = 3

// storeLive puts the live file at path into the content store. The file is
// opened without following symlinks, and its stat data is taken from the
// open file before and after its content is read: when they differ, a
// writer changed it meanwhile and it is read again. It returns the stat
// data with the content hash, and how many bytes were new.
func (b *Backend) storeLive(path string) (indexEntry, int64, error) {
	for range maxReads {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return indexEntry{}, 0, err
		}
		before, err := f.Stat()
		if err != nil || !before.Mode().IsRegular() {
			f.Close()
			return indexEntry{}, 0, fmt.Errorf("no longer a regular file (%v)", err)
		}
		sum, n, added, err := b.store(f)
		after, serr := f.Stat()
		f.Close()
		if err != nil {
			return indexEntry{}, 0, err
		}
		if serr != nil {
			return indexEntry{}, 0, serr
		}
		e := statKey(before)
		if sameStat(e, statKey(after)) && n == e.Size {
			e.SHA256 = sum
			return e, added, nil
		}
	}
	return indexEntry{}, 0, fmt.Errorf("changed while it was read, %d times: stop what writes to the volume during the snapshot, then snapshot again", maxReads)
}

// store copies the open file f into the content store (a reflink where the
// file system has them) and returns the hex digest of what was stored, its
// size, and how many bytes were new (0 when the blob existed).
func (b *Backend) store(f *os.File) (string, int64, int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(b.root, "cas", "tmp"), "blob-")
	if err != nil {
		return "", 0, 0, err
	}
	defer os.Remove(tmp.Name())
	sum, n, err := b.fill(tmp, f)
	if err == nil {
		err = tmp.Chmod(0o444)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, 0, err
	}
	dst := b.blobPath(sum)
	if exists(dst) {
		return sum, n, 0, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", 0, 0, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", 0, 0, err
	}
	return sum, n, n, nil
}

// hasBlob reports whether the blob of hexsum is present with size bytes.
func (b *Backend) hasBlob(hexsum string, size int64) bool {
	st, err := os.Lstat(b.blobPath(hexsum))
	return err == nil && st.Mode().IsRegular() && st.Size() == size
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// linkOrCopy hard-links blob to dst, or copies it when the blob has too
// many links (EMLINK) or links are impossible.
func linkOrCopy(blob, dst string) error {
	err := os.Link(blob, dst)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EMLINK) && !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) {
		return err
	}
	in, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(0o444); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// freeze makes every directory of a snapshot tree read-only (0555), deepest first.
func freeze(tree string, entries []Entry) error {
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Type == "dir" {
			if err := os.Chmod(filepath.Join(tree, filepath.FromSlash(entries[i].Path)), 0o555); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeTree removes dir even when its subdirectories are read-only.
func removeTree(dir string) error {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
