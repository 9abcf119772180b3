package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/branchml/branchml/agents/config"
)

// probe is a component that needs what an image must give a program: a
// writable /tmp and $HOME, CA certificates, a non-root user.
const probe = `package main

import (
	"crypto/x509"
	"fmt"
	"os"
)

func main() {
	f, err := os.CreateTemp("", "probe-*")
	if err != nil {
		fmt.Println("tmp:", err)
		os.Exit(1)
	}
	f.Close()
	os.Remove(f.Name())
	home, _ := os.UserHomeDir()
	if err := os.WriteFile(home+"/written", []byte("x"), 0o600); err != nil {
		fmt.Println("home:", err)
		os.Exit(1)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		fmt.Println("certs:", err)
		os.Exit(1)
	}
	fmt.Println(os.Getuid(), os.Getgid(), home, len(pool.Subjects()) > 100) //nolint:staticcheck // counting is all we do
}
`

// unpackOwned writes img's file system to dir with owners and modes kept
// (as a container runtime does), with GNU tar as root.
func unpackOwned(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	cmd := exec.Command("tar", "-x", "--same-owner", "-p", "-C", dir)
	cmd.Stdin = rc
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
}

// TestImageRunsAsNonRoot builds a Go component, then runs its binary in a
// chroot of the image's file system as the image's user with the image's
// environment: it writes /tmp and its home and loads CA certificates.
func TestImageRunsAsNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for chroot and file owners")
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Skip("no chroot command")
	}
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	writeFiles(t, e.root, map[string]string{"components/probe/main.go": probe})
	e.cfg.Components = []config.Component{{Name: "probe", Path: "components/probe", Kind: "go", Image: "ml/probe"}}
	res, err := Run(ctx, e.opts(t, "1111111111111111111111111111111111111111"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Components[0].Tests != TestsNone {
		t.Fatalf("tests %q, want %q", res.Components[0].Tests, TestsNone)
	}
	img, err := e.local.Pull(ctx, res.Components[0].Image)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.User != "65532:65532" {
		t.Fatalf("user %q", cf.Config.User)
	}
	root := t.TempDir()
	unpackOwned(t, img, root)
	fi, err := os.Stat(filepath.Join(root, "tmp"))
	if err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("/tmp: %v %v", fi, err)
	}
	cmd := exec.Command(chroot, "--userspec="+cf.Config.User, root, cf.Config.Entrypoint[0])
	cmd.Env = cf.Config.Env
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "65532 65532 /home/nonroot true\n" {
		t.Fatalf("in the image: %v\n%s", err, out)
	}
}

// goWrapper is a go command that records each invocation's arguments and
// the build environment it got, then runs the real go.
func goWrapper(t *testing.T) (bin, log string) {
	t.Helper()
	real, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	bin = filepath.Join(dir, "go")
	script := "#!/bin/sh\necho \"$1|CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS GOOS=$GOOS GOARCH=$GOARCH|$*\" >> " + log + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

// TestTestsAndImagesSameFlags: the go test of the tests and the go build of
// the images get the same build flags and environment, so the packages
// compiled for the tests are cache hits for the build; one go build makes
// both binaries.
func TestTestsAndImagesSameFlags(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.opts(t, "1111111111111111111111111111111111111111")
	var log string
	o.Go, log = goWrapper(t)
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(log)
	var test, build, export []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		switch parts[0] {
		case "list":
			if strings.Contains(parts[2], " -export ") {
				export = append(export, parts[1], parts[2])
			}
		case "test":
			test = append(test, parts[1], parts[2])
		case "build":
			build = append(build, parts[1], parts[2])
		}
	}
	if len(test) != 2 || len(build) != 2 {
		t.Fatalf("go test %d times, go build %d times, want 1 and 1:\n%s", len(test)/2, len(build)/2, raw)
	}
	if len(export) != 2 || export[0] != build[0] || !strings.Contains(export[1], " -trimpath -buildvcs=false ./components/hello ./components/other") {
		t.Fatalf("precompile: %q", export)
	}
	if test[0] != build[0] || !strings.HasPrefix(test[0], "CGO_ENABLED=0 GOFLAGS=-mod=readonly GOOS=linux GOARCH=") {
		t.Fatalf("environments differ:\n test  %s\n build %s", test[0], build[0])
	}
	if !strings.HasPrefix(test[1], "test -json -trimpath -buildvcs=false ") || !strings.HasPrefix(build[1], "build -trimpath -buildvcs=false ") ||
		!strings.HasSuffix(build[1], " ./components/hello ./components/other") {
		t.Fatalf("flags:\n test  %s\n build %s", test[1], build[1])
	}
}

// TestMultiPlatform builds linux/amd64 and linux/arm64 images of one
// component as an OCI index: the lock pins the index; each image holds a
// binary of its architecture.
func TestMultiPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the runtime for a second architecture")
	}
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	e.cfg.Components = e.cfg.Components[1:] // other: no imports beyond the runtime
	e.cfg.Components[0].Platforms = []string{"linux/amd64", "linux/arm64"}
	res, err := Run(ctx, e.opts(t, "1111111111111111111111111111111111111111"))
	if err != nil {
		t.Fatal(err)
	}
	c := res.Components[0]
	if !reflect.DeepEqual(c.Platforms, []string{"linux/amd64", "linux/arm64"}) || !strings.Contains(e.lockFile(t), `"digest": "`+c.Digest+`"`) {
		t.Fatalf("result %+v", c)
	}
	ref, err := name.ParseReference(c.Image, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 2 || im.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("index %+v", im)
	}
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if cf.Architecture != d.Platform.Architecture || cf.Config.User != "65532:65532" {
			t.Fatalf("image for %s: config %s %q", d.Platform.Architecture, cf.Architecture, cf.Config.User)
		}
		layers, _ := img.Layers()
		bin := binaryOf(t, layers[len(layers)-1], "ko-app/other")
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil || f.Machine != wantMachine[d.Platform.Architecture] {
			t.Fatalf("%s binary: %v %v", d.Platform.Architecture, f, err)
		}
	}
	// The same again: skipped; a test-only change keeps the index's digest.
	writeFiles(t, e.root, map[string]string{"components/other/other_test.go": "package main\n\nimport \"testing\"\n\nfunc TestNothing(t *testing.T) {}\n"})
	res, err = Run(ctx, e.opts(t, "2222222222222222222222222222222222222222"))
	if err != nil || !res.Components[0].ImageUnchanged || res.Components[0].Digest != c.Digest {
		t.Fatalf("test-only change: %v %+v", err, res.Components)
	}
}

func binaryOf(t *testing.T, l v1.Layer, name string) []byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no %s in the layer: %v", name, err)
		}
		if h.Name == name {
			b, _ := io.ReadAll(tr)
			return b
		}
	}
}

// TestBaseImages: base "scratch" gives the binary's layer alone; a base
// reference is pulled from the registry for the component's platform.
func TestBaseImages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	base, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer([]byte("not a tar, never unpacked here"), types.OCILayer)})
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := base.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.User = "linux", runtime.GOARCH, "1000:1000"
	base, _ = mutate.ConfigFile(base, cf)
	if _, err := e.local.Push(ctx, "ml/base", "v1", base); err != nil {
		t.Fatal(err)
	}
	e.cfg.Components[0].Base = e.local.Host() + "/ml/base:v1"
	e.cfg.Components[1].Base = "scratch"
	res, err := Run(ctx, e.opts(t, "1111111111111111111111111111111111111111"))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		layers int
		user   string
	}{{2, "1000:1000"}, {1, ""}} {
		img, err := e.local.Pull(ctx, res.Components[i].Image)
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		cf, _ := img.ConfigFile()
		if len(layers) != want.layers || cf.Config.User != want.user {
			t.Errorf("%s: %d layers, user %q; want %d, %q", res.Components[i].Name, len(layers), cf.Config.User, want.layers, want.user)
		}
	}
}
