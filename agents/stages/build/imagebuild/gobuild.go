package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/branchml/branchml/agents/internal/baseimage"
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

// GoFlags are the build flags of every Go compile of the build stage, its
// tests included (`go test` takes them too): with the same flags and
// GoEnv, packages compiled for the tests are build-cache hits for the
// images.
var GoFlags = []string{"-trimpath", "-buildvcs=false"}

// GoEnv is the environment of every go command of the build stage for
// platform "os/arch[/variant]": static binaries (CGO_ENABLED=0), the
// platform, and go.mod/go.sum read-only.
func GoEnv(platform string) ([]string, error) {
	p, err := ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	env := []string{"CGO_ENABLED=0", "GOOS=" + p.OS, "GOARCH=" + p.Architecture, "GOFLAGS=-mod=readonly"}
	if p.Variant != "" {
		switch p.Architecture {
		case "arm":
			env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
		case "amd64":
			env = append(env, "GOAMD64="+p.Variant)
		}
	}
	return env, nil
}

// DefaultPlatform is linux and the architecture of this machine.
func DefaultPlatform() string { return "linux/" + runtime.GOARCH }

// ParsePlatform parses "os/arch[/variant]" (e.g. "linux/arm64").
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/arm64", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// GoCompile is one `go build` of several main packages for one platform.
type GoCompile struct {
	// ModuleDir is the directory of the go.mod; Packages the main packages
	// relative to it ("./components/train").
	ModuleDir string
	Packages  []string
	// Platform is "os/arch[/variant]" (default DefaultPlatform()).
	Platform string
	// Ldflags default to DefaultLdflags.
	Ldflags string
	// OutDir receives the binaries (required).
	OutDir string
	// Go is the go command (default "go"); Env extra KEY=VALUE for it.
	Go  string
	Env []string
}

var majorVersion = regexp.MustCompile(`^v[0-9]+$`)

// execName is the name `go build -o DIR/` gives the binary of pkg: its last
// path element, or the one before a major version suffix (/v2).
func execName(pkg string) string {
	p := path.Clean(filepath.ToSlash(pkg))
	elem := path.Base(p)
	if majorVersion.MatchString(elem) && path.Dir(p) != "." {
		elem = path.Base(path.Dir(p))
	}
	return elem
}

// CompileGo compiles c.Packages as static binaries (CGO_ENABLED=0,
// GoFlags, c.Ldflags) into c.OutDir with as few go commands as it can (one
// when the binaries' names differ: the go command links them in parallel)
// and returns each package's binary path. A compile error is returned with
// the go command's output.
func CompileGo(ctx context.Context, c GoCompile) (map[string]string, error) {
	if c.OutDir == "" {
		return nil, fmt.Errorf("go build: no output directory")
	}
	if c.Platform == "" {
		c.Platform = DefaultPlatform()
	}
	if c.Ldflags == "" {
		c.Ldflags = DefaultLdflags
	}
	if c.Go == "" {
		c.Go = "go"
	}
	env, err := GoEnv(c.Platform)
	if err != nil {
		return nil, err
	}
	// Batches of packages with distinct binary names.
	var batches [][]string
	for _, pkg := range c.Packages {
		placed := false
		for i, b := range batches {
			clash := false
			for _, q := range b {
				clash = clash || execName(q) == execName(pkg)
			}
			if !clash {
				batches[i], placed = append(b, pkg), true
				break
			}
		}
		if !placed {
			batches = append(batches, []string{pkg})
		}
	}
	bins := map[string]string{}
	for i, batch := range batches {
		dir := filepath.Join(c.OutDir, fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		args := append(append([]string{"build"}, GoFlags...), "-ldflags="+c.Ldflags, "-o", dir+string(filepath.Separator))
		cmd := exec.CommandContext(ctx, c.Go, append(args, batch...)...)
		cmd.Dir = c.ModuleDir
		cmd.Env = append(append(os.Environ(), env...), c.Env...)
		var output bytes.Buffer
		cmd.Stdout, cmd.Stderr = &output, &output
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build %s (%s): %w\n%s", strings.Join(batch, " "), c.Platform, err, strings.TrimSpace(output.String()))
		}
		for _, pkg := range batch {
			bin := filepath.Join(dir, execName(pkg))
			if strings.HasPrefix(c.Platform, "windows/") {
				bin += ".exe"
			}
			if _, err := os.Stat(bin); err != nil {
				return nil, fmt.Errorf("go build %s: no binary %s: %w (is it a main package?)", pkg, bin, err)
			}
			bins[pkg] = bin
		}
	}
	return bins, nil
}

// Meta is what an image says about its build, apart from its content: the
// commit it was built from (the revision label) and its creation time.
// Reusing an image's Meta for the same content gives the same digest.
type Meta struct {
	// Revision is the org.opencontainers.image.revision label ("" = none).
	Revision string
	// Created is the image's timestamp (its config and history); the zero
	// time means the Unix epoch.
	Created time.Time
}

// MetaOf reads the Meta of an image config.
func MetaOf(cf *v1.ConfigFile) Meta {
	return Meta{Revision: cf.Config.Labels[LabelRevision], Created: cf.Created.Time}
}

// GoImage says how to make the image of a Go component from its binary.
type GoImage struct {
	// Name is the component name (the default binary is /ko-app/<Name>).
	Name string
	// ModuleDir is the directory of the component's go.mod; Package the
	// main package relative to it, e.g. "./components/train" (BuildGo only).
	ModuleDir, Package string
	// Binary is the absolute path of the binary in the image; default "/ko-app/<Name>".
	Binary string
	// Base is the base image; nil means baseimage.Image (nonroot user,
	// /tmp, CA certificates); Scratch an empty base.
	Base    v1.Image
	Scratch bool
	// Created is the timestamp of the binary's layer entries
	// (SOURCE_DATE_EPOCH style); the zero time means the Unix epoch.
	Created time.Time
	// Meta is the revision label and the image's creation time (zero: Created).
	Meta Meta
	// Labels are added to the image config (OCI labels such as LabelSource);
	// the revision label comes from Meta.
	Labels map[string]string
	// Platform is "os/arch[/variant]" (default DefaultPlatform()).
	Platform string
	// Ldflags default to DefaultLdflags (BuildGo only).
	Ldflags string
	// Go is the go command (default "go"); Env extra KEY=VALUE for it (BuildGo only).
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
	// Layer is the binary's layer (to assemble the same content with
	// another Meta: see Assemble).
	Layer v1.Layer
}

func (g *GoImage) defaults() error {
	if g.Binary == "" {
		g.Binary = "/ko-app/" + g.Name
	}
	if !path.IsAbs(g.Binary) || path.Clean(g.Binary) != g.Binary || g.Binary == "/" {
		return fmt.Errorf("component %s: binary path %q must be absolute and clean, e.g. /ko-app/%s", g.Name, g.Binary, g.Name)
	}
	if g.Platform == "" {
		g.Platform = DefaultPlatform()
	}
	if g.Created.IsZero() {
		g.Created = time.Unix(0, 0)
	}
	g.Created = g.Created.UTC()
	return nil
}

// BuildGo compiles the component (CompileGo) and makes its image (ImageFromBinary).
func BuildGo(ctx context.Context, g GoImage) (*Built, error) {
	if err := g.defaults(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "branchml-build-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bins, err := CompileGo(ctx, GoCompile{ModuleDir: g.ModuleDir, Packages: []string{g.Package}, Platform: g.Platform,
		Ldflags: g.Ldflags, OutDir: tmp, Go: g.Go, Env: g.Env})
	if err != nil {
		return nil, fmt.Errorf("component %s: %w", g.Name, err)
	}
	bin, err := os.ReadFile(bins[g.Package])
	if err != nil {
		return nil, err
	}
	return ImageFromBinary(bin, g)
}

// ImageFromBinary returns an OCI image: Base (see GoImage.Base) plus one
// layer holding bin at g.Binary (directories 0755, binary 0755, owner 0:0,
// every time g.Created, entries in path order), with the binary as
// entrypoint and g.Platform in its config. Same binary and options give the
// same digest.
func ImageFromBinary(bin []byte, g GoImage) (*Built, error) {
	if err := g.defaults(); err != nil {
		return nil, err
	}
	layerTar, err := FileLayer(map[string][]byte{g.Binary: bin}, g.Created)
	if err != nil {
		return nil, err
	}
	// Compressed once, digests computed in the same pass (a tarball
	// layer from an opener would decompress it again for its diff ID).
	layer, err := baseimage.LayerFromTar(layerTar, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	b := &Built{Binary: g.Binary, BinarySize: int64(len(bin)), Layer: layer}
	if err := b.Assemble(g); err != nil {
		return nil, err
	}
	return b, nil
}

// Assemble (re)makes b.Image and b.Digest from b.Layer with g's base,
// labels, platform and Meta: the same binary with another revision label
// costs no compile.
func (b *Built) Assemble(g GoImage) error {
	if err := g.defaults(); err != nil {
		return err
	}
	p, err := ParsePlatform(g.Platform)
	if err != nil {
		return err
	}
	base := g.Base
	switch {
	case g.Scratch:
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	case base == nil:
		if base, err = baseimage.Image(p); err != nil {
			return err
		}
	}
	created := g.Meta.Created
	if created.IsZero() {
		created = g.Created
	}
	created = created.UTC()
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     b.Layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "branchml-build " + g.Name, Comment: "go build"},
	})
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config.Entrypoint = []string{b.Binary}
	cf.Config.Cmd = nil
	if cf.Config.WorkingDir == "" {
		cf.Config.WorkingDir = "/"
	}
	cf.Config.Env = withPath(cf.Config.Env, path.Dir(b.Binary))
	cf.Config.Labels = labelsWith(cf.Config.Labels, g.Labels, g.Meta.Revision)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	b.Image, b.Digest = img, d.String()
	return nil
}

// labelsWith returns base's labels with extra added and the revision label
// set to revision (removed when "").
func labelsWith(base, extra map[string]string, revision string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	delete(out, LabelRevision)
	if revision != "" {
		out[LabelRevision] = revision
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// WithMeta returns img with labels added and its revision label set from
// m.Revision (the config alone changes: layers and creation time stay).
func WithMeta(img v1.Image, labels map[string]string, m Meta) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config.Labels = labelsWith(cf.Config.Labels, labels, m.Revision)
	return mutate.ConfigFile(img, cf)
}

// Index returns the OCI image index of imgs, one manifest per image with
// the platform of its config, in the order given.
func Index(imgs []v1.Image) (v1.ImageIndex, error) {
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		mt, err := img.MediaType()
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{MediaType: mt,
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...), nil
}

// withPath returns env with dir at the end of its PATH (the base's, else
// /usr/local/bin:/usr/bin:/bin), as ko does for /ko-app.
func withPath(env []string, dir string) []string {
	out := append([]string(nil), env...)
	for i, e := range out {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			for _, d := range strings.Split(v, ":") {
				if d == dir {
					return out
				}
			}
			out[i] = e + ":" + dir
			return out
		}
	}
	return append(out, "PATH=/usr/local/bin:/usr/bin:/bin:"+dir)
}

// FileLayer returns an uncompressed tar of files (absolute image path →
// content, mode 0755) and their parent directories (0755), owner 0:0, every
// entry's time set to mtime, in lexical path order: the same input gives the
// same bytes.
func FileLayer(files map[string][]byte, mtime time.Time) ([]byte, error) {
	entries := make(map[string]LayerFile, len(files))
	for p, data := range files {
		entries[p] = LayerFile{Data: data, Mode: 0o755, Owner: "root"}
	}
	return TarLayer(entries, "root", mtime)
}

// LayerFile is one regular file of TarLayer: its content, permission bits,
// numeric owner and, when Owner is set, the user and group name written
// beside the numbers ("" writes numbers only).
type LayerFile struct {
	Data     []byte
	Mode     fs.FileMode
	UID, GID int
	Owner    string
}

// TarLayer returns an uncompressed PAX tar of files (image path → file;
// paths are cleaned and taken as absolute) and their parent directories
// (mode 0755, owner 0:0, named dirOwner when that is set), every entry's
// time set to mtime (whole seconds, UTC), in lexical path order: the same
// input gives the same bytes. A path that is both a file and another
// file's parent directory is an error.
func TarLayer(files map[string]LayerFile, dirOwner string, mtime time.Time) ([]byte, error) {
	mtime = mtime.UTC().Truncate(time.Second)
	norm := map[string]LayerFile{}
	dirs := map[string]bool{}
	for p, f := range files {
		clean := strings.TrimPrefix(path.Clean("/"+p), "/")
		if clean == "" {
			return nil, fmt.Errorf("layer file path %q is empty", p)
		}
		norm[clean] = f
		for d := path.Dir(clean); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	names := make([]string, 0, len(norm)+len(dirs))
	for n := range norm {
		if dirs[n] {
			return nil, fmt.Errorf("layer path /%s is both a file and the parent directory of another file", n)
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
		h := &tar.Header{Name: n, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}
		f, isFile := norm[n]
		if isFile {
			h.Typeflag, h.Size, h.Mode, h.Uid, h.Gid = tar.TypeReg, int64(len(f.Data)), int64(f.Mode.Perm()), f.UID, f.GID
			h.Uname, h.Gname = f.Owner, f.Owner
		} else {
			h.Typeflag, h.Name, h.Uname, h.Gname = tar.TypeDir, n+"/", dirOwner, dirOwner
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if isFile {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
