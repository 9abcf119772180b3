package registry

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Unpack writes the flattened filesystem of img (whiteouts applied) into
// dir: regular files with their permission bits, directories and symbolic
// links; devices and other special files are skipped. Entries that would
// land outside dir (absolute or ".." paths, links pointing out) are an error.
// The local pipeline runner and the local serving backend use it to run an
// image's entrypoint as a process.
func Unpack(img v1.Image, dir string) error {
	// mutate.Extract ends its stream cleanly even when reading a layer
	// failed; the recorder catches those errors.
	rec := &errRecorder{}
	rc := mutate.Extract(recImage{Image: img, rec: rec})
	defer rc.Close()
	if err := UnpackTar(rc, dir); err != nil {
		return err
	}
	return rec.get()
}

type errRecorder struct {
	mu  sync.Mutex
	err error
}

func (r *errRecorder) set(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		return
	}
	r.mu.Lock()
	if r.err == nil {
		r.err = fmt.Errorf("read image layers: %w", err)
	}
	r.mu.Unlock()
}

func (r *errRecorder) get() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

type recImage struct {
	v1.Image
	rec *errRecorder
}

func (i recImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	i.rec.set(err)
	out := make([]v1.Layer, len(ls))
	for n, l := range ls {
		out[n] = recLayer{Layer: l, rec: i.rec}
	}
	return out, err
}

type recLayer struct {
	v1.Layer
	rec *errRecorder
}

func (l recLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Uncompressed()
	l.rec.set(err)
	if err != nil {
		return nil, err
	}
	return recReader{ReadCloser: rc, rec: l.rec}, nil
}

type recReader struct {
	io.ReadCloser
	rec *errRecorder
}

func (r recReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.rec.set(err)
	return n, err
}

// UnpackTar writes the entries of the tar stream r into dir, with the rules of Unpack.
func UnpackTar(r io.Reader, dir string) error {
	root, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read image layer: %w", err)
		}
		target, err := within(root, h.Name)
		if err != nil {
			return err
		}
		if target == root {
			continue
		}
		// Links already unpacked may redirect the parent: check where it really is.
		parent, err := realParent(root, filepath.Dir(target))
		if err != nil {
			return fmt.Errorf("unpack %s: %w", h.Name, err)
		}
		target = filepath.Join(parent, filepath.Base(target))
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			// Never write through a link an earlier entry left at target.
			if fi, err := os.Lstat(target); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				if err := os.Remove(target); err != nil {
					return err
				}
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode|0o600)
			if err != nil {
				return err
			}
			_, cerr := io.Copy(f, tr)
			if err := f.Close(); cerr == nil {
				cerr = err
			}
			if cerr != nil {
				return fmt.Errorf("unpack %s: %w", h.Name, cerr)
			}
		case tar.TypeSymlink:
			// Absolute links are made relative to the image root, so that
			// nothing written later through them lands outside dir.
			link := h.Linkname
			resolved := filepath.Join(parent, link)
			if filepath.IsAbs(link) {
				resolved = filepath.Join(root, filepath.Clean("/"+link))
				if link, err = filepath.Rel(parent, resolved); err != nil {
					return err
				}
			}
			if resolved != root && !strings.HasPrefix(resolved, root+string(filepath.Separator)) {
				return fmt.Errorf("unpack %s: symbolic link to %q leaves the image root", h.Name, h.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			_ = os.Remove(target)
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		}
	}
}

// realParent creates dir (inside root) and returns its real path with
// symbolic links resolved, failing when that is outside root.
func realParent(root, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return "", fmt.Errorf("path %s leaves the image root through a symbolic link", dir)
	}
	return real, nil
}

// within returns root/name, failing when name would leave root.
func within(root, name string) (string, error) {
	clean := filepath.Clean("/" + filepath.FromSlash(name))
	if strings.Contains(filepath.ToSlash(name), "../") || strings.HasSuffix(name, "..") {
		return "", fmt.Errorf("image entry %q leaves the image root", name)
	}
	return filepath.Join(root, clean), nil
}
