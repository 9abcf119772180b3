package local

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/branchml/branchml/agents/backends/storage"
)

// loopFS mounts a fresh file system of kind ("btrfs", "xfs") from a sparse
// image in a temporary directory and returns its mount point; it is
// unmounted and removed when the test ends. It skips unless the test runs
// as root with mkfs.<kind> and loop devices.
func loopFS(tb testing.TB, kind string, size int64) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("loop mounts need root")
	}
	mkfs, err := exec.LookPath("mkfs." + kind)
	if err != nil {
		tb.Skipf("no mkfs.%s (Debian: btrfs-progs, xfsprogs)", kind)
	}
	dir := tb.TempDir()
	img, mnt := filepath.Join(dir, kind+".img"), filepath.Join(dir, "mnt")
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	args := []string{"-q", img}
	if kind == "xfs" {
		args = []string{"-q", "-m", "reflink=1", img}
	}
	if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
		tb.Skipf("mkfs.%s: %v %s", kind, err, out)
	}
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		tb.Skipf("mount %s: %v %s", kind, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	return mnt
}

func usedBytes(tb testing.TB, dir string) int64 {
	exec.Command("sync", "-f", dir).Run()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		tb.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// On file systems with reflinks, snapshots and clones share extents with
// the live files: 64 MiB snapshotted and cloned take (almost) no space, and
// content and verification are as on any other file system.
func TestReflinkSnapshotAndClone(t *testing.T) {
	for _, kind := range []string{"btrfs", "xfs"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			mnt := loopFS(t, kind, 1<<30)
			b, err := New(filepath.Join(mnt, "state"))
			if err != nil {
				t.Fatal(err)
			}
			vol, _ := b.EnsureVolume(ctx, storage.VolumeSpec{Name: "d"})
			const files, size = 64, 1 << 20
			want := fillTree(t, vol.Path, files, size)
			time.Sleep(20 * time.Millisecond) // leave the files' clock tick: none is "racy"
			before := usedBytes(t, mnt)
			if _, err := b.Snapshot(ctx, "d", storage.SnapshotSpec{Name: "d-1"}); err != nil {
				t.Fatal(err)
			}
			if b.noReflink.Load() {
				t.Fatalf("%s refused FICLONE", kind)
			}
			cl, err := b.Clone(ctx, "d-1", "ws")
			if err != nil {
				t.Fatal(err)
			}
			if grown := usedBytes(t, mnt) - before; grown > files*size/4 {
				t.Errorf("snapshot and clone of %d MiB took %d MiB: extents not shared", files*size>>20, grown>>20)
			}
			sameTree(t, "clone", readTree(t, cl.Path), want)
			// Writing the clone or the volume changes no snapshot.
			os.WriteFile(filepath.Join(cl.Path, "part-00/file-0000.bin"), bytes.Repeat([]byte("c"), size), 0o644)
			f, _ := os.OpenFile(filepath.Join(vol.Path, "part-01/file-0001.bin"), os.O_WRONLY, 0)
			f.WriteAt([]byte("live"), 0)
			f.Close()
			if rep, err := b.Verify(ctx, "d-1"); err != nil || !rep.OK() {
				t.Fatalf("verify = %+v, %v", rep, err)
			}
			if _, err := b.Snapshot(ctx, "d", storage.SnapshotSpec{Name: "d-2"}); err != nil {
				t.Fatal(err)
			}
			if m, _ := b.Meta("d-2"); m.Hashed != 1 {
				t.Errorf("second snapshot hashed %d files, want 1", m.Hashed)
			}
		})
	}
}
