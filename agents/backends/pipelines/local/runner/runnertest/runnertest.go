package runnertest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/branchml/branchml/agents/internal/imagecache"
)

// BinaryPath is where the tool sits in the image.
const BinaryPath = "/ko-app/tool"

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Tool builds the test program (CGO off, static) once per test binary and
// returns its path. Commands: true; produce TEXT N OUT WORDFILE; consume IN
// WORD SUFFIX OUT; write OUT TEXT...; mkdir DIR FILE TEXT; train MODELDIR
// METRICSOUT METRICSJSON DATASET; env NAME OUT;
// fail CODE; flaky COUNTER N; sleep DURATION [PIDFILE]; spawn DURATION
// PIDFILE (a child process sleeps; its pid goes to PIDFILE).
func Tool(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(file), "..", "testdata", "tool")
		dir, err := os.MkdirTemp("", "runnertest-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "tool")
		cmd := exec.Command("go", "build", "-o", buildBin, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build tool: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildBin
}

// Image packs the tool at BinaryPath into a one-layer image with env.
func Image(tb testing.TB, env ...string) v1.Image {
	tb.Helper()
	bin, err := os.ReadFile(Tool(tb))
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "ko-app/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "ko-app/tool", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	tw.Close()
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		tb.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		tb.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Env: append([]string{"PATH=/ko-app"}, env...), Entrypoint: []string{BinaryPath}})
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// Push pushes the tool image to host/repo and returns "host/repo@sha256:…".
func Push(tb testing.TB, host, repo string, env ...string) string {
	tb.Helper()
	img := Image(tb, env...)
	ref, err := name.ParseReference(host + "/" + repo + ":test")
	if err != nil {
		tb.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		tb.Fatal(err)
	}
	d, _ := img.Digest()
	return host + "/" + repo + "@" + d.String()
}

// DirImages serves every reference from one directory holding the tool at
// BinaryPath, with no registry: for tests of scheduling, not of pulling.
type DirImages struct {
	Root string
	Env  []string
	// User is the image's USER ("" is root).
	User string
}

// NewDirImages lays the tool out under a temporary directory.
func NewDirImages(tb testing.TB, env ...string) *DirImages {
	tb.Helper()
	root := tb.TempDir()
	bin, err := os.ReadFile(Tool(tb))
	if err != nil {
		tb.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "ko-app"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "ko-app", "tool"), bin, 0o755); err != nil {
		tb.Fatal(err)
	}
	return &DirImages{Root: root, Env: append([]string{"PATH=/ko-app"}, env...)}
}

// Ensure returns the directory as the image of ref.
func (d *DirImages) Ensure(_ context.Context, ref string) (*imagecache.Image, error) {
	return &imagecache.Image{Ref: ref, Digest: "sha256:test", RootFS: d.Root, Config: v1.Config{Env: d.Env, User: d.User, Entrypoint: []string{BinaryPath}}}, nil
}
