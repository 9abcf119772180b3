package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/storage"
)

// rewriteInPlace gives the live file at p new content of the same size and
// sets its mtime back: only ctime (and the index) can tell.
func rewriteInPlace(t *testing.T, p string, content []byte) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(content)) != st.Size() {
		t.Fatalf("new content of %s has %d bytes, want %d", p, len(content), st.Size())
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// editIndex applies edit to the JSON object of rel's entry in volume's index.
func editIndex(t *testing.T, b *Backend, volume, rel string, edit func(e map[string]any, x map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(b.indexPath(volume))
	if err != nil {
		t.Fatal(err)
	}
	var x map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep nanosecond times exact
	if err := dec.Decode(&x); err != nil {
		t.Fatal(err)
	}
	e, ok := x["files"].(map[string]any)[rel].(map[string]any)
	if !ok {
		t.Fatalf("index of %s has no entry %s:\n%s", volume, rel, raw)
	}
	edit(e, x)
	raw, _ = json.Marshal(x)
	if err := os.WriteFile(b.indexPath(volume), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// statOf is the stat data the index keeps of p, as JSON field values.
func statOf(t *testing.T, p string) map[string]any {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return map[string]any{"size": st.Size, "mtimeNs": st.Mtim.Nano(), "ctimeNs": st.Ctim.Nano(), "ino": st.Ino}
}

func snapshotFile(t *testing.T, b *Backend, snap, rel string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(b.snapDir(snap), "tree", rel))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// A live file changed with its size and mtime kept, and its index entry
// edited to the new stat data (a damaged or hand-edited index, or a file
// system whose stat data lies): the next snapshot must hold the new
// content, not the old hash.
func TestSnapshotDoesNotTrustAnEditedIndex(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	vol, _ := b.EnsureVolume(ctx, storage.VolumeSpec{Name: "d"})
	fillTree(t, vol.Path, 20, 1000)
	time.Sleep(20 * time.Millisecond) // out of the racy clock tick
	if _, err := b.Snapshot(ctx, "d", storage.SnapshotSpec{Name: "d-1"}); err != nil {
		t.Fatal(err)
	}
	const rel = "part-03/file-0003.bin"
	p := filepath.Join(vol.Path, rel)
	changed := bytes.Repeat([]byte("n"), 1000)
	rewriteInPlace(t, p, changed)
	editIndex(t, b, "d", rel, func(e, _ map[string]any) {
		for k, v := range statOf(t, p) {
			e[k] = v
		}
	})
	time.Sleep(20 * time.Millisecond)
	if _, err := b.Snapshot(ctx, "d", storage.SnapshotSpec{Name: "d-2"}); err != nil {
		t.Fatal(err)
	}
	if got := snapshotFile(t, b, "d-2", rel); !bytes.Equal(got, changed) {
		t.Fatalf("snapshot d-2 holds the old content of %s: the edited index was trusted", rel)
	}
	m, _ := b.Meta("d-2")
	if m.Hashed != 20 || !strings.Contains(m.IndexDoubt, "checksum") {
		t.Fatalf("d-2: hashed %d files (want all 20), index doubt %q", m.Hashed, m.IndexDoubt)
	}
	if rep, err := b.Verify(ctx, "d-2"); err != nil || !rep.OK() {
		t.Fatalf("verify d-2 = %+v, %v", rep, err)
	}
}

// An index whose checksum was recomputed after an entry was pointed at
// another file's blob is still not trusted: its hashes must be those the
// snapshot it names recorded.
func TestSnapshotChecksIndexAgainstItsSnapshot(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	vol, _ := b.EnsureVolume(ctx, storage.VolumeSpec{Name: "d"})
	want := fillTree(t, vol.Path, 20, 1000)
	time.Sleep(20 * time.Millisecond)
	if _, err := b.Snapshot(ctx, "d", storage.SnapshotSpec{Name: "d-1"}); err != nil {
		t.Fatal(err)
	}
	const rel, other = "part-03/file-0003.bin", "part-04/file-0004.bin"
	man, _ := b.Manifest("d-1")
	var otherSum string
	for _, e := range man.Entries {
		if e.Path == other {
			otherSum = e.SHA256
		}
	}
	editIndex(t, b, "d", rel, func(e, x map[string]any) {
		e["sha256"] = otherSum
		if _, ok := x["checksum"]; ok { // the index format with a checksum: forge it consistently
			raw, _ := json.Marshal(x)
			var ix index
			json.Unmarshal(raw, &ix)
			x["checksum"] = ix.checksum()
		}
	})
	time.Sleep(20 * time.Millisecond)
	if _, err := b.Snapshot(ctx, "d", storage.SnapshotSpec{Name: "d-2"}); err != nil {
		t.Fatal(err)
	}
	if got := snapshotFile(t, b, "d-2", rel); !bytes.Equal(got, want[rel]) {
		t.Fatalf("snapshot d-2 holds %s's content as %s: the index entry was trusted", other, rel)
	}
	if m, _ := b.Meta("d-2"); !strings.Contains(m.IndexDoubt, "entry "+rel+" is not what snapshot d-1 recorded") {
		t.Fatalf("index doubt = %q", m.IndexDoubt)
	}
	// Untouched, the index is trusted: nothing is re-read.
	time.Sleep(20 * time.Millisecond)
	if _, err := b.Snapshot(ctx, "d", storage.SnapshotSpec{Name: "d-3"}); err != nil {
		t.Fatal(err)
	}
	if m, _ := b.Meta("d-3"); m.Hashed != 0 || m.IndexDoubt != "" {
		t.Fatalf("d-3: hashed %d, doubt %q; want 0 and none", m.Hashed, m.IndexDoubt)
	}
}

// tamper makes the tree of snapshot s writable again, as root (or an
// attacker with chmod) can.
func tamper(t *testing.T, b *Backend, s string) string {
	t.Helper()
	tree := filepath.Join(b.snapDir(s), "tree")
	filepath.Walk(tree, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return tree
}

// Clone and restore refuse a snapshot whose tree does not match its
// manifest: a file replaced by a symlink to a host file, or by other
// content of the same size. Nothing is created.
func TestCloneRefusesATamperedSnapshot(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		change func(t *testing.T, p string)
		why    string
	}{
		{"symlink to /etc/hostname", func(t *testing.T, p string) {
			os.Remove(p)
			if err := os.Symlink("/etc/hostname", p); err != nil {
				t.Fatal(err)
			}
		}, "a symlink where the manifest records a file"},
		{"other content, same size", func(t *testing.T, p string) {
			os.Remove(p) // break the hard link: the blob stays as it is
			os.WriteFile(p, bytes.Repeat([]byte("e"), 100), 0o444)
		}, "content sha256:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBackend(t)
			vol, _ := b.EnsureVolume(ctx, storage.VolumeSpec{Name: "m"})
			fillTree(t, vol.Path, 3, 100)
			if _, err := b.Snapshot(ctx, "m", storage.SnapshotSpec{Name: "m-1"}); err != nil {
				t.Fatal(err)
			}
			tree := tamper(t, b, "m-1")
			c.change(t, filepath.Join(tree, "part-01/file-0001.bin"))
			_, err := b.Clone(ctx, "m-1", "ws")
			if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), "part-01/file-0001.bin: "+c.why) {
				t.Fatalf("clone: %v; want ErrCorrupt naming part-01/file-0001.bin (%s)", err, c.why)
			}
			if exists(b.volumeDir("ws")) || exists(b.volMetaPath("ws")) {
				t.Fatal("the refused clone left a volume")
			}
			live := readTree(t, vol.Path)
			if err := b.Restore(ctx, "m", "m-1"); !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("restore: %v; want ErrCorrupt", err)
			}
			sameTree(t, "volume after the refused restore", readTree(t, vol.Path), live)
			rep, err := b.Verify(ctx, "m-1")
			if err != nil || rep.OK() || len(rep.Changed) != 1 || rep.Changed[0] != "part-01/file-0001.bin" {
				t.Fatalf("verify = %+v, %v", rep, err)
			}
		})
	}
}

// What a killed snapshot, clone or delete left behind is swept by the next
// snapshot.
func TestSnapshotSweepsLeftovers(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	vol, _ := b.EnsureVolume(ctx, storage.VolumeSpec{Name: "m"})
	fillTree(t, vol.Path, 2, 10)
	left := []string{
		filepath.Join(b.Root(), "snapshots", ".tmp-m-1-123", "tree", "x"),
		filepath.Join(b.Root(), "snapshots", ".trash-9", "m-0", "tree", "y"),
		filepath.Join(b.Root(), "volumes", ".tmp-ws-7", "v", "z"),
		filepath.Join(b.Root(), "cas", "tmp", "blob-42"),
	}
	for _, p := range left {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("half"), 0o644)
	}
	os.Chmod(filepath.Dir(left[0]), 0o555)
	if _, err := b.Snapshot(ctx, "m", storage.SnapshotSpec{Name: "m-1"}); err != nil {
		t.Fatal(err)
	}
	for _, top := range []string{"snapshots/.tmp-m-1-123", "snapshots/.trash-9", "volumes/.tmp-ws-7", "cas/tmp/blob-42"} {
		if exists(filepath.Join(b.Root(), top)) {
			t.Errorf("%s left", top)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(b.Root(), "snapshots")); len(ents) != 1 || ents[0].Name() != "m-1" {
		t.Errorf("snapshots/ = %v", ents)
	}
}
