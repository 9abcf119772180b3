package imagecache

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// UnsafeEntryError is returned for a tar entry that unpacking refuses.
type UnsafeEntryError struct {
	// Name is the entry's name as in the tar header.
	Name string
	// Reason says what is wrong ("escapes the root", "device file" …).
	Reason string
}

func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("tar entry %q refused: %s", e.Name, e.Reason)
}

// whiteout prefixes of the OCI image layer spec.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// EntryPath cleans a tar entry name into a slash-separated path relative to
// the root ("." for the root itself). Leading "/" and "./" are dropped, as
// image layers may carry them; a name that leaves the root through ".." or
// holds a NUL byte or backslash is an *UnsafeEntryError.
func EntryPath(name string) (string, error) {
	if strings.ContainsAny(name, "\x00\\") {
		return "", &UnsafeEntryError{Name: name, Reason: "name holds a NUL byte or backslash"}
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", &UnsafeEntryError{Name: name, Reason: `escapes the root through ".."`}
		}
	}
	p := path.Clean("/" + name)
	if p == "/" {
		return ".", nil
	}
	return p[1:], nil
}

// linkTarget checks a symbolic link at entry p (cleaned, relative) pointing
// at target: absolute targets are refused (the local runner runs without a
// chroot, so they would reach the host's files), and relative ones must
// stay inside the root.
func linkTarget(name, p, target string) error {
	if target == "" {
		return &UnsafeEntryError{Name: name, Reason: "symbolic link with an empty target"}
	}
	if strings.HasPrefix(target, "/") {
		return &UnsafeEntryError{Name: name, Reason: fmt.Sprintf("absolute symbolic link to %q would point outside the image root", target)}
	}
	if strings.ContainsRune(target, 0) {
		return &UnsafeEntryError{Name: name, Reason: "link target holds a NUL byte"}
	}
	depth := strings.Count(path.Dir(p), "/") + 1
	if path.Dir(p) == "." {
		depth = 0
	}
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "..":
			depth--
			if depth < 0 {
				return &UnsafeEntryError{Name: name, Reason: fmt.Sprintf("symbolic link to %q points outside the image root", target)}
			}
		case ".", "":
		default:
			depth++
		}
	}
	return nil
}

// Unpack applies one uncompressed layer tar stream onto the directory dir:
// files, directories, symbolic and hard links are created, whiteouts delete,
// and unsafe entries stop it with an *UnsafeEntryError. All writes go through
// an os.Root, so even a link planted by an earlier entry cannot lead outside dir.
func Unpack(dir string, r io.Reader) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if err := apply(root, tr, h); err != nil {
			return err
		}
	}
}

func apply(root *os.Root, tr *tar.Reader, h *tar.Header) error {
	p, err := EntryPath(h.Name)
	if err != nil {
		return err
	}
	base := path.Base(p)
	dir := path.Dir(p)
	if base == whiteoutOpaque {
		ents, err := fs.ReadDir(root.FS(), dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("opaque whiteout %s: %w", h.Name, err)
		}
		for _, e := range ents {
			if err := root.RemoveAll(path.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("opaque whiteout %s: %w", h.Name, err)
			}
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		victim := path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))
		if err := root.RemoveAll(victim); err != nil {
			return fmt.Errorf("whiteout %s: %w", h.Name, err)
		}
		return nil
	}
	if p == "." {
		return nil
	}
	if dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
	}
	mode := fs.FileMode(h.Mode) & fs.ModePerm
	switch h.Typeflag {
	case tar.TypeDir:
		if fi, err := root.Lstat(p); err == nil && fi.IsDir() {
			return root.Chmod(p, mode|0o700)
		}
		_ = root.RemoveAll(p)
		if err := root.Mkdir(p, mode|0o700); err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
	case tar.TypeReg, tar.TypeRegA:
		_ = root.RemoveAll(p)
		f, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
		if err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
		if err := root.Chmod(p, mode|0o600); err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
	case tar.TypeSymlink:
		if err := linkTarget(h.Name, p, h.Linkname); err != nil {
			return err
		}
		_ = root.RemoveAll(p)
		if err := root.Symlink(h.Linkname, p); err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
	case tar.TypeLink:
		target, err := EntryPath(h.Linkname)
		if err != nil {
			return &UnsafeEntryError{Name: h.Name, Reason: fmt.Sprintf("hard link to %q points outside the image root", h.Linkname)}
		}
		fi, err := root.Lstat(target)
		if err != nil {
			return &UnsafeEntryError{Name: h.Name, Reason: fmt.Sprintf("hard link to %q, which the layer has not created", h.Linkname)}
		}
		if fi.Mode()&fs.ModeSymlink != 0 || fi.IsDir() {
			return &UnsafeEntryError{Name: h.Name, Reason: fmt.Sprintf("hard link to %q, which is not a regular file", h.Linkname)}
		}
		_ = root.RemoveAll(p)
		if err := root.Link(target, p); err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
	case tar.TypeChar, tar.TypeBlock:
		return &UnsafeEntryError{Name: h.Name, Reason: "device file"}
	case tar.TypeFifo:
		return &UnsafeEntryError{Name: h.Name, Reason: "named pipe"}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return &UnsafeEntryError{Name: h.Name, Reason: fmt.Sprintf("unsupported tar entry type %q", h.Typeflag)}
	}
	return nil
}
