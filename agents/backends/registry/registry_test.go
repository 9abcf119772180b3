package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/branchml/branchml/agents/config"
)

// testImage is a one-layer image holding files (path → content).
func testImage(t *testing.T, files map[string]string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range sortedKeys(files) {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o755, Size: int64(len(files[p])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[p]))
	}
	tw.Close()
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (ioReadCloser, error) { return ioNopCloser(raw), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func anonymous() Option { return WithKeychain(authn.NewMultiKeychain(), "none") }

func fast() Option { return WithRetry(3, time.Millisecond) }

func TestPersistsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Start(dir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if got := RecordedAddr(dir); got != s.Addr {
		t.Fatalf("addr file = %q, want %q", got, s.Addr)
	}
	reg, err := NewLocal(s.Addr, dir, anonymous())
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(t, map[string]string{"hello.txt": "hello"})
	pushed, err := reg.Push(ctx, "djia30/train", "v1", img)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if pushed.Digest != want.String() || pushed.Ref != s.Addr+"/djia30/train@"+want.String() {
		t.Fatalf("pushed = %+v, want digest %s at %s", pushed, want, s.Addr)
	}
	addr := s.Addr
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart on the same dir and the same port: everything is still there.
	s2, err := Start(dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, ref := range []string{pushed.Ref, addr + "/djia30/train:v1"} {
		got, err := reg.Pull(ctx, ref)
		if err != nil {
			t.Fatalf("pull %s after restart: %v", ref, err)
		}
		if d, _ := got.Digest(); d != want {
			t.Fatalf("pull %s: digest %s, want %s", ref, d, want)
		}
	}
	ok, err := reg.Has(ctx, "djia30/train", want.String())
	if err != nil || !ok {
		t.Fatalf("Has after restart = %v, %v; want true", ok, err)
	}
	ok, err = reg.Has(ctx, "djia30/train", "sha256:"+strings.Repeat("0", 64))
	if err != nil || ok {
		t.Fatalf("Has(unknown digest) = %v, %v; want false, nil", ok, err)
	}
	repos, err := remote.Catalog(ctx, mustRegistry(t, addr))
	if err != nil || strings.Join(repos, ",") != "djia30/train" {
		t.Fatalf("catalog = %v, %v", repos, err)
	}
	tags, err := remote.List(mustRepo(t, addr+"/djia30/train"))
	if err != nil || strings.Join(tags, ",") != "v1" {
		t.Fatalf("tags = %v, %v", tags, err)
	}
	// The stored layout is the documented one.
	for _, p := range []string{"id", "manifests/djia30/train/v1.json", "manifests/djia30/train/" + want.String() + ".json", "blobs/sha256/" + want.Hex} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	rec, _ := os.ReadFile(filepath.Join(dir, "manifests/djia30/train/v1.json"))
	wantRec := "{\n  \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",\n  \"digest\": \"" + want.String() + "\"\n}\n"
	if string(rec) != wantRec {
		t.Errorf("ref record = %q, want %q", rec, wantRec)
	}
}

func TestIndexReplayedAfterItsImages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Start(dir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(t, map[string]string{"a": "1"})
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: img})
	ref := mustTag(t, s.Addr+"/multi/arch:latest")
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Start(dir, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("restart with an index stored: %v", err)
	}
	defer s2.Close()
	got, err := remote.Index(mustTag(t, s2.Addr+"/multi/arch:latest"))
	if err != nil {
		t.Fatal(err)
	}
	gd, _ := got.Digest()
	wd, _ := idx.Digest()
	if gd != wd {
		t.Fatalf("index digest after restart %s, want %s", gd, wd)
	}
}

func TestEnsureLocalReusesAndKeepsPort(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	addr, stop, err := EnsureLocal(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("addr = %q, want a loopback address", addr)
	}
	// A second caller (another process in real life) reuses the running one.
	addr2, stop2, err := EnsureLocal(ctx, state)
	if err != nil || addr2 != addr {
		t.Fatalf("second EnsureLocal = %q, %v; want %q", addr2, err, addr)
	}
	stop2() // must not stop the first one
	if !Probe(ctx, LocalDir(state), addr, time.Second) {
		t.Fatal("the reusing caller's stop shut down the registry")
	}
	stop()
	if Probe(ctx, LocalDir(state), addr, 200*time.Millisecond) {
		t.Fatal("registry still answers after stop")
	}
	// Restarted later: same port.
	addr3, stop3, err := EnsureLocal(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	defer stop3()
	if addr3 != addr {
		t.Fatalf("restart picked %q, want the recorded %q", addr3, addr)
	}
}

func TestEnsureLocalIgnoresForeignServer(t *testing.T) {
	// Something else (not this registry) answers at the recorded address.
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer foreign.Close()
	state := t.TempDir()
	dir := LocalDir(state)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, AddrFile), []byte(foreign.Listener.Addr().String()+"\n"), 0o644)
	addr, stop, err := EnsureLocal(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if addr == foreign.Listener.Addr().String() {
		t.Fatal("reused a server that is not this registry")
	}
	if RecordedAddr(dir) != addr {
		t.Fatalf("addr file = %q, want %q", RecordedAddr(dir), addr)
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	_, err := Start(t.TempDir(), "0.0.0.0:0")
	if err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Fatalf("err = %v, want a not-loopback error", err)
	}
}

// faulty answers the first n requests (after the /v2/ ping) with status,
// then passes to h.
func faulty(h http.Handler, status int, n int32) (http.Handler, *atomic.Int32) {
	var count atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" && count.Add(1) <= n {
			writeRegError(w, status, "UNKNOWN", "injected")
			return
		}
		h.ServeHTTP(w, r)
	}), &count
}

func newHandler(t *testing.T) http.Handler {
	h, err := NewHandler(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPush401FailsAtOnce(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeRegError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	host := srv.Listener.Addr().String()
	env := map[string]string{"REGISTRY_USERNAME": "robot", "REGISTRY_PASSWORD": "s3cret-pass"}
	reg, err := NewRemote(host, fast(), WithInsecure(true), WithGetenv(func(k string) string { return env[k] }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.Push(context.Background(), "djia30/train", "", testImage(t, map[string]string{"a": "b"}))
	var re *Error
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if re.Status != 401 || re.Attempts != 1 || !re.Unauthorized() || re.Temporary() {
		t.Fatalf("error = %+v, want 401 after 1 attempt, not temporary", re)
	}
	for _, want := range []string{"registry " + host + " answered 401 Unauthorized", "credentials: REGISTRY_USERNAME/REGISTRY_PASSWORD"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestPush5xxRetriedThenSucceeds(t *testing.T) {
	h, count := faulty(newHandler(t), http.StatusServiceUnavailable, 2)
	srv := httptest.NewServer(h)
	defer srv.Close()
	reg, _ := NewRemote(srv.Listener.Addr().String(), fast(), anonymous(), WithInsecure(true))
	img := testImage(t, map[string]string{"a": "b"})
	pushed, err := reg.Push(context.Background(), "x/y", "", img)
	if err != nil {
		t.Fatalf("push with 2 injected 503s: %v", err)
	}
	if d, _ := img.Digest(); pushed.Digest != d.String() {
		t.Fatalf("digest %s, want %s", pushed.Digest, d)
	}
	if count.Load() < 3 {
		t.Fatalf("requests = %d, want the 2 failures and more", count.Load())
	}
}

func TestPush5xxGivesUpAfterAttempts(t *testing.T) {
	h, _ := faulty(newHandler(t), http.StatusBadGateway, 1<<30)
	srv := httptest.NewServer(h)
	defer srv.Close()
	reg, _ := NewRemote(srv.Listener.Addr().String(), fast(), anonymous(), WithInsecure(true))
	_, err := reg.Push(context.Background(), "x/y", "", testImage(t, map[string]string{"a": "b"}))
	var re *Error
	if !errors.As(err, &re) || re.Status != 502 || re.Attempts != 3 || !re.Temporary() {
		t.Fatalf("err = %v (%+v), want 502 after 3 attempts", err, re)
	}
	if !strings.Contains(err.Error(), "(after 3 attempts)") {
		t.Errorf("error %q does not say how many attempts", err)
	}
}

func TestPushTimeoutRetried(t *testing.T) {
	inner := newHandler(t)
	var slow atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && slow.Add(1) == 1 {
			io.Copy(io.Discard, r.Body) // so that the server notices the client going away
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		inner.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	reg, _ := NewRemote(srv.Listener.Addr().String(), fast(), anonymous(), WithInsecure(true), WithAttemptTimeout(300*time.Millisecond))
	if _, err := reg.Push(context.Background(), "x/y", "t", testImage(t, map[string]string{"a": "b"})); err != nil {
		t.Fatalf("push after one timed-out attempt: %v", err)
	}
	if slow.Load() != 2 {
		t.Fatalf("manifest PUTs = %d, want 2 (one timed out, one retried)", slow.Load())
	}
}

func TestOpenUnknownType(t *testing.T) {
	_, _, err := Open(context.Background(), config.RegistryBackend{Type: "quay"}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `backends.registry.type "quay" is unknown`) {
		t.Fatalf("err = %v", err)
	}
}

func TestDefaultKeychainSources(t *testing.T) {
	env := map[string]string{"REGISTRY_USERNAME": "robot"}
	_, _, err := DefaultKeychain(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "only one of REGISTRY_USERNAME and REGISTRY_PASSWORD") {
		t.Fatalf("err = %v", err)
	}
	env = map[string]string{"DOCKER_CONFIG": "/etc/docker-cfg"}
	_, src, err := DefaultKeychain(func(k string) string { return env[k] })
	if err != nil || src != "Docker config in DOCKER_CONFIG=/etc/docker-cfg" {
		t.Fatalf("source = %q, %v", src, err)
	}
}

func TestRewrite(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	cases := []struct{ ref, host, want string }{
		{"127.0.0.1:5000/djia30/train@" + d, "127.0.0.1:6000", "127.0.0.1:6000/djia30/train@" + d},
		{"djia30/train@" + d, "localhost:7000", "localhost:7000/djia30/train@" + d},
		{"ghcr.io/acme/serve:v1", "127.0.0.1:1", "127.0.0.1:1/acme/serve:v1"},
	}
	for _, c := range cases {
		got, err := Rewrite(c.ref, c.host)
		if err != nil || got != c.want {
			t.Errorf("Rewrite(%q, %q) = %q, %v; want %q", c.ref, c.host, got, err, c.want)
		}
	}
	if _, err := Rewrite("Not A Ref", "h:1"); err == nil {
		t.Error("Rewrite accepted an invalid reference")
	}
}

func TestManifestPath(t *testing.T) {
	d := "sha256:" + strings.Repeat("0", 64)
	cases := []struct {
		path, repo, ref string
		ok              bool
	}{
		{"/v2/djia30/train/manifests/v1", "djia30/train", "v1", true},
		{"/v2/a/manifests/" + d, "a", d, true},
		{"/v2/../../etc/manifests/x", "", "", false},
		{"/v2/a/manifests/sha256:zz", "", "", false},
		{"/v2/a/blobs/" + d, "", "", false},
		{"/v2/a/manifests/..", "", "", false},
	}
	for _, c := range cases {
		repo, ref, ok := manifestPath(c.path)
		if repo != c.repo || ref != c.ref || ok != c.ok {
			t.Errorf("manifestPath(%q) = %q, %q, %v; want %q, %q, %v", c.path, repo, ref, ok, c.repo, c.ref, c.ok)
		}
	}
}

func TestTraversalRejected(t *testing.T) {
	dir := t.TempDir()
	h, _ := NewHandler(dir)
	req := httptest.NewRequest(http.MethodPut, "/v2/a/manifests/..%2f..%2fescape", strings.NewReader("{}"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", rec.Code)
	}
}

func TestUnpack(t *testing.T) {
	img := testImage(t, map[string]string{"ko-app/hello": "#!/bin/sh\necho hi\n", "etc/x": "y"})
	dir := t.TempDir()
	if err := Unpack(img, dir); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "ko-app/hello"))
	if err != nil || string(got) != "#!/bin/sh\necho hi\n" {
		t.Fatalf("unpacked = %q, %v", got, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "ko-app/hello")); fi.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v, want 0755", fi.Mode().Perm())
	}
	for _, bad := range []tar.Header{
		{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../etc"},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&bad)
		tw.Close()
		if err := UnpackTar(&buf, t.TempDir()); err == nil || !strings.Contains(err.Error(), "leaves the image root") {
			t.Errorf("%s: err = %v, want leaves the image root", bad.Name, err)
		}
	}
	// An absolute link is made relative to the root.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "lib", Typeflag: tar.TypeSymlink, Linkname: "/usr/lib"})
	tw.Close()
	root := t.TempDir()
	if err := UnpackTar(&buf, root); err != nil {
		t.Fatal(err)
	}
	if l, _ := os.Readlink(filepath.Join(root, "lib")); l != "usr/lib" {
		t.Fatalf("link = %q, want usr/lib", l)
	}
}

func FuzzManifestPath(f *testing.F) {
	f.Add("/v2/djia30/train/manifests/v1")
	f.Add("/v2/a/manifests/sha256:" + strings.Repeat("0", 64))
	f.Add("/v2/../x/manifests/..")
	f.Fuzz(func(t *testing.T, p string) {
		repo, ref, ok := manifestPath(p)
		if !ok {
			return
		}
		root := "/data/manifests"
		file := filepath.Join(root, filepath.FromSlash(repo), ref+refExtension)
		if !strings.HasPrefix(file, root+"/") {
			t.Fatalf("manifestPath(%q) = %q, %q: file %s leaves %s", p, repo, ref, file, root)
		}
	})
}

func FuzzRewrite(f *testing.F) {
	f.Add("127.0.0.1:5000/djia30/train@sha256:" + strings.Repeat("ab", 32))
	f.Add("ghcr.io/acme/serve:v1")
	f.Fuzz(func(t *testing.T, ref string) {
		out, err := Rewrite(ref, "127.0.0.1:9")
		if err != nil {
			return
		}
		r, err := name.ParseReference(out)
		if err != nil || r.Context().RegistryStr() != "127.0.0.1:9" {
			t.Fatalf("Rewrite(%q) = %q: %v", ref, out, err)
		}
	})
}

func FuzzUnpackTar(f *testing.F) {
	for _, hs := range [][]tar.Header{
		{{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o644}},
		{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, {Name: "l/x", Typeflag: tar.TypeReg}},
		{{Name: "../x", Typeflag: tar.TypeReg}},
		{{Name: "y", Typeflag: tar.TypeSymlink, Linkname: "."}, {Name: "l", Typeflag: tar.TypeSymlink, Linkname: "y/../evil"}, {Name: "l", Typeflag: tar.TypeReg}, {Name: "y/l2", Typeflag: tar.TypeSymlink, Linkname: "../evil2"}, {Name: "y/l2/f", Typeflag: tar.TypeReg}},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hs {
			tw.WriteHeader(&h)
		}
		tw.Close()
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		_ = UnpackTar(bytes.NewReader(data), root)
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if e.Name() != "root" {
				t.Fatalf("unpack wrote %s outside the root", e.Name())
			}
		}
	})
}

// TestCloseWithAnUnusedConnection: a client connection that never sent a
// request (an HTTP client's spare dial) does not hold up Close, which
// http.Server.Shutdown alone would wait 5 s for and then fail.
func TestCloseWithAnUnusedConnection(t *testing.T) {
	s, err := Start(t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Served: the server has accepted it (a request on another connection is answered after).
	resp, err := http.Get("http://" + s.Addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The unused connection is closed by the server.
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from the unused connection after Close: %d, %v", n, err)
	}
}
