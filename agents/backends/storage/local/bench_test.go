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

func timed(b *testing.B, name string, args ...string) time.Duration {
	b.Helper()
	t0 := time.Now()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v %s", name, args, err, out)
	}
	return time.Since(t0)
}

// BenchmarkSnapshot1GiB snapshots a 1 GiB volume of 1,000 files, changes
// one file, snapshots again, and compares with `cp -a` of the same volume
// on the same file system in the same run: on the machine's file system
// (the test's temporary directory), and on btrfs and XFS (reflink=1) loop
// images when run as root with mkfs.btrfs and mkfs.xfs. Run with:
//
//	go test -run '^$' -bench BenchmarkSnapshot1GiB -benchtime 1x ./agents/backends/storage/local/
//
// Metrics: cp-a-s, first-s and second-s (seconds); first/cp-a and
// second/cp-a (the snapshots' time over cp -a's); extra-space-% (space the
// second snapshot took beyond the changed file, in percent of the
// unchanged content). cp -a (coreutils ≥ 9) reflinks where the file system
// can, so on btrfs and XFS it copies no data; there cp-never-s and
// first/cp-never compare with `cp -a --reflink=never` too.
func BenchmarkSnapshot1GiB(b *testing.B) {
	for _, kind := range []string{"machine", "btrfs", "xfs"} {
		b.Run("fs="+kind, func(b *testing.B) {
			base := b.TempDir()
			if kind != "machine" {
				base = loopFS(b, kind, 4<<30)
			}
			benchSnapshot(b, base, kind != "machine")
		})
	}
}

func benchSnapshot(b *testing.B, base string, reflinks bool) {
	const files, size = 1000, 1 << 20
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		state := filepath.Join(base, "state")
		be, err := New(state)
		if err != nil {
			b.Fatal(err)
		}
		vol, _ := be.EnsureVolume(ctx, storage.VolumeSpec{Name: "data"})
		fillTree(b, vol.Path, files, size)
		exec.Command("sync").Run()
		b.StartTimer()

		cp := timed(b, "cp", "-a", vol.Path, filepath.Join(base, "cp-a"))
		var never time.Duration
		if reflinks {
			exec.Command("sync").Run()
			never = timed(b, "cp", "-a", "--reflink=never", vol.Path, filepath.Join(base, "cp-never"))
		}
		exec.Command("sync").Run()
		time.Sleep(20 * time.Millisecond)

		t0 := time.Now()
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
		b.ReportMetric(first.Seconds()/cp.Seconds(), "first/cp-a")
		b.ReportMetric(second.Seconds(), "second-s")
		b.ReportMetric(second.Seconds()/cp.Seconds(), "second/cp-a")
		b.ReportMetric(extra, "extra-space-%")
		if reflinks {
			b.ReportMetric(never.Seconds(), "cp-never-s")
			b.ReportMetric(first.Seconds()/never.Seconds(), "first/cp-never")
			b.ReportMetric(second.Seconds()/never.Seconds(), "second/cp-never")
		}
		b.StopTimer()
		for _, d := range []string{state, filepath.Join(base, "cp-a"), filepath.Join(base, "cp-never")} {
			removeTree(d)
		}
		b.StartTimer()
	}
}
