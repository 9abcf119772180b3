package local

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/storage"
)

// diskUsage is the space the files under dir take (st_blocks, each inode
// counted once, like du).
func diskUsage(tb testing.TB, dir string) int64 {
	seen := map[uint64]bool{}
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !seen[st.Ino] {
			seen[st.Ino] = true
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

// BenchmarkSnapshot1GiB snapshots a 1 GiB tree of 1,000 files, changes one
// file, snapshots again, and compares with `cp -a` of the same tree in the
// same run. Run with:
//
//	go test -run '^$' -bench BenchmarkSnapshot1GiB -benchtime 1x ./agents/backends/storage/local/
//
// Metrics: cp-a-s, first-s and second-s (seconds), second/cp-a (ratio of
// the incremental snapshot's time to cp -a's), extra-space-% (space the
// second snapshot took beyond the changed file, in percent of the unchanged
// content).
func BenchmarkSnapshot1GiB(b *testing.B) {
	const files, size = 1000, 1 << 20
	ctx := context.Background()
	src := filepath.Join(b.TempDir(), "tree")
	fillTree(b, src, files, size)
	for b.Loop() {
		b.StopTimer()
		state := b.TempDir()
		be, err := New(state)
		if err != nil {
			b.Fatal(err)
		}
		vol, _ := be.EnsureVolume(ctx, storage.VolumeSpec{Name: "data"})
		os.Remove(vol.Path)
		if out, err := exec.Command("cp", "-a", src, vol.Path).CombinedOutput(); err != nil {
			b.Fatalf("cp -a: %v %s", err, out)
		}
		exec.Command("sync").Run()
		b.StartTimer()

		t0 := time.Now()
		if out, err := exec.Command("cp", "-a", src, filepath.Join(state, "cp-copy")).CombinedOutput(); err != nil {
			b.Fatalf("cp -a: %v %s", err, out)
		}
		cp := time.Since(t0)
		time.Sleep(20 * time.Millisecond)

		t0 = time.Now()
		if _, err := be.Snapshot(ctx, "data", storage.SnapshotSpec{Name: "data-1"}); err != nil {
			b.Fatal(err)
		}
		first := time.Since(t0)

		if err := os.WriteFile(filepath.Join(vol.Path, "part-05/file-0555.bin"), make([]byte, size), 0o644); err != nil {
			b.Fatal(err)
		}
		before := diskUsage(b, filepath.Join(state, "cas")) + diskUsage(b, filepath.Join(state, "snapshots"))
		t0 = time.Now()
		if _, err := be.Snapshot(ctx, "data", storage.SnapshotSpec{Name: "data-2"}); err != nil {
			b.Fatal(err)
		}
		second := time.Since(t0)
		after := diskUsage(b, filepath.Join(state, "cas")) + diskUsage(b, filepath.Join(state, "snapshots"))
		extra := float64(after-before-size) / float64((files-1)*size) * 100

		b.ReportMetric(cp.Seconds(), "cp-a-s")
		b.ReportMetric(first.Seconds(), "first-s")
		b.ReportMetric(second.Seconds(), "second-s")
		b.ReportMetric(second.Seconds()/cp.Seconds(), "second/cp-a")
		b.ReportMetric(extra, "extra-space-%")
		b.StopTimer()
		removeTree(state)
		b.StartTimer()
	}
}
