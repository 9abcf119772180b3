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
	sd := statedir.Dir(cfg)
	var (
		once sync.Once
		addr string
		stop = func() {}
		rerr error
		mu   sync.Mutex
	)
	resolve := func(ref string) (string, error) {
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
				stop = s
			}
			mu.Unlock()
			if rerr == nil {
				log.Infof("pulling task images from the embedded registry at %s", addr)
			}
		})
		if rerr != nil {
			return "", fmt.Errorf("embedded registry: %w", rerr)
		}
		return registry.Rewrite(ref, addr)
	}
	cache, err := imagecache.New(filepath.Join(sd, "images"), imagecache.WithResolver(resolve))
	if err != nil {
		return nil, nil, err
	}
	return cache, func() {
		mu.Lock()
		defer mu.Unlock()
		stop()
	}, nil
}

func loopback(host string) bool {
	h := host
	if i := strings.LastIndex(h, ":"); i >= 0 {
		h = h[:i]
	}
	return h == "localhost" || h == "127.0.0.1" || h == "[::1]" || strings.HasPrefix(h, "127.")
}
