package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

func tinyModule(t *testing.T, msg string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":            "module example.com/tiny\n\ngo 1.22\n",
		"cmd/hello/main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"" + msg + "\") }\n",
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644)
	}
	return dir
}

func TestBuildGoReproducible(t *testing.T) {
	ctx := context.Background()
	mod := tinyModule(t, "hello from the image")
	g := GoImage{Name: "hello", ModuleDir: mod, Package: "./cmd/hello", Scratch: true,
		Labels: map[string]string{LabelSource: "https://example.com/ml.git"}, Meta: Meta{Revision: "abc123"}}
	b1, err := BuildGo(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := BuildGo(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if b1.Digest != b2.Digest {
		t.Fatalf("same sources, digests %s and %s", b1.Digest, b2.Digest)
	}
	if b1.Binary != "/ko-app/hello" {
		t.Fatalf("binary %q", b1.Binary)
	}
	cf, err := b1.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/ko-app/hello"}) || cf.OS != "linux" || !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Fatalf("config: entrypoint %v os %s created %v", cf.Config.Entrypoint, cf.OS, cf.Created)
	}
	if cf.Config.Labels[LabelRevision] != "abc123" || cf.Config.Labels[LabelSource] != "https://example.com/ml.git" {
		t.Fatalf("labels %v", cf.Config.Labels)
	}
	mt, _ := b1.Image.MediaType()
	if mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("media type %s", mt)
	}
	// The layer: sorted entries, fixed owner, mode and time.
	layers, _ := b1.Image.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers", len(layers))
	}
	rc, _ := layers[0].Uncompressed()
	tr := tar.NewReader(rc)
	var got []string
	var bin []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+" "+os.FileMode(h.Mode).String()+" "+h.ModTime.UTC().Format(time.RFC3339))
		if h.Typeflag == tar.TypeReg {
			bin, _ = io.ReadAll(tr)
		}
	}
	want := []string{"ko-app/ -rwxr-xr-x 1970-01-01T00:00:00Z", "ko-app/hello -rwxr-xr-x 1970-01-01T00:00:00Z"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("layer entries %q, want %q", got, want)
	}
	exe := filepath.Join(t.TempDir(), "hello")
	os.WriteFile(exe, bin, 0o755)
	out, err := exec.Command(exe).Output()
	if err != nil || string(out) != "hello from the image\n" {
		t.Fatalf("binary printed %q, %v", out, err)
	}

	// Another revision label changes the digest; the same one again gives
	// the same digest without a compile (Assemble).
	g.Meta.Revision = "def456"
	b3, _ := BuildGo(ctx, g)
	if b3.Digest == b1.Digest {
		t.Fatal("label change kept the digest")
	}
	g.Meta.Revision = "abc123"
	if err := b3.Assemble(g); err != nil || b3.Digest != b1.Digest {
		t.Fatalf("reassembled with the first revision: %s, want %s (%v)", b3.Digest, b1.Digest, err)
	}
}

// TestDefaultBase: without a base, a Go image runs as nonroot on the
// base image's layer, with its environment and the binary's dir on PATH.
func TestDefaultBase(t *testing.T) {
	b, err := ImageFromBinary([]byte("not really arm64 code"), GoImage{Name: "hello", Platform: "linux/arm64"})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := b.Image.Layers()
	if len(layers) != 2 {
		t.Fatalf("%d layers, want base + binary", len(layers))
	}
	cf, _ := b.Image.ConfigFile()
	if cf.Config.User != "65532:65532" || cf.Architecture != "arm64" || cf.Config.WorkingDir != "/home/nonroot" ||
		strings.Join(cf.Config.Env, " ") != "PATH=/usr/local/bin:/usr/bin:/bin:/ko-app HOME=/home/nonroot SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" {
		t.Fatalf("config %+v", cf.Config)
	}
}

func TestIndex(t *testing.T) {
	var imgs []v1.Image
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		b, err := ImageFromBinary([]byte("binary for "+p), GoImage{Name: "hello", Platform: p})
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, b.Image)
	}
	idx, err := Index(imgs)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	mt, _ := idx.MediaType()
	if mt != "application/vnd.oci.image.index.v1+json" || len(im.Manifests) != 2 || im.Manifests[0].Platform.Architecture != "amd64" || im.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("index %s %+v", mt, im)
	}
	if _, err := ParsePlatform("linux"); err == nil {
		t.Fatal("platform without an architecture accepted")
	}
}

func TestCompileGoOneCommand(t *testing.T) {
	mod := tinyModule(t, "x")
	os.MkdirAll(filepath.Join(mod, "cmd/other/v2"), 0o755)
	os.WriteFile(filepath.Join(mod, "cmd/other/v2/main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	os.MkdirAll(filepath.Join(mod, "lib/hello"), 0o755)
	os.WriteFile(filepath.Join(mod, "lib/hello/main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	out := t.TempDir()
	bins, err := CompileGo(context.Background(), GoCompile{ModuleDir: mod, Packages: []string{"./cmd/hello", "./cmd/other/v2", "./lib/hello"}, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"./cmd/hello": filepath.Join(out, "0/hello"), "./cmd/other/v2": filepath.Join(out, "0/other"), "./lib/hello": filepath.Join(out, "1/hello")}
	if !reflect.DeepEqual(bins, want) {
		t.Fatalf("binaries %v, want %v", bins, want)
	}
}

func TestBuildGoCompileError(t *testing.T) {
	mod := tinyModule(t, "x")
	os.WriteFile(filepath.Join(mod, "cmd/hello/main.go"), []byte("package main\n\nfunc main() { undefined() }\n"), 0o644)
	_, err := BuildGo(context.Background(), GoImage{Name: "hello", ModuleDir: mod, Package: "./cmd/hello"})
	if err == nil || !strings.Contains(err.Error(), "component hello: go build ./cmd/hello") || !strings.Contains(err.Error(), "undefined: undefined") {
		t.Fatalf("err = %v", err)
	}
	_, err = BuildGo(context.Background(), GoImage{Name: "hello", ModuleDir: mod, Package: "./cmd/hello", Binary: "rel/path"})
	if err == nil || !strings.Contains(err.Error(), `binary path "rel/path" must be absolute`) {
		t.Fatalf("err = %v", err)
	}
}

func TestFileLayerDeterministic(t *testing.T) {
	files := map[string][]byte{"/b/x": []byte("1"), "/a/y/z": []byte("22")}
	l1, err := FileLayer(files, time.Unix(1700000000, 123))
	if err != nil {
		t.Fatal(err)
	}
	l2, _ := FileLayer(map[string][]byte{"a/y/z": []byte("22"), "b/x": []byte("1")}, time.Unix(1700000000, 0))
	if !bytes.Equal(l1, l2) {
		t.Fatal("same files, different bytes")
	}
	tr := tar.NewReader(bytes.NewReader(l1))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != "a/,a/y/,a/y/z,b/,b/x" {
		t.Fatalf("entries %v", names)
	}
	if _, err := FileLayer(map[string][]byte{"/a": nil, "/a/b": nil}, time.Time{}); err == nil {
		t.Fatal("a path that is both file and directory was accepted")
	}
}

func TestDetectBuilder(t *testing.T) {
	none := func(string) (string, error) { return "", exec.ErrNotFound }
	_, err := DetectBuilder(none, "")
	if !errors.Is(err, ErrNoBuilder) || !strings.Contains(err.Error(), "looked for docker, buildah, executor") || !strings.Contains(err.Error(), "install docker with the buildx plugin, buildah, or kaniko") {
		t.Fatalf("err = %v", err)
	}
	only := func(have string) func(string) (string, error) {
		return func(n string) (string, error) {
			if n == have {
				return "/usr/bin/" + n, nil
			}
			return "", exec.ErrNotFound
		}
	}
	b, err := DetectBuilder(only("executor"), "")
	if err != nil || b.Name() != "kaniko" {
		t.Fatalf("builder = %v, %v; want kaniko", b, err)
	}
	if _, err := DetectBuilder(only("executor"), "buildah"); !errors.Is(err, ErrNoBuilder) || !strings.Contains(err.Error(), "looked for buildah") {
		t.Fatalf("prefer buildah: err = %v", err)
	}
	if _, err := DetectBuilder(only("docker"), "podman"); err == nil || !strings.Contains(err.Error(), `dockerfile builder "podman" is unknown`) {
		t.Fatalf("prefer podman: err = %v", err)
	}
	// With the real PATH: a clear error or a builder, never a panic.
	if b, err := DetectBuilder(nil, ""); err == nil {
		t.Logf("builder on this machine: %s", b.Name())
	}
}

func TestCommands(t *testing.T) {
	b := DockerfileBuild{Name: "web", Context: "/src/web"}
	cases := map[string][][]string{
		BuilderDocker: {{"/bin/docker", "buildx", "build", "--file", "/src/web/Dockerfile", "--output", "type=oci,dest=/o/i,tar=false,rewrite-timestamp=true", "/src/web"}},
		BuilderBuildah: {{"/bin/buildah", "build", "--file", "/src/web/Dockerfile", "--tag", "branchml.local/web:build", "--timestamp", "0", "/src/web"},
			{"/bin/buildah", "push", "branchml.local/web:build", "oci:/o/i"}, {"/bin/buildah", "rmi", "branchml.local/web:build"}},
		BuilderKaniko: {{"/bin/executor", "--dockerfile", "/src/web/Dockerfile", "--context", "dir:///src/web", "--no-push", "--reproducible", "--tar-path", "/o/i", "--destination", "branchml.local/web:build"}},
	}
	bins := map[string]string{BuilderDocker: "/bin/docker", BuilderBuildah: "/bin/buildah", BuilderKaniko: "/bin/executor"}
	for kind, want := range cases {
		c := &cliBuilder{bin: bins[kind], kind: kind}
		if got := c.Commands(b, "/o/i"); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", kind, got, want)
		}
	}
}

// TestBuildahFake runs the buildah code path against a stand-in buildah
// script that records its arguments and writes a prepared OCI archive.
func TestBuildahFake(t *testing.T) {
	work := t.TempDir()
	img, err := mutate.AppendLayers(empty.Image)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(work, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	args := filepath.Join(work, "args")
	script := "#!/bin/sh\necho \"$@\" >> " + args + "\ncase \"$1\" in push) cp -r " + filepath.Join(work, "layout") + " \"${3#oci:}\";; esac\n"
	bin := filepath.Join(work, "buildah")
	os.WriteFile(bin, []byte(script), 0o755)
	b, err := DetectBuilder(func(n string) (string, error) {
		if n == "buildah" {
			return bin, nil
		}
		return "", exec.ErrNotFound
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	got, err := b.Build(context.Background(), DockerfileBuild{Name: "web", Context: ctxDir, Dir: filepath.Join(work, "out")})
	if err != nil {
		t.Fatal(err)
	}
	gd, _ := got.Digest()
	wd, _ := img.Digest()
	if gd != wd {
		t.Fatalf("loaded digest %s, want %s", gd, wd)
	}
	rec, _ := os.ReadFile(args)
	want := "build --file " + ctxDir + "/Dockerfile --tag branchml.local/web:build --timestamp 0 " + ctxDir + "\npush branchml.local/web:build oci:" + filepath.Join(work, "out", "layout") + "\nrmi branchml.local/web:build\n"
	if string(rec) != want {
		t.Fatalf("buildah calls:\n%s\nwant:\n%s", rec, want)
	}
}
