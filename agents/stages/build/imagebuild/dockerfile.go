package imagebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DockerfileBuild is one Dockerfile build.
type DockerfileBuild struct {
	// Name is the component name; Context the build context directory
	// (made absolute); Dockerfile the Dockerfile path (absolute or
	// relative to Context).
	Name, Context, Dockerfile string
	// Created is the SOURCE_DATE_EPOCH given to the builder (zero: the Unix epoch).
	Created time.Time
	// Output receives the builder's output (nil: discarded).
	Output io.Writer
	// Dir receives the builder's output (an OCI image layout; a tarball for
	// kaniko), from which the returned image reads its blobs: it must
	// outlive the image (until it is pushed); the caller removes it. Required.
	Dir string
}

// Labels are not given to the builder: the caller sets them on the built
// image's config (WithMeta), so that the same content can keep the
// revision label it was first built with.

// Builder builds a Dockerfile into an image without pushing it.
type Builder interface {
	// Name is the builder's name: "docker buildx", "buildah" or "kaniko".
	Name() string
	// Build runs the builder and loads the image it produced.
	Build(ctx context.Context, b DockerfileBuild) (v1.Image, error)
}

// Builder names accepted by DetectBuilder's prefer argument.
const (
	BuilderDocker  = "docker"
	BuilderBuildah = "buildah"
	BuilderKaniko  = "kaniko"
)

// ErrNoBuilder is returned (wrapped) when no Dockerfile builder is on PATH.
var ErrNoBuilder = errors.New("no Dockerfile builder found on PATH")

// DetectBuilder returns the first builder found with lookPath
// (exec.LookPath when nil), in the order docker (buildx), buildah, kaniko
// (its executable is "executor"), or only prefer when set. Without one it
// returns ErrNoBuilder naming what it looked for and how to fix it.
func DetectBuilder(lookPath func(string) (string, error), prefer string) (Builder, error) {
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	type cand struct {
		name, bin string
		make      func(bin string) Builder
	}
	cands := []cand{
		{BuilderDocker, "docker", func(b string) Builder { return &cliBuilder{name: "docker buildx", bin: b, kind: BuilderDocker} }},
		{BuilderBuildah, "buildah", func(b string) Builder { return &cliBuilder{name: "buildah", bin: b, kind: BuilderBuildah} }},
		{BuilderKaniko, "executor", func(b string) Builder { return &cliBuilder{name: "kaniko", bin: b, kind: BuilderKaniko} }},
	}
	var looked []string
	for _, c := range cands {
		if prefer != "" && prefer != c.name {
			continue
		}
		looked = append(looked, c.bin)
		if p, err := lookPath(c.bin); err == nil {
			return c.make(p), nil
		}
	}
	if prefer != "" && len(looked) == 0 {
		return nil, fmt.Errorf("dockerfile builder %q is unknown: use %s, %s or %s", prefer, BuilderDocker, BuilderBuildah, BuilderKaniko)
	}
	return nil, fmt.Errorf("%w (looked for %s): install docker with the buildx plugin, buildah, or kaniko's executor, or build this component with kind go", ErrNoBuilder, strings.Join(looked, ", "))
}

type cliBuilder struct {
	name, bin, kind string
}

func (c *cliBuilder) Name() string { return c.name }

// Commands returns the argv lists the builder runs for b, writing the image
// to out: an OCI image layout directory for docker and buildah (no archive
// to unpack: the blobs are written once), a docker tarball for kaniko. The
// last list of buildah's removes the image from its own storage once
// exported (buildah does not cache layers unless asked, so nothing is lost).
func (c *cliBuilder) Commands(b DockerfileBuild, out string) [][]string {
	df := b.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !filepath.IsAbs(df) {
		df = filepath.Join(b.Context, df)
	}
	tag := "branchml.local/" + b.Name + ":build"
	switch c.kind {
	case BuilderDocker:
		return [][]string{{c.bin, "buildx", "build", "--file", df, "--output", "type=oci,dest=" + out + ",tar=false,rewrite-timestamp=true", b.Context}}
	case BuilderBuildah:
		return [][]string{
			{c.bin, "build", "--file", df, "--tag", tag, "--timestamp", epoch(b.Created), b.Context},
			{c.bin, "push", tag, "oci:" + out},
			{c.bin, "rmi", tag},
		}
	default: // kaniko
		return [][]string{{c.bin, "--dockerfile", df, "--context", "dir://" + b.Context, "--no-push", "--reproducible", "--tar-path", out, "--destination", tag}}
	}
}

func epoch(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.Unix(), 10)
}

func (c *cliBuilder) Build(ctx context.Context, b DockerfileBuild) (v1.Image, error) {
	if b.Dir == "" {
		return nil, fmt.Errorf("component %s: DockerfileBuild.Dir is empty: give a directory for the builder's output", b.Name)
	}
	ctxDir, err := filepath.Abs(b.Context)
	if err != nil {
		return nil, err
	}
	b.Context = ctxDir
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(b.Dir, "layout")
	if c.kind == BuilderKaniko {
		out = filepath.Join(b.Dir, "image.tar")
	}
	for _, argv := range c.Commands(b, out) {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir = b.Context
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+epoch(b.Created))
		var buf bytes.Buffer
		var w io.Writer = &buf
		if b.Output != nil {
			w = io.MultiWriter(&buf, b.Output)
		}
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("component %s: %s: %w\n%s", b.Name, strings.Join(argv, " "), err, lastLines(buf.String(), 20))
		}
	}
	if c.kind == BuilderKaniko {
		return tarball.ImageFromPath(out, nil)
	}
	return loadLayout(out)
}

// loadLayout returns the first image of the OCI image layout in dir. The
// image's blobs are read from dir lazily, so dir must stay until the image
// is pushed.
func loadLayout(dir string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("the builder's output is not an OCI image layout: %w", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
	}
	return nil, errors.New("the builder's OCI layout holds no image manifest")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
