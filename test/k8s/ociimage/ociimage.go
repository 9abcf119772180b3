package ociimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/branchml/branchml/agents/stages/build/imagebuild"
)

// DefaultPath is the PATH of the test bed's images (Docker's default).
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// File is one host file to put in the image's layer.
type File struct {
	// Source is the file on the host (read whole, symlinks followed).
	Source string
	// Path is where it goes in the image: absolute and clean, e.g. "/pause".
	Path string
	// Mode is its permission bits in the image; 0 means 0755 when the
	// host file has any execute bit, else 0644.
	Mode fs.FileMode
	// UID and GID own it in the image (0: root).
	UID, GID int
}

// Config is the image config (OCI image-spec config.md, "config" object).
type Config struct {
	// Entrypoint and Cmd are the command; Kubernetes' container command
	// replaces Entrypoint, its args replace Cmd.
	Entrypoint, Cmd []string
	// Env is KEY=VALUE, exactly as given (no PATH is added: see DefaultPath).
	Env []string
	// User is "uid[:gid]" or a name ("" runs as root).
	User string
	// WorkingDir is the command's directory ("" means "/").
	WorkingDir string
	// Created is the image's creation time and every layer entry's mtime
	// (whole seconds, UTC); the zero time means the Unix epoch.
	Created time.Time
	// Architecture is the GOARCH of the binaries ("" means runtime.GOARCH);
	// the OS is always linux.
	Architecture string
}

// FromFiles returns an OCI image of one gzip layer holding files at their
// Paths, with every parent directory as an entry of its own (mode 0755,
// owner 0:0) and entries in path order, and cfg as its config. It reads
// the files once and keeps the compressed layer in memory. An error
// names the file that is missing, unreadable, not a regular file, or
// whose image path is relative, unclean, repeated, or also a directory.
func FromFiles(files []File, cfg Config) (v1.Image, error) {
	created := cfg.Created.UTC().Truncate(time.Second)
	if cfg.Created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	raw, err := layerTar(files, created)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "branchml test/k8s/ociimage"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", cfg.Architecture
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Created = v1.Time{Time: created}
	cf.Config.Entrypoint = append([]string(nil), cfg.Entrypoint...)
	cf.Config.Cmd = append([]string(nil), cfg.Cmd...)
	cf.Config.Env = append([]string(nil), cfg.Env...)
	cf.Config.User = cfg.User
	cf.Config.WorkingDir = cfg.WorkingDir
	if cf.Config.WorkingDir == "" {
		cf.Config.WorkingDir = "/"
	}
	return mutate.ConfigFile(img, cf)
}

// layerTar is the uncompressed tar of files (see FromFiles): PAX format,
// numeric owners only, every time mtime (imagebuild.TarLayer, the build
// stage's layer writer).
func layerTar(files []File, mtime time.Time) ([]byte, error) {
	entries := map[string]imagebuild.LayerFile{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("image file %q (from %s): the path must be absolute and clean, e.g. /usr/bin/app", f.Path, f.Source)
		}
		if _, dup := entries[f.Path]; dup {
			return nil, fmt.Errorf("image file %s is given twice: give each path once", f.Path)
		}
		st, err := os.Stat(f.Source)
		if err != nil {
			return nil, fmt.Errorf("image file %s: %w", f.Path, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("image file %s: source %s is not a regular file (%s)", f.Path, f.Source, st.Mode().Type())
		}
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return nil, fmt.Errorf("image file %s: %w", f.Path, err)
		}
		if f.Mode == 0 {
			f.Mode = 0o644
			if st.Mode().Perm()&0o111 != 0 {
				f.Mode = 0o755
			}
		}
		entries[f.Path] = imagebuild.LayerFile{Data: data, Mode: f.Mode, UID: f.UID, GID: f.GID}
	}
	raw, err := imagebuild.TarLayer(entries, "", mtime)
	if err != nil {
		return nil, fmt.Errorf("image files: %w", err)
	}
	return raw, nil
}

// CheckLoopbackHost returns an error unless host is "127.0.0.1:PORT" or
// "localhost:PORT" (PORT 1-65535): the test bed talks to nothing else.
func CheckLoopbackHost(host string) error {
	h, p, err := net.SplitHostPort(host)
	if err == nil {
		var n int
		n, err = strconv.Atoi(p)
		if err == nil && (n < 1 || n > 65535) {
			err = fmt.Errorf("port %d out of range", n)
		}
	}
	if err != nil || (h != "127.0.0.1" && h != "localhost") {
		return fmt.Errorf("registry %q: only a registry on this machine is allowed, as 127.0.0.1:PORT or localhost:PORT (e.g. the host of registrytest.Start)", host)
	}
	return nil
}

// Push writes img to ref ("127.0.0.1:PORT/repo:tag" or "localhost:PORT/…")
// over plain HTTP without credentials, through a transport that dials
// loopback addresses only and no proxy, and returns the manifest digest
// "sha256:<64 hex>". A ref on any other registry (a name without a host
// means Docker Hub) is refused before any traffic.
func Push(ctx context.Context, img v1.Image, ref string) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := CheckLoopbackHost(r.Context().RegistryStr()); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithTransport(loopbackTransport())); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return d.String(), nil
}

// loopbackTransport is an HTTP transport without proxy whose dialer
// refuses any address that is not a loopback IP and dials "localhost" as
// 127.0.0.1 (no resolver asked; the test bed's registry listens there).
func loopbackTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		h, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if h == "localhost" {
			h, addr = "127.0.0.1", net.JoinHostPort("127.0.0.1", port)
		}
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("dial %s: not a loopback address; the test bed's registry is on 127.0.0.1", addr)
		}
		return dialer.DialContext(ctx, network, addr)
	}
	return t
}

// BuildStatic runs `go build -trimpath -ldflags="-s -w" -o out pkg` in
// moduleDir with the go command on PATH, CGO_ENABLED=0, GOOS=linux and
// GOARCH the host's (runtime.GOARCH, as FromFiles' default): a static
// binary with no symbol table. pkg is a package path or a directory relative to
// moduleDir ("./cmd/pause"); tags, if any, go to -tags. A failure returns the go command's stderr.
func BuildStatic(ctx context.Context, moduleDir, pkg, out string, tags ...string) error {
	args := []string{"build", "-trimpath", "-ldflags=-s -w"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "-o", out, pkg)...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", pkg, moduleDir, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
