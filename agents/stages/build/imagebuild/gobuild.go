package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI annotation keys used as image labels
// (github.com/opencontainers/image-spec/blob/main/annotations.md).
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelTitle    = "org.opencontainers.image.title"
)

// DefaultLdflags are the linker flags of every Go component binary: no
// symbol table, no DWARF, an empty build ID (so equal sources link to equal bytes).
const DefaultLdflags = "-s -w -buildid="

// GoImage says how to build the image of a Go component.
type GoImage struct {
	// Name is the component name (the default binary is /ko-app/<Name>).
	Name string
	// ModuleDir is the directory of the component's go.mod; Package the
	// main package relative to it, e.g. "./components/train".
	ModuleDir, Package string
	// Binary is the absolute path of the binary in the image; default "/ko-app/<Name>".
	Binary string
	// Base is the base image; nil means an empty (scratch) base.
	Base v1.Image
	// Created is the timestamp of the image, its history and every layer
	// entry (SOURCE_DATE_EPOCH style); the zero time means the Unix epoch.
	Created time.Time
	// Labels are added to the image config (OCI labels: LabelSource, LabelRevision).
	Labels map[string]string
	// GOOS and GOARCH default to linux and the architecture of this machine.
	GOOS, GOARCH string
	// Ldflags default to DefaultLdflags.
	Ldflags string
	// Go is the go command (default "go"); Env extra KEY=VALUE for it.
	Go  string
	Env []string
}

// Built is a built Go image.
type Built struct {
	Image v1.Image
	// Digest is the manifest digest "sha256:<hex>".
	Digest string
	// Binary is the binary's path in the image; BinarySize its size in bytes.
	Binary     string
	BinarySize int64
}

// BuildGo compiles the component as a static binary (CGO_ENABLED=0,
// -trimpath, -buildvcs=false, fixed -ldflags) and returns an OCI image: Base
// plus one layer holding the binary at Binary (directories 0755, binary 0755,
// owner 0:0, every time Created, entries in path order), with the binary as
// entrypoint. Same sources, toolchain and options give the same digest.
// A compile error is returned with the go command's output.
func BuildGo(ctx context.Context, g GoImage) (*Built, error) {
	if g.Binary == "" {
		g.Binary = "/ko-app/" + g.Name
	}
	if !path.IsAbs(g.Binary) || path.Clean(g.Binary) != g.Binary || g.Binary == "/" {
		return nil, fmt.Errorf("component %s: binary path %q must be absolute and clean, e.g. /ko-app/%s", g.Name, g.Binary, g.Name)
	}
	if g.GOOS == "" {
		g.GOOS = "linux"
	}
	if g.GOARCH == "" {
		g.GOARCH = runtime.GOARCH
	}
	if g.Ldflags == "" {
		g.Ldflags = DefaultLdflags
	}
	if g.Go == "" {
		g.Go = "go"
	}
	created := g.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	tmp, err := os.MkdirTemp("", "branchml-build-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "bin")
	cmd := exec.CommandContext(ctx, g.Go, "build", "-trimpath", "-buildvcs=false", "-ldflags="+g.Ldflags, "-o", out, g.Package)
	cmd.Dir = g.ModuleDir
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS="+g.GOOS, "GOARCH="+g.GOARCH, "GOFLAGS=-mod=readonly"), g.Env...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("component %s: go build %s: %w\n%s", g.Name, g.Package, err, strings.TrimSpace(output.String()))
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	layerTar, err := FileLayer(map[string][]byte{g.Binary: bin}, created)
	if err != nil {
		return nil, err
	}
	// Compressed once here (go-containerregistry would compress again for
	// every read of an uncompressed opener); gzip output is deterministic.
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(layerTar); err != nil {
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
	base := g.Base
	if base == nil {
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "branchml-build " + g.Package, Comment: "go build"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = g.GOOS, g.GOARCH
	cf.Created = v1.Time{Time: created}
	cf.Config.Entrypoint = []string{g.Binary}
	cf.Config.Cmd = nil
	if cf.Config.WorkingDir == "" {
		cf.Config.WorkingDir = "/"
	}
	if !hasEnv(cf.Config.Env, "PATH") {
		cf.Config.Env = append(cf.Config.Env, "PATH=/usr/local/bin:/usr/bin:/bin:"+path.Dir(g.Binary))
	}
	if len(g.Labels) > 0 && cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for k, v := range g.Labels {
		cf.Config.Labels[k] = v
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	return &Built{Image: img, Digest: d.String(), Binary: g.Binary, BinarySize: int64(len(bin))}, nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// FileLayer returns an uncompressed tar of files (absolute image path →
// content, mode 0755) and their parent directories (0755), owner 0:0, every
// entry's time set to mtime, in lexical path order: the same input gives the
// same bytes.
func FileLayer(files map[string][]byte, mtime time.Time) ([]byte, error) {
	mtime = mtime.UTC().Truncate(time.Second)
	norm := map[string][]byte{}
	dirs := map[string]bool{}
	for p, data := range files {
		clean := strings.TrimPrefix(path.Clean("/"+p), "/")
		if clean == "" {
			return nil, fmt.Errorf("layer file path %q is empty", p)
		}
		norm[clean] = data
		for d := path.Dir(clean); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	names := make([]string, 0, len(norm)+len(dirs))
	for n := range norm {
		if dirs[n] {
			return nil, fmt.Errorf("layer path %q is both a file and a directory", n)
		}
		names = append(names, n)
	}
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o755, ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		data, isFile := norm[n]
		if isFile {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		} else {
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if isFile {
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
