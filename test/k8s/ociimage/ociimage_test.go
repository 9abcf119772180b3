package ociimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/branchml/branchml/agents/backends/registry/registrytest"
)

// entry is one tar entry of a layer.
type entry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	ModTime  time.Time
	Data     string
}

// layerEntries returns the entries of img's only layer, in tar order.
func layerEntries(t *testing.T, img v1.Image) []entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []entry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.UTC(), string(data)})
	}
}

func writeFile(t *testing.T, dir, name, data string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

// testImage is an image of three host files: an executable, a plain file
// owned by 1000:1000, and an executable given mode 0600.
func testImage(t *testing.T, created time.Time) v1.Image {
	t.Helper()
	dir := t.TempDir()
	files := []File{
		{Source: writeFile(t, dir, "app", "#!app\x00\x01", 0o700), Path: "/usr/bin/app"},
		{Source: writeFile(t, dir, "conf", "key = 1\n", 0o640), Path: "/etc/app/app.conf", UID: 1000, GID: 1000},
		{Source: writeFile(t, dir, "secret", "s", 0o755), Path: "/etc/app/secret", Mode: 0o600},
	}
	img, err := FromFiles(files, Config{
		Entrypoint: []string{"/usr/bin/app", "--serve"}, Cmd: []string{"--port=8501"},
		Env: []string{DefaultPath, "A=1"}, User: "1000:1000", WorkingDir: "/etc/app", Created: created,
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestFromFilesLayerContents(t *testing.T) {
	img := testImage(t, time.Time{})
	epoch := time.Unix(0, 0).UTC()
	want := []entry{
		{"etc/", tar.TypeDir, 0o755, 0, 0, epoch, ""},
		{"etc/app/", tar.TypeDir, 0o755, 0, 0, epoch, ""},
		{"etc/app/app.conf", tar.TypeReg, 0o644, 1000, 1000, epoch, "key = 1\n"},
		{"etc/app/secret", tar.TypeReg, 0o600, 0, 0, epoch, "s"},
		{"usr/", tar.TypeDir, 0o755, 0, 0, epoch, ""},
		{"usr/bin/", tar.TypeDir, 0o755, 0, 0, epoch, ""},
		{"usr/bin/app", tar.TypeReg, 0o755, 0, 0, epoch, "#!app\x00\x01"},
	}
	if got := layerEntries(t, img); !reflect.DeepEqual(got, want) {
		t.Fatalf("layer entries\n got %+v\nwant %+v", got, want)
	}
}

func TestFromFilesConfig(t *testing.T) {
	created := time.Date(2024, 5, 6, 7, 8, 9, 500, time.FixedZone("x", 3600))
	img := testImage(t, created)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantCreated := time.Date(2024, 5, 6, 6, 8, 9, 0, time.UTC)
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !cf.Created.Time.Equal(wantCreated) {
		t.Fatalf("os/arch/created %s/%s/%v, want linux/%s/%v", cf.OS, cf.Architecture, cf.Created.Time, runtime.GOARCH, wantCreated)
	}
	c := cf.Config
	if !reflect.DeepEqual(c.Entrypoint, []string{"/usr/bin/app", "--serve"}) || !reflect.DeepEqual(c.Cmd, []string{"--port=8501"}) ||
		!reflect.DeepEqual(c.Env, []string{DefaultPath, "A=1"}) || c.User != "1000:1000" || c.WorkingDir != "/etc/app" {
		t.Fatalf("config %+v", c)
	}
	for _, e := range layerEntries(t, img) {
		if !e.ModTime.Equal(wantCreated) {
			t.Fatalf("%s mtime %v, want %v", e.Name, e.ModTime, wantCreated)
		}
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if mt != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Fatalf("media types: manifest %s config %s layers %+v", mt, m.Config.MediaType, m.Layers)
	}
	layers, _ := img.Layers()
	diffID, _ := layers[0].DiffID()
	if len(cf.RootFS.DiffIDs) != 1 || cf.RootFS.DiffIDs[0] != diffID || cf.RootFS.Type != "layers" {
		t.Fatalf("rootfs %+v, want the layer's diff ID %s", cf.RootFS, diffID)
	}
	// Defaults: WorkingDir "/", no Cmd.
	dir := t.TempDir()
	img, err = FromFiles([]File{{Source: writeFile(t, dir, "a", "a", 0o644), Path: "/a"}}, Config{Entrypoint: []string{"/a"}})
	if err != nil {
		t.Fatal(err)
	}
	cf, _ = img.ConfigFile()
	if cf.Config.WorkingDir != "/" || cf.Config.Cmd != nil || cf.Config.User != "" || !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Fatalf("defaults: %+v created %v", cf.Config, cf.Created)
	}
}

func TestFromFilesDeterministic(t *testing.T) {
	a, b := testImage(t, time.Time{}), testImage(t, time.Time{})
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("same input, digests %s and %s", da, db)
	}
	layers, _ := a.Layers()
	diffID, _ := layers[0].DiffID()
	// The uncompressed tar's hash (archive/tar's bytes, not gzip's): fixed
	// mtimes, numeric owners, sorted entries.
	const wantDiffID = "sha256:06836c419452b805ed1ec84d17f75efe187909b0043b35867544238067a6d8f0"
	t.Logf("manifest digest %s, layer diff ID %s", da, diffID)
	if diffID.String() != wantDiffID {
		t.Fatalf("layer diff ID %s, want %s", diffID, wantDiffID)
	}
	c := testImage(t, time.Unix(1, 0))
	dc, _ := c.Digest()
	if dc == da {
		t.Fatalf("another Created gave the same digest %s", dc)
	}
}

func TestFromFilesRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "f", "x", 0o644)
	for _, tc := range []struct {
		files []File
		want  string
	}{
		{[]File{{Source: f, Path: "usr/bin/f"}}, `image file "usr/bin/f" (from ` + f + `): the path must be absolute and clean`},
		{[]File{{Source: f, Path: "/usr/../f"}}, `image file "/usr/../f"`},
		{[]File{{Source: f, Path: "/"}}, `image file "/"`},
		{[]File{{Source: f, Path: "/f"}, {Source: f, Path: "/f"}}, "image file /f is given twice"},
		{[]File{{Source: f, Path: "/a"}, {Source: f, Path: "/a/b"}}, "image files: layer path /a is both a file and the parent directory of another file"},
		{[]File{{Source: filepath.Join(dir, "missing"), Path: "/m"}}, "image file /m: stat " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{[]File{{Source: dir, Path: "/d"}}, "image file /d: source " + dir + " is not a regular file"},
	} {
		_, err := FromFiles(tc.files, Config{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FromFiles(%+v): error %v, want it to contain %q", tc.files, err, tc.want)
		}
	}
}

func TestPushRefusesOtherRegistries(t *testing.T) {
	img := testImage(t, time.Time{})
	for _, ref := range []string{
		"app:1", // Docker Hub
		"registry.example.com:5000/app:1",
		"10.0.0.1:5000/app:1",
		"127.0.0.2:5000/app:1",
		"127.0.0.1/app:1", // no port
		"localhost/app:1",
		"127.0.0.1:0/app:1",
		"127.0.0.1:70000/app:1",
	} {
		_, err := Push(t.Context(), img, ref)
		if err == nil || !strings.Contains(err.Error(), "only a registry on this machine is allowed, as 127.0.0.1:PORT or localhost:PORT") {
			t.Errorf("Push %s: error %v, want a refusal", ref, err)
		}
	}
	if _, err := PushPause(t.Context(), "registry.example.com:5000", "/nonexistent"); err == nil || !strings.Contains(err.Error(), "only a registry on this machine") {
		t.Errorf("PushPause: error %v, want a refusal before any build", err)
	}
	if _, err := PushServe(t.Context(), "10.1.2.3:5000", "/nonexistent"); err == nil || !strings.Contains(err.Error(), "only a registry on this machine") {
		t.Errorf("PushServe: error %v, want a refusal before any build", err)
	}
}

// pull reads ref back from the registry.
func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func TestPushToDistributionRegistry(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img := testImage(t, time.Time{})
	want, _ := img.Digest()
	for _, host := range []string{reg.Host, strings.Replace(reg.Host, "127.0.0.1", "localhost", 1)} {
		ref := host + "/test/app:v1"
		got, err := Push(t.Context(), img, ref)
		if err != nil {
			t.Fatal(err)
		}
		if got != want.String() {
			t.Fatalf("Push returned %s, want %s", got, want)
		}
		back := pull(t, ref)
		d, _ := back.Digest()
		if d != want {
			t.Fatalf("pulled digest %s, pushed %s", d, want)
		}
		wcf, _ := img.ConfigFile()
		gcf, err := back.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gcf, wcf) {
			t.Fatalf("pulled config %+v\nwant %+v", gcf, wcf)
		}
		if !reflect.DeepEqual(layerEntries(t, back), layerEntries(t, img)) {
			t.Fatal("pulled layer differs from the pushed one")
		}
	}
	t.Logf("pushed %s to %s", want, reg.Host)
}

func TestBuildStaticReturnsStderr(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "go.mod", "module example.com/broken\n\ngo 1.22\n", 0o644)
	writeFile(t, dir, "main.go", "package main\n\nfunc main() {\n", 0o644)
	err := BuildStatic(t.Context(), dir, ".", filepath.Join(dir, "out"))
	if err == nil || !strings.Contains(err.Error(), "go build . in "+dir+": exit status 1") || !strings.Contains(err.Error(), "main.go:4:1: syntax error") {
		t.Fatalf("error %v, want the go command's exit status and its stderr naming main.go:4", err)
	}
}

// repoRoot is the branchml repository (three levels up from this package).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// binaryOf returns the content of the regular file at path (no leading
// "/") in img's layer, checked to be mode 0755 and owned by 0:0, and
// checks that it is a static ELF executable for this architecture: no
// PT_INTERP program header, so no dynamic loader is needed in the image.
func binaryOf(t *testing.T, img v1.Image, path string) []byte {
	t.Helper()
	var bin *entry
	var names []string
	for _, e := range layerEntries(t, img) {
		names = append(names, e.Name)
		if e.Name == path {
			bin = &e
		}
	}
	if bin == nil {
		t.Fatalf("no %s in the layer: %q", path, names)
	}
	if bin.Type != tar.TypeReg || bin.Mode != 0o755 || bin.UID != 0 || bin.GID != 0 {
		t.Fatalf("%s: type %c mode %o owner %d:%d, want a regular file 0755 0:0", path, bin.Type, bin.Mode, bin.UID, bin.GID)
	}
	f, err := elf.NewFile(strings.NewReader(bin.Data))
	if err != nil {
		t.Fatalf("%s is not ELF: %v", path, err)
	}
	defer f.Close()
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	if f.Type != elf.ET_EXEC || (wantMachine != 0 && f.Machine != wantMachine) {
		t.Fatalf("%s: ELF type %v machine %v, want ET_EXEC %v", path, f.Type, f.Machine, wantMachine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s has a PT_INTERP program header: dynamically linked", path)
		}
	}
	return []byte(bin.Data)
}

// run writes bin to a temporary file and runs it with args.
func run(t *testing.T, bin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	cmd := exec.CommandContext(t.Context(), p, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestPushPause(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	start := time.Now()
	ref, err := PushPause(t.Context(), reg.Host, repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PushPause took %v", time.Since(start).Round(time.Millisecond))
	if want := reg.Host + "/pause:3.10"; ref != want {
		t.Fatalf("ref %s, want %s", ref, want)
	}
	img := pull(t, ref)
	d, _ := img.Digest()
	t.Logf("%s@%s", ref, d)
	cf, _ := img.ConfigFile()
	if !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/pause"}) || cf.Config.Cmd != nil || cf.Config.User != "65535:65535" ||
		!reflect.DeepEqual(cf.Config.Env, []string{DefaultPath}) || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Fatalf("config %s/%s %+v", cf.OS, cf.Architecture, cf.Config)
	}
	bin := binaryOf(t, img, "pause")
	if out, _, code := run(t, bin, "-v"); code != 0 || !strings.HasPrefix(out, "branchml-pause ") {
		t.Fatalf("pulled pause -v: exit %d, stdout %q", code, out)
	}
}

func TestPushServe(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	start := time.Now()
	ref, err := PushServe(t.Context(), reg.Host, repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PushServe (go build + push) took %v", time.Since(start).Round(time.Millisecond))
	img := pull(t, ref)
	d, _ := img.Digest()
	t.Logf("%s@%s", ref, d)
	if want := reg.Host + "/djia30-serve:sha256-" + d.Hex[:12]; ref != want {
		t.Fatalf("ref %s, want %s (tag from the digest)", ref, want)
	}
	cf, _ := img.ConfigFile()
	if !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/usr/bin/tensorflow_model_server"}) || cf.Config.Cmd != nil ||
		cf.Config.User != "" || cf.Config.WorkingDir != "/" || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Fatalf("config %s/%s %+v", cf.OS, cf.Architecture, cf.Config)
	}
	bin := binaryOf(t, img, "usr/bin/tensorflow_model_server")
	// Its flags: the kubelet probes the pod IP, so the REST API must bind
	// all addresses by default; the Deployment's flags must be known.
	_, stderr, code := run(t, bin, "-help")
	if code != 2 {
		t.Fatalf("-help: exit %d, want 2 (usage)", code)
	}
	for _, want := range []string{"-rest_api_host string\n    \tREST API bind address (default \"0.0.0.0\")",
		"-port int", "-rest_api_port int", "-model_config_file string", "-model_config_file_poll_wait_seconds int",
		"-monitoring_config_file string", "-allow_version_labels_for_unavailable_models"} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("-help output lacks %q:\n%s", want, stderr)
		}
	}
}
