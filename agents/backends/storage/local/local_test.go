package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/storage"
)

// fillTree writes files files of size bytes each under dir (in 10
// subdirectories) with deterministic pseudo-random content and returns the
// content by relative path.
func fillTree(t testing.TB, dir string, files, size int) map[string][]byte {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{1, 2})
	want := map[string][]byte{}
	for i := range files {
		rel := fmt.Sprintf("part-%02d/file-%04d.bin", i%10, i)
		data := make([]byte, size)
		rng.Read(data)
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		want[rel] = data
	}
	return want
}

func readTree(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameTree(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d files, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		if !bytes.Equal(got[k], w) {
			t.Fatalf("%s: %s differs", what, k)
		}
	}
}

func newBackend(t *testing.T) *Backend {
	t.Helper()
	clock := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	b, err := New(t.TempDir(), WithClock(func() time.Time { clock = clock.Add(time.Minute); return clock }))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSnapshotIncrementalImmutableAndRestorable(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	vol, err := b.EnsureVolume(ctx, storage.VolumeSpec{Name: "djia30-data", Size: "1Gi"})
	if err != nil {
		t.Fatal(err)
	}
	if !vol.Created || vol.Path != filepath.Join(b.Root(), "volumes", "djia30-data") {
		t.Fatalf("volume = %+v", vol)
	}
	const files, size = 1000, 64 << 10 // 64 MiB
	want := fillTree(t, vol.Path, files, size)
	if err := os.Symlink("part-00/file-0000.bin", filepath.Join(vol.Path, "latest")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // leave the files' clock tick: none is "racy"

	s1, err := b.Snapshot(ctx, "djia30-data", storage.SnapshotSpec{Name: "djia30-data-s1", Labels: map[string]string{storage.KeyRunID: "run-1"}})
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := b.Meta("djia30-data-s1")
	if m1.Files != files || m1.Bytes != files*size || m1.Hashed != files || m1.NewBytes != files*size {
		t.Fatalf("first snapshot meta = files %d bytes %d hashed %d new %d", m1.Files, m1.Bytes, m1.Hashed, m1.NewBytes)
	}
	if s1.Handle != m1.Handle || s1.RestoreSize != fmt.Sprint(files*size) || s1.Labels[storage.KeyRunID] != "run-1" {
		t.Fatalf("snapshot = %+v", s1)
	}

	// Change one file in place (same size, no truncation) and snapshot again.
	changed := filepath.Join(vol.Path, "part-03/file-0123.bin")
	f, err := os.OpenFile(changed, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	newContent := bytes.Repeat([]byte("x"), size)
	if _, err := f.WriteAt(newContent, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := casBytes(t, b)
	if _, err := b.Snapshot(ctx, "djia30-data", storage.SnapshotSpec{Name: "djia30-data-s2"}); err != nil {
		t.Fatal(err)
	}
	m2, _ := b.Meta("djia30-data-s2")
	if m2.Hashed != 1 || m2.NewBytes != size {
		t.Fatalf("second snapshot hashed %d files, added %d bytes; want 1 and %d", m2.Hashed, m2.NewBytes, size)
	}
	if grown := casBytes(t, b) - before; grown != size {
		t.Fatalf("content store grew by %d bytes, want %d", grown, size)
	}

	// Snapshots are read-only trees.
	st, _ := os.Stat(filepath.Join(s1.Path, "part-03/file-0123.bin"))
	dst, _ := os.Stat(filepath.Join(s1.Path, "part-03"))
	if st.Mode().Perm() != 0o444 || dst.Mode().Perm() != 0o555 {
		t.Fatalf("modes: file %v dir %v, want 0444 and 0555", st.Mode().Perm(), dst.Mode().Perm())
	}
	// The first snapshot still has the old content; writing the live files again changes no snapshot.
	if err := os.WriteFile(filepath.Join(vol.Path, "part-00/file-0000.bin"), []byte("clobbered"), 0o644); err != nil {
		t.Fatal(err)
	}
	s1files := readTree(t, s1.Path)
	delete(s1files, "latest")
	sameTree(t, "snapshot 1", s1files, want)
	for _, name := range []string{"djia30-data-s1", "djia30-data-s2"} {
		rep, err := b.Verify(ctx, name)
		if err != nil || !rep.OK() || rep.Files != files || rep.Bytes != files*size {
			t.Fatalf("verify %s = %+v, %v", name, rep, err)
		}
	}

	// Clone: a writable, byte-identical copy.
	cl, err := b.Clone(ctx, "djia30-data-s1", "workspace-ana")
	if err != nil {
		t.Fatal(err)
	}
	got := readTree(t, cl.Path)
	delete(got, "latest")
	sameTree(t, "clone", got, want)
	if target, _ := os.Readlink(filepath.Join(cl.Path, "latest")); target != "part-00/file-0000.bin" {
		t.Fatalf("clone symlink -> %q", target)
	}
	if err := os.WriteFile(filepath.Join(cl.Path, "part-00/file-0000.bin"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, _ := b.Verify(ctx, "djia30-data-s1"); !rep.OK() {
		t.Fatalf("writing the clone changed the snapshot: %+v", rep)
	}
	again, err := b.Clone(ctx, "djia30-data-s1", "workspace-ana")
	if err != nil || again.Created {
		t.Fatalf("second clone = %+v, %v; want the existing volume", again, err)
	}
	if _, err := b.Clone(ctx, "djia30-data-s2", "workspace-ana"); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("clone of another snapshot into it: %v, want ErrExists", err)
	}

	// In-place restore of s2 brings back the changed file and undoes the clobbering.
	if err := b.Restore(ctx, "djia30-data", "djia30-data-s2"); err != nil {
		t.Fatal(err)
	}
	live := readTree(t, vol.Path)
	if !bytes.Equal(live["part-03/file-0123.bin"], newContent) || !bytes.Equal(live["part-00/file-0000.bin"], want["part-00/file-0000.bin"]) {
		t.Fatal("restore did not bring the volume back to snapshot 2")
	}

	// Newest first.
	list, err := b.ListSnapshots(ctx, "djia30-data")
	if err != nil || len(list) != 2 || list[0].Name != "djia30-data-s2" || list[1].Name != "djia30-data-s1" {
		t.Fatalf("list = %+v, %v", list, err)
	}

	// Deleting s1 frees the one blob only it used, and keeps s2 whole.
	before = casBytes(t, b)
	if err := b.DeleteSnapshot(ctx, "djia30-data-s1"); err != nil {
		t.Fatal(err)
	}
	if freed := before - casBytes(t, b); freed != size {
		t.Fatalf("delete freed %d bytes, want %d", freed, size)
	}
	if rep, _ := b.Verify(ctx, "djia30-data-s2"); !rep.OK() {
		t.Fatalf("s2 after deleting s1: %+v", rep)
	}
	if err := b.DeleteSnapshot(ctx, "djia30-data-s1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}

func casBytes(t testing.TB, b *Backend) int64 {
	var n int64
	filepath.WalkDir(filepath.Join(b.Root(), "cas", "sha256"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestVerifyReportsTampering(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	vol, _ := b.EnsureVolume(ctx, storage.VolumeSpec{Name: "m"})
	fillTree(t, vol.Path, 3, 100)
	s, err := b.Snapshot(ctx, "m", storage.SnapshotSpec{Name: "m-1"})
	if err != nil {
		t.Fatal(err)
	}
	// Root can write through read-only modes; so can an attacker with chmod.
	for _, d := range []string{".", "part-00", "part-01"} {
		os.Chmod(filepath.Join(s.Path, d), 0o755)
	}
	changed := filepath.Join(s.Path, "part-01/file-0001.bin")
	os.Remove(changed) // break the hard link: changing the blob would change every snapshot
	os.WriteFile(changed, []byte("evil"), 0o644)
	os.Remove(filepath.Join(s.Path, "part-00/file-0000.bin"))
	os.WriteFile(filepath.Join(s.Path, "part-00/extra.txt"), []byte("new"), 0o644)
	rep, err := b.Verify(ctx, "m-1")
	if err != nil {
		t.Fatal(err)
	}
	want := &storage.VerifyReport{Snapshot: "m-1", Handle: s.Handle, Files: 3, Bytes: 300,
		Changed: []string{"part-01/file-0001.bin"}, Missing: []string{"part-00/file-0000.bin"}, Extra: []string{"part-00/extra.txt"}}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("report = %+v\nwant     %+v", rep, want)
	}
}

func TestSnapshotIdempotentAndNamesChecked(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	for _, v := range []string{"a", "b"} {
		vol, _ := b.EnsureVolume(ctx, storage.VolumeSpec{Name: v})
		os.WriteFile(filepath.Join(vol.Path, "f"), []byte(v), 0o644)
	}
	s1, err := b.Snapshot(ctx, "a", storage.SnapshotSpec{Name: "a-1"})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.Snapshot(ctx, "a", storage.SnapshotSpec{Name: "a-1"})
	if err != nil || !reflect.DeepEqual(s1, s2) {
		t.Fatalf("second snapshot = %+v, %v; want %+v", s2, err, s1)
	}
	if _, err := b.Snapshot(ctx, "b", storage.SnapshotSpec{Name: "a-1"}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("same name on another volume: %v", err)
	}
	if _, err := b.Snapshot(ctx, "nope", storage.SnapshotSpec{Name: "nope-1"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing volume: %v", err)
	}
	if _, err := b.Snapshot(ctx, "a", storage.SnapshotSpec{Name: "../escape"}); err == nil {
		t.Fatal("a name with .. was accepted")
	}
	vol2, err := b.EnsureVolume(ctx, storage.VolumeSpec{Name: "a"})
	if err != nil || vol2.Created {
		t.Fatalf("EnsureVolume of an existing volume = %+v, %v", vol2, err)
	}
	if err := b.Annotate(ctx, "a-1", map[string]string{storage.AnnotationLineage: `{"id":"lin-1"}`}); err != nil {
		t.Fatal(err)
	}
	m, _ := b.Meta("a-1")
	if m.Annotations[storage.AnnotationLineage] != `{"id":"lin-1"}` {
		t.Fatalf("annotations = %v", m.Annotations)
	}
	if rep, _ := b.Verify(ctx, "a-1"); !rep.OK() {
		t.Fatalf("annotating changed the snapshot: %+v", rep)
	}
	// Equal trees have equal handles.
	os.WriteFile(filepath.Join(b.Root(), "volumes", "b", "f"), []byte("a"), 0o644)
	sb, _ := b.Snapshot(ctx, "b", storage.SnapshotSpec{Name: "b-1"})
	if sb.Handle != s1.Handle {
		t.Fatalf("handles differ for equal trees: %s %s", sb.Handle, s1.Handle)
	}
}
