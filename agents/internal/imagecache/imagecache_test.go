package imagecache

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func pushImage(t *testing.T, host string, ents ...entry) string {
	t.Helper()
	data := layer(t, ents...).Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Env: []string{"A=1"}, Entrypoint: []string{"/ko-app/x"}})
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/test/x:latest")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return host + "/test/x@" + d.String()
}

type countingSource struct {
	mu    sync.Mutex
	pulls int
}

func (c *countingSource) Image(ctx context.Context, ref name.Reference) (v1.Image, error) {
	c.mu.Lock()
	c.pulls++
	c.mu.Unlock()
	return RemoteSource{}.Image(ctx, ref)
}

func TestEnsurePullsOnceAndUnpacks(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := pushImage(t, host, entry{name: "ko-app/x", typ: tar.TypeReg, body: "bin", mode: 0o755})
	src := &countingSource{}
	c, err := New(t.TempDir(), WithSource(src))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	imgs := make([]*Image, 4)
	errs := make([]error, 4)
	for i := range imgs {
		wg.Add(1)
		go func() { defer wg.Done(); imgs[i], errs[i] = c.Ensure(context.Background(), ref) }()
	}
	wg.Wait()
	for i := range imgs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	if src.pulls != 1 {
		t.Errorf("pulls = %d, want 1", src.pulls)
	}
	img := imgs[0]
	want := filepath.Join(c.Root(), "sha256", strings.TrimPrefix(img.Digest, "sha256:"), "rootfs")
	if img.RootFS != want || "sha256:"+strings.Split(ref, "@sha256:")[1] != img.Digest {
		t.Errorf("image = %+v, want rootfs %s", img, want)
	}
	if got := read(t, filepath.Join(img.RootFS, "ko-app/x")); got != "bin" {
		t.Errorf("ko-app/x = %q", got)
	}
	if strings.Join(img.Config.Env, ",") != "A=1" || strings.Join(img.Config.Entrypoint, ",") != "/ko-app/x" {
		t.Errorf("config = %+v", img.Config)
	}
	tmp, _ := os.ReadDir(filepath.Join(c.Root(), "tmp"))
	if len(tmp) != 0 {
		t.Errorf("tmp left behind: %v", tmp)
	}
}

func TestEnsureRefusesUnsafeLayerAtomically(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := pushImage(t, host,
		entry{name: "ok", typ: tar.TypeReg, body: "x"},
		entry{name: "dev/null", typ: tar.TypeChar})
	c, _ := New(t.TempDir())
	_, err := c.Ensure(context.Background(), ref)
	var ue *UnsafeEntryError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), ref) {
		t.Fatalf("Ensure = %v, want an UnsafeEntryError naming %s", err, ref)
	}
	ents, _ := os.ReadDir(filepath.Join(c.Root(), "sha256"))
	tmp, _ := os.ReadDir(filepath.Join(c.Root(), "tmp"))
	if len(ents)+len(tmp) != 0 {
		t.Errorf("half-unpacked image left: %v %v", ents, tmp)
	}
}

func TestEnsureNeedsDigest(t *testing.T) {
	c, _ := New(t.TempDir())
	_, err := c.Ensure(context.Background(), "127.0.0.1:5000/djia30/train:latest")
	if !errors.Is(err, ErrNotByDigest) {
		t.Fatalf("Ensure = %v, want ErrNotByDigest", err)
	}
}
