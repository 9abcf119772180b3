package imagecache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Image is an unpacked image in the cache.
type Image struct {
	// Ref is the reference the image was asked for ("host/repo@sha256:<hex>").
	Ref string
	// Digest is the manifest digest ("sha256:<hex>").
	Digest string
	// RootFS is the directory holding the image's files.
	RootFS string
	// Config is the image's runtime config (Env, Entrypoint, Cmd, WorkingDir).
	Config v1.Config
}

// Source fetches an image by reference.
type Source interface {
	Image(ctx context.Context, ref name.Reference) (v1.Image, error)
}

// RemoteSource pulls images from their registry with go-containerregistry's
// remote package; loopback registries are spoken to over plain HTTP.
type RemoteSource struct {
	// Keychain resolves registry credentials; nil means authn.DefaultKeychain
	// (Docker config in DOCKER_CONFIG or ~/.docker).
	Keychain authn.Keychain
	// Transport is the HTTP transport; nil means remote.DefaultTransport.
	Transport http.RoundTripper
}

var _ Source = RemoteSource{}

// Image pulls ref's manifest and config (layers are fetched lazily).
func (s RemoteSource) Image(ctx context.Context, ref name.Reference) (v1.Image, error) {
	kc := s.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if s.Transport != nil {
		opts = append(opts, remote.WithTransport(s.Transport))
	}
	return remote.Image(ref, opts...)
}

// Option configures a Cache.
type Option func(*Cache)

// WithSource sets where images come from (default RemoteSource{}).
func WithSource(s Source) Option { return func(c *Cache) { c.source = s } }

// WithResolver rewrites a reference before it is pulled, e.g. to point
// "127.0.0.1:5000/repo@sha256:…" at the port the local registry listens on
// now. It must keep the digest.
func WithResolver(f func(ref string) (string, error)) Option {
	return func(c *Cache) { c.resolve = f }
}

// Cache is a content-addressed cache of unpacked images; safe for concurrent use.
type Cache struct {
	root    string
	source  Source
	resolve func(string) (string, error)

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// New returns the cache rooted at dir (created when absent).
func New(dir string, opts ...Option) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("imagecache: empty cache directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := &Cache{root: abs, source: RemoteSource{}, locks: map[string]*sync.Mutex{}}
	for _, o := range opts {
		o(c)
	}
	if err := os.MkdirAll(filepath.Join(abs, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("imagecache: %w", err)
	}
	return c, nil
}

// Root is the cache directory.
func (c *Cache) Root() string { return c.root }

// ErrNotByDigest is returned for a reference without a digest: the runner
// only runs pinned images.
var ErrNotByDigest = errors.New("image reference is not pinned by digest")

func (c *Cache) lock(key string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.locks[key]
	if !ok {
		m = &sync.Mutex{}
		c.locks[key] = m
	}
	return m
}

// Ensure returns the unpacked image of ref ("host/repo@sha256:<hex>"),
// pulling and unpacking it unless it is cached. Errors name the reference;
// a reference without a digest gives ErrNotByDigest.
func (c *Cache) Ensure(ctx context.Context, ref string) (*Image, error) {
	orig := ref
	if c.resolve != nil {
		r, err := c.resolve(ref)
		if err != nil {
			return nil, fmt.Errorf("resolve image %s: %w", orig, err)
		}
		ref = r
	}
	dg, err := name.NewDigest(ref)
	if err != nil {
		if _, terr := name.ParseReference(ref); terr == nil {
			return nil, fmt.Errorf("image %s: %w (pin it as repo@sha256:<hex>; the kf-pipeline stage does)", orig, ErrNotByDigest)
		}
		return nil, fmt.Errorf("image %s: %w", orig, err)
	}
	hex := strings.TrimPrefix(dg.DigestStr(), "sha256:")
	if hex == dg.DigestStr() {
		return nil, fmt.Errorf("image %s: only sha256 digests are supported", orig)
	}
	dir := filepath.Join(c.root, "sha256", hex)
	l := c.lock(hex)
	l.Lock()
	defer l.Unlock()
	if img, err := c.load(orig, dir); err == nil {
		return img, nil
	}
	img, err := c.source.Image(ctx, dg)
	if err != nil {
		return nil, fmt.Errorf("pull image %s: %w", orig, err)
	}
	got, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("pull image %s: %w", orig, err)
	}
	if got.String() != dg.DigestStr() {
		return nil, fmt.Errorf("pull image %s: registry returned digest %s", orig, got)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", orig, err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(c.root, "tmp"), hex[:12]+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Mkdir(filepath.Join(tmp, "rootfs"), 0o755); err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image %s: layers: %w", orig, err)
	}
	for i, layer := range layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rc, err := layer.Uncompressed()
		if err != nil {
			return nil, fmt.Errorf("image %s: layer %d: %w", orig, i, err)
		}
		err = Unpack(filepath.Join(tmp, "rootfs"), rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("image %s: layer %d: %w", orig, i, err)
		}
	}
	cfgJSON, err := json.Marshal(cf)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), cfgJSON, 0o644); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another process may have won the race; use its entry.
		if img, lerr := c.load(orig, dir); lerr == nil {
			return img, nil
		}
		return nil, fmt.Errorf("image %s: install into cache: %w", orig, err)
	}
	return c.load(orig, dir)
}

func (c *Cache) load(ref, dir string) (*Image, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(raw, &cf); err != nil {
		return nil, fmt.Errorf("cached image config %s: %w", dir, err)
	}
	return &Image{Ref: ref, Digest: "sha256:" + filepath.Base(dir), RootFS: filepath.Join(dir, "rootfs"), Config: cf.Config}, nil
}
