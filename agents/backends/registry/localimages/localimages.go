package localimages

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/imagecache"
	"github.com/branchml/branchml/agents/internal/statedir"
)

// Cache is the image cache of cfg at <stateDir>/images. With
// the embedded registry (backends.registry.type local) image references on a
// loopback host are rewritten to the registry's current address, which is
// looked up (and the registry started, when nothing serves it) at the first
// pull; stop shuts a registry started that way.
func Cache(ctx context.Context, cfg *config.Config, log logrus.FieldLogger) (*imagecache.Cache, func(), error) {
	resolve, stop := Resolver(ctx, cfg, log, "pulling task images from the embedded registry at %s")
	cache, err := imagecache.New(filepath.Join(statedir.Dir(cfg), "images"), imagecache.WithResolver(resolve))
	if err != nil {
		stop()
		return nil, nil, err
	}
	return cache, stop, nil
}

// Resolver returns resolve, which maps an image reference recorded in a
// lock to the one to pull now, and stop. With the embedded registry
// (backends.registry.type local or "") a reference on a loopback host
// ("127.0.0.1:PORT/repo@sha256:…") gets the registry's current address:
// the first such call makes the registry reachable (registry.EnsureLocal:
// the one running, else one started in this process, which stop shuts
// down) and logs found (a format with one %s, the address); other
// references, and every reference of another registry type, are returned
// as they are. resolve fails when the registry cannot start or ref is not
// an image reference. Safe for concurrent use.
func Resolver(ctx context.Context, cfg *config.Config, log logrus.FieldLogger, found string) (resolve func(ref string) (string, error), stop func()) {
	sd := statedir.Dir(cfg)
	var (
		once   sync.Once
		addr   string
		stopFn = func() {}
		rerr   error
		mu     sync.Mutex
	)
	resolve = func(ref string) (string, error) {
		if t := cfg.Backends.Registry.Type; t != "" && t != "local" {
			return ref, nil
		}
		host, _, _ := strings.Cut(ref, "/")
		if !loopback(host) {
			return ref, nil
		}
		once.Do(func() {
			preferred := cfg.Backends.Registry.Addr
			if strings.HasSuffix(preferred, ":0") {
				preferred = ""
			}
			var s func()
			addr, s, rerr = registry.EnsureLocal(ctx, sd, preferred)
			mu.Lock()
			if s != nil {
				stopFn = s
			}
			mu.Unlock()
			if rerr == nil && log != nil {
				log.Infof(found, addr)
			}
		})
		if rerr != nil {
			return "", fmt.Errorf("embedded registry: %w", rerr)
		}
		return registry.Rewrite(ref, addr)
	}
	return resolve, func() {
		mu.Lock()
		defer mu.Unlock()
		stopFn()
	}
}

func loopback(host string) bool {
	h := host
	if i := strings.LastIndex(h, ":"); i >= 0 {
		h = h[:i]
	}
	return h == "localhost" || h == "127.0.0.1" || h == "[::1]" || strings.HasPrefix(h, "127.")
}
