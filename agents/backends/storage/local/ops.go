package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// ListSnapshots lists volume's snapshots, newest first (ties: name descending).
func (b *Backend) ListSnapshots(ctx context.Context, volume string) ([]storage.Snapshot, error) {
	ents, err := os.ReadDir(filepath.Join(b.root, "snapshots"))
	if err != nil {
		return nil, err
	}
	var out []storage.Snapshot
	for _, e := range ents {
		if !e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		m, err := b.readMeta(e.Name())
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			return nil, err
		}
		if m.Volume == volume {
			out = append(out, *b.toSnapshot(m))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].Name > out[j].Name
	})
	return out, nil
}

// DeleteSnapshot removes a snapshot and the blobs no other snapshot links.
func (b *Backend) DeleteSnapshot(ctx context.Context, name string) error {
	if err := storage.ValidName(name); err != nil {
		return err
	}
	unlock, err := b.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	man, err := b.Manifest(name)
	if err != nil {
		return err
	}
	trash, err := os.MkdirTemp(filepath.Join(b.root, "snapshots"), ".trash-")
	if err != nil {
		return err
	}
	if err := os.Rename(b.snapDir(name), filepath.Join(trash, name)); err != nil {
		return err
	}
	if err := removeTree(trash); err != nil {
		return err
	}
	for _, e := range man.Entries {
		if e.Type != "file" {
			continue
		}
		p := b.blobPath(e.SHA256)
		if st, err := os.Lstat(p); err == nil && st.Sys().(*syscall.Stat_t).Nlink == 1 {
			os.Remove(p)
		}
	}
	return nil
}

// Annotate merges annotations into the snapshot's meta.json (an empty value
// deletes the key); the tree and manifest are untouched.
func (b *Backend) Annotate(ctx context.Context, name string, annotations map[string]string) error {
	unlock, err := b.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := b.readMeta(name)
	if err != nil {
		return err
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	maps.Copy(m.Annotations, annotations)
	for k, v := range annotations {
		if v == "" {
			delete(m.Annotations, k)
		}
	}
	return atomicfile.WriteJSON(filepath.Join(b.snapDir(name), "meta.json"), m)
}

// Verify re-hashes every file of the snapshot's tree and compares the tree
// with its manifest (a symlink where a file was is a changed file), and the
// manifest with the handle recorded at creation in meta.json. The report's
// Handle is the one recomputed from the manifest: a caller holding the
// handle recorded elsewhere (the lineage record on git) compares it, which
// catches a consistent rewrite of tree, manifest and meta.json.
func (b *Backend) Verify(ctx context.Context, name string) (*storage.VerifyReport, error) {
	man, err := b.Manifest(name)
	if err != nil {
		return nil, err
	}
	meta, err := b.readMeta(name)
	if err != nil {
		return nil, err
	}
	rep := &storage.VerifyReport{Snapshot: name, Handle: handleOf(man.Entries)}
	if rep.Handle != meta.Handle {
		rep.Changed = append(rep.Changed, "manifest.json")
	}
	tree := filepath.Join(b.snapDir(name), "tree")
	want := map[string]Entry{}
	for _, e := range man.Entries {
		want[e.Path] = e
		if e.Type == "file" {
			rep.Files++
			rep.Bytes += e.Size
		}
	}
	seen := map[string]bool{}
	err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		rel = filepath.ToSlash(rel)
		e, ok := want[rel]
		if !ok {
			rep.Extra = append(rep.Extra, rel)
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		seen[rel] = true
		switch e.Type {
		case "dir":
			if !d.IsDir() {
				rep.Changed = append(rep.Changed, rel)
			}
		case "symlink":
			t, err := os.Readlink(p)
			if err != nil || t != e.Target {
				rep.Changed = append(rep.Changed, rel)
			}
		case "file":
			if !d.Type().IsRegular() {
				rep.Changed = append(rep.Changed, rel)
				return nil
			}
			sum, n, err := hashFile(p)
			if err != nil {
				return err
			}
			if sum != e.SHA256 || n != e.Size {
				rep.Changed = append(rep.Changed, rel)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("verify snapshot %s: %w", name, err)
	}
	for _, e := range man.Entries {
		if !seen[e.Path] {
			rep.Missing = append(rep.Missing, e.Path)
		}
	}
	sort.Strings(rep.Changed)
	sort.Strings(rep.Extra)
	return rep, nil
}

// Clone creates the volume newVolume as a writable copy (not links) of the
// snapshot, with the recorded modes. Cloning the same snapshot into the same
// volume again returns it with Created false; a volume that exists otherwise
// is an error wrapping ErrExists.
func (b *Backend) Clone(ctx context.Context, snapshot, newVolume string) (*storage.Volume, error) {
	if err := storage.ValidName(newVolume); err != nil {
		return nil, err
	}
	unlock, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	man, err := b.Manifest(snapshot)
	if err != nil {
		return nil, err
	}
	meta, err := b.readMeta(snapshot)
	if err != nil {
		return nil, err
	}
	dir := b.volumeDir(newVolume)
	vol := &storage.Volume{Name: newVolume, Path: dir, Size: fmt.Sprint(meta.Bytes)}
	if exists(dir) {
		var vm volumeMeta
		if readJSON(b.volMetaPath(newVolume), &vm) == nil && vm.ClonedFrom == snapshot {
			return vol, nil
		}
		return nil, &storage.ObjectError{Op: "clone " + snapshot + " into", Kind: "Volume", Name: newVolume, Status: 409,
			Err: fmt.Errorf("%w: %s holds another volume; pick another volume name", storage.ErrExists, dir)}
	}
	tmp, err := os.MkdirTemp(filepath.Join(b.root, "volumes"), ".tmp-"+newVolume+"-")
	if err != nil {
		return nil, err
	}
	if err := b.materialize(ctx, snapshot, man, filepath.Join(tmp, "v")); err != nil {
		removeTree(tmp)
		return nil, err
	}
	if err := os.Rename(filepath.Join(tmp, "v"), dir); err != nil {
		removeTree(tmp)
		return nil, err
	}
	os.Remove(tmp)
	vm := volumeMeta{Name: newVolume, Size: vol.Size, ClonedFrom: snapshot, CreatedAt: b.opt.now().UTC()}
	if err := atomicfile.WriteJSON(b.volMetaPath(newVolume), vm); err != nil {
		return nil, err
	}
	vol.Created = true
	return vol, nil
}

// materialize writes a writable copy of the snapshot's tree at dst, and
// refuses a snapshot whose tree does not match its manifest: every file is
// opened without following symlinks and hashed while it is copied (or
// after it is reflinked), and must have the recorded hash and size; every
// symlink the recorded target; and the manifest the handle of meta.json.
// A refusal is an error wrapping storage.ErrCorrupt naming the path.
func (b *Backend) materialize(ctx context.Context, snapshot string, man *Manifest, dst string) error {
	meta, err := b.readMeta(snapshot)
	if err != nil {
		return err
	}
	if handleOf(man.Entries) != meta.Handle {
		return b.corrupt(snapshot, "manifest.json", "its entries do not have the snapshot's handle "+meta.Handle)
	}
	tree := filepath.Join(b.snapDir(snapshot), "tree")
	for _, e := range man.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		out := filepath.Join(dst, filepath.FromSlash(e.Path))
		in := filepath.Join(tree, filepath.FromSlash(e.Path))
		switch e.Type {
		case "dir":
			if st, err := os.Lstat(in); err != nil || !st.IsDir() {
				return b.corrupt(snapshot, e.Path, "not a directory in the tree")
			}
			if err := os.Mkdir(out, 0o755); err != nil {
				return err
			}
		case "symlink":
			if t, err := os.Readlink(in); err != nil || t != e.Target {
				return b.corrupt(snapshot, e.Path, "not the recorded symlink to "+e.Target)
			}
			if err := os.Symlink(e.Target, out); err != nil {
				return err
			}
		case "file":
			if err := b.copyVerified(snapshot, e, in, out); err != nil {
				return err
			}
		}
	}
	for i := len(man.Entries) - 1; i >= 0; i-- {
		if e := man.Entries[i]; e.Type == "dir" {
			if err := os.Chmod(filepath.Join(dst, filepath.FromSlash(e.Path)), e.Mode|0o700); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyVerified copies the snapshot file in to out (mode e.Mode plus owner
// write) and checks that what out holds has e's hash and size.
func (b *Backend) copyVerified(snapshot string, e Entry, in, out string) error {
	src, err := os.OpenFile(in, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return b.corrupt(snapshot, e.Path, "a symlink where the manifest records a file")
	}
	if err != nil {
		return b.corrupt(snapshot, e.Path, err.Error())
	}
	defer src.Close()
	if st, err := src.Stat(); err != nil || !st.Mode().IsRegular() {
		return b.corrupt(snapshot, e.Path, "not a regular file in the tree")
	}
	dst, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	sum, n, err := b.fill(dst, src)
	if err == nil {
		err = dst.Chmod(e.Mode | 0o200)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore %s from snapshot %s: %w", e.Path, snapshot, err)
	}
	if sum != e.SHA256 || n != e.Size {
		return b.corrupt(snapshot, e.Path, fmt.Sprintf("content sha256:%s (%d bytes), manifest sha256:%s (%d bytes)", sum, n, e.SHA256, e.Size))
	}
	return nil
}

// corrupt is the error of a snapshot whose tree or manifest was changed.
func (b *Backend) corrupt(snapshot, path, why string) error {
	return &storage.ObjectError{Op: "read", Kind: "Snapshot", Name: snapshot, Status: 422,
		Err: fmt.Errorf("%w: %s: %s (%s)", storage.ErrCorrupt, path, why, filepath.Join(b.snapDir(snapshot), "tree", filepath.FromSlash(path)))}
}

// Restore replaces the live directory of volume with a writable copy of one
// of its snapshots. The new tree is built beside the volume and swapped in
// by rename, so a failure leaves the volume as it was.
func (b *Backend) Restore(ctx context.Context, volume, snapshot string) error {
	unlock, err := b.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	meta, err := b.readMeta(snapshot)
	if err != nil {
		return err
	}
	if meta.Volume != volume {
		return &storage.ObjectError{Op: "restore", Kind: "Volume", Name: volume, Status: 400,
			Err: fmt.Errorf("snapshot %s is of volume %s; restore it into a new volume with clone instead", snapshot, meta.Volume)}
	}
	man, err := b.Manifest(snapshot)
	if err != nil {
		return err
	}
	dir := b.volumeDir(volume)
	tmp, err := os.MkdirTemp(filepath.Join(b.root, "volumes"), ".tmp-"+volume+"-")
	if err != nil {
		return err
	}
	defer removeTree(tmp)
	if err := b.materialize(ctx, snapshot, man, filepath.Join(tmp, "new")); err != nil {
		return err
	}
	if exists(dir) {
		if err := os.Rename(dir, filepath.Join(tmp, "old")); err != nil {
			return err
		}
	}
	if err := os.Rename(filepath.Join(tmp, "new"), dir); err != nil {
		os.Rename(filepath.Join(tmp, "old"), dir)
		return err
	}
	os.Remove(b.indexPath(volume))
	return nil
}
