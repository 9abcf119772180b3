package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
)

// VariantHeader is the response header naming the variant that answered.
const VariantHeader = "X-Branchml-Variant"

// Upstream is one model server behind the gateway.
type Upstream struct {
	// URL is the server's REST base URL, e.g. "http://127.0.0.1:41234".
	URL string
	// Stats collects the requests the gateway sent it; nil means none kept.
	Stats *Stats
	// Inflight counts requests being proxied to it (for draining).
	Inflight *atomic.Int64
}

// NewUpstream returns an upstream with fresh counters.
func NewUpstream(rawURL string) *Upstream {
	return &Upstream{URL: rawURL, Stats: NewStats(), Inflight: new(atomic.Int64)}
}

// Stats are the inference requests (POST) the gateway proxied to one
// upstream: count, failures (5xx or no answer) and latency, in TF Serving's
// histogram buckets.
type Stats struct {
	mu sync.Mutex
	c  tfserving.Counters
}

// NewStats returns empty stats.
func NewStats() *Stats {
	return &Stats{c: tfserving.Counters{Latency: tfserving.NewHistogram(tfserving.LatencyBounds)}}
}

func (s *Stats) observe(failed bool, d time.Duration) {
	s.mu.Lock()
	s.c.Requests++
	if failed {
		s.c.Errors++
	}
	s.c.Latency.Observe(d)
	s.mu.Unlock()
}

// Counters returns a copy of the cumulative counters.
func (s *Stats) Counters() tfserving.Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c
	c.Latency = c.Latency.Sub(tfserving.Histogram{})
	return c
}

type backendRoute struct {
	variant serving.Variant
	up      *Upstream
	proxy   *httputil.ReverseProxy
	weight  int
	current int
}

type table struct {
	mu     sync.Mutex
	routes []*backendRoute
}

// pick is smooth weighted round-robin (as nginx): over any window of
// sum(weights) picks every route gets exactly its weight.
func (t *table) pick() *backendRoute {
	t.mu.Lock()
	defer t.mu.Unlock()
	var best *backendRoute
	total := 0
	for _, r := range t.routes {
		if r.weight <= 0 {
			continue
		}
		r.current += r.weight
		total += r.weight
		if best == nil || r.current > best.current {
			best = r
		}
	}
	if best != nil {
		best.current -= total
	}
	return best
}

// Gateway is an HTTP reverse proxy for TF Serving's REST paths that splits
// traffic between variants by weight (deterministic smooth weighted
// round-robin), counts requests per upstream and switches weights
// atomically. Its zero value is not usable; call NewGateway.
type Gateway struct {
	// mu is held for reading while a request picks its route and marks it
	// in flight, and for writing while the table is swapped, so that after
	// SetRoutes returns no new request reaches a removed upstream.
	mu    sync.RWMutex
	table *table

	srv *http.Server
	ln  net.Listener
}

// NewGateway returns a gateway with no routes (it answers 503).
func NewGateway() *Gateway { return &Gateway{table: &table{}} }

// Route is one entry of the routing table: weight in percent.
type Route struct {
	Variant  serving.Variant
	Upstream *Upstream
	Weight   int
}

// SetRoutes replaces the routing table atomically: once it returns, new
// requests go only to routes; Drain the upstreams no longer routed to
// before stopping them.
func (g *Gateway) SetRoutes(routes ...Route) {
	t := &table{}
	for _, r := range routes {
		u, err := url.Parse(r.Upstream.URL)
		if err != nil {
			continue
		}
		p := httputil.NewSingleHostReverseProxy(u)
		p.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
			writeErr(w, http.StatusBadGateway, "upstream %s: %v", u.Host, err)
		}
		t.routes = append(t.routes, &backendRoute{variant: r.Variant, up: r.Upstream, proxy: p, weight: r.Weight})
	}
	g.mu.Lock()
	g.table = t
	g.mu.Unlock()
}

// Drain waits until no request is in flight to up, or ctx ends.
func Drain(ctx context.Context, up *Upstream) error {
	for up.Inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain %s: %d requests still in flight: %w", up.URL, up.Inflight.Load(), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func writeErr(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// ServeHTTP proxies /v1/... to a route picked by weight; /healthz answers 200.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		writeErr(w, http.StatusNotFound, "the gateway serves TF Serving's REST API under /v1/")
		return
	}
	g.mu.RLock()
	rt := g.table.pick()
	if rt != nil {
		rt.up.Inflight.Add(1)
	}
	g.mu.RUnlock()
	if rt == nil {
		writeErr(w, http.StatusServiceUnavailable, "no model version is serving")
		return
	}
	defer rt.up.Inflight.Add(-1)
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	w.Header().Set(VariantHeader, string(rt.variant))
	rt.proxy.ServeHTTP(rec, r)
	if r.Method == http.MethodPost && rt.up.Stats != nil {
		rt.up.Stats.observe(rec.code >= 500, time.Since(start))
	}
}

// Listen starts serving on addr ("127.0.0.1:0" picks a port) and returns
// the gateway's base URL.
func (g *Gateway) Listen(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("gateway listen %s: %w", addr, err)
	}
	g.ln = ln
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// Close stops the gateway gracefully (in-flight requests finish, bounded by ctx).
func (g *Gateway) Close(ctx context.Context) error {
	if g.srv == nil {
		return nil
	}
	return g.srv.Shutdown(ctx)
}
