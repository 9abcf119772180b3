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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
)

// VariantHeader is the response header naming the variant that answered.
const VariantHeader = "X-Branchml-Variant"

// Pool sizes of the gateway's connections to its model servers: enough
// idle keep-alive connections per server for the load a local gateway
// takes (1,000 requests/s at a few milliseconds each needs a few dozen),
// so that a burst never opens new connections (TIME_WAIT churn, a
// handshake per request). Go's default keeps 2 per host.
var (
	MaxIdleConnsPerUpstream = 256
	IdleConnTimeout         = 90 * time.Second
)

// transport is shared by every route of every gateway of the process: its
// pool is keyed by upstream address, so a route swap keeps the warm
// connections of the servers that stay.
var transport = &http.Transport{
	Proxy:               nil, // loopback only: never through an HTTP proxy from the environment
	DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConns:        4 * MaxIdleConnsPerUpstream,
	MaxIdleConnsPerHost: MaxIdleConnsPerUpstream,
	IdleConnTimeout:     IdleConnTimeout,
	DisableCompression:  true,
	ForceAttemptHTTP2:   false,
}

// bufferPool lends the proxies their copy buffers (ReverseProxy allocates
// 32 KiB per request without one).
var bufferPool = &bytePool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bytePool struct{ p sync.Pool }

func (b *bytePool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bytePool) Put(x []byte) { b.p.Put(&x) }

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
// upstream: their count by HTTP status (502 when the server gave no
// answer) and their latency, in TF Serving's histogram buckets. Which
// statuses are errors is the rollout's analysis to decide.
type Stats struct {
	mu sync.Mutex
	c  tfserving.Counters
}

// NewStats returns empty stats.
func NewStats() *Stats {
	return &Stats{c: tfserving.Counters{Codes: map[int]uint64{}, Latency: tfserving.NewHistogram(tfserving.LatencyBounds)}}
}

func (s *Stats) observe(code int, d time.Duration) {
	s.mu.Lock()
	s.c.Count(code)
	s.c.Latency.Observe(d)
	s.mu.Unlock()
}

// Counters returns a copy of the cumulative counters.
func (s *Stats) Counters() tfserving.Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.Clone()
}

type backendRoute struct {
	variant serving.Variant
	version int64
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

// pinned returns the route serving exactly the version or label a request
// path names (nil, false when the path pins nothing; nil, true when it pins
// a version no route serves).
func (t *table) pinned(p pin) (*backendRoute, bool) {
	if p.version == 0 && p.label == "" {
		return nil, false
	}
	for _, r := range t.routes {
		if (p.version > 0 && r.version == p.version) || (p.label != "" && string(r.variant) == p.label) {
			return r, true
		}
	}
	if p.label != "" && p.label != string(serving.Stable) && p.label != string(serving.Canary) {
		return nil, false // a label of the model's own: any server may know it
	}
	return nil, true
}

// pin is what a TF Serving REST path selects: /v1/models/{name}/versions/{v}
// or /v1/models/{name}/labels/{l} (then :predict, /metadata …).
type pin struct {
	model   string
	version int64
	label   string
	// rest is the path after the selector (":predict", "/metadata", "").
	rest string
}

func parsePin(path string) pin {
	p, ok := strings.CutPrefix(path, "/v1/models/")
	if !ok {
		return pin{}
	}
	name, sel, _ := strings.Cut(p, "/")
	out := pin{model: name}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		out.model = name[:i]
		return out
	}
	kind, rest, _ := strings.Cut(sel, "/")
	val := rest
	if i := strings.IndexAny(rest, ":/"); i >= 0 {
		val, out.rest = rest[:i], rest[i:]
	}
	switch kind {
	case "versions":
		if v, err := strconv.ParseInt(val, 10, 64); err == nil && v > 0 {
			out.version = v
		}
	case "labels":
		out.label = val
	}
	return out
}

// Gateway is an HTTP reverse proxy for TF Serving's REST paths that splits
// traffic between variants by weight (deterministic smooth weighted
// round-robin), sends requests pinned to a version (/versions/{v}) or to a
// variant's label (/labels/stable, /labels/canary) to the server of that
// version, counts requests per upstream and switches routes atomically.
// Its zero value is not usable; call NewGateway.
type Gateway struct {
	// mu is held for reading while a request picks its route and marks it
	// in flight, and for writing while the table is swapped, so that after
	// SetRoutes returns no new request reaches a removed upstream.
	mu    sync.RWMutex
	table *table
	// control, when set, serves the paths under ControlPrefix.
	control http.Handler
	// transport carries the requests to the servers (default: the shared pool).
	transport http.RoundTripper

	srv *http.Server
	ln  net.Listener
}

// ControlPrefix is the path prefix of the serving plane's control API on
// the gateway's listener (see Plane).
const ControlPrefix = "/_branchml/v1/"

// NewGateway returns a gateway with no routes (it answers 503).
func NewGateway() *Gateway { return &Gateway{table: &table{}} }

// Route is one entry of the routing table: weight in percent; Version is
// the model version the upstream serves (for pinned requests).
type Route struct {
	Variant  serving.Variant
	Version  int64
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
		br := &backendRoute{variant: r.Variant, version: r.Version, up: r.Upstream, weight: r.Weight}
		br.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				// A label of a variant is the gateway's: the server knows
				// only its version.
				if p := parsePin(pr.In.URL.Path); p.label != "" && br.version > 0 && (p.label == string(serving.Stable) || p.label == string(serving.Canary)) {
					pr.Out.URL.Path = "/v1/models/" + p.model + "/versions/" + strconv.FormatInt(br.version, 10) + p.rest
					pr.Out.URL.RawPath = ""
				}
			},
			Transport:  g.roundTripper(),
			BufferPool: bufferPool,
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				writeErr(w, http.StatusBadGateway, "upstream %s: %v", u.Host, err)
			},
		}
		t.routes = append(t.routes, br)
	}
	g.mu.Lock()
	g.table = t
	g.mu.Unlock()
}

func (g *Gateway) roundTripper() http.RoundTripper {
	if g.transport != nil {
		return g.transport
	}
	return transport
}

// Drain waits until no request is in flight to up, or ctx ends.
func Drain(ctx context.Context, up *Upstream) error {
	for up.Inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain %s: %d requests still in flight: %w", up.URL, up.Inflight.Load(), ctx.Err())
		case <-time.After(2 * time.Millisecond):
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

// ServeHTTP proxies /v1/... to a route (the pinned one, else one picked
// by weight); /healthz answers 200; ControlPrefix goes to the control API.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if strings.HasPrefix(r.URL.Path, ControlPrefix) && g.control != nil {
		g.control.ServeHTTP(w, r)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		writeErr(w, http.StatusNotFound, "the gateway serves TF Serving's REST API under /v1/")
		return
	}
	p := parsePin(r.URL.Path)
	g.mu.RLock()
	rt, pinned := g.table.pinned(p)
	if !pinned {
		rt = g.table.pick()
	}
	if rt != nil {
		rt.up.Inflight.Add(1)
	}
	g.mu.RUnlock()
	if rt == nil {
		switch {
		case pinned && p.version > 0:
			// TF Serving's answer for a version it does not serve.
			writeErr(w, http.StatusNotFound, "Servable not found for request: Specific(%s, %d)", p.model, p.version)
		case pinned:
			writeErr(w, http.StatusNotFound, "Unrecognized servable version label: %s", p.label)
		default:
			writeErr(w, http.StatusServiceUnavailable, "no model version is serving")
		}
		return
	}
	defer rt.up.Inflight.Add(-1)
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	w.Header().Set(VariantHeader, string(rt.variant))
	rt.proxy.ServeHTTP(rec, r)
	if r.Method == http.MethodPost && rt.up.Stats != nil {
		rt.up.Stats.observe(rec.code, time.Since(start))
	}
}

// Listen starts serving on addr ("127.0.0.1:0" picks a port) and returns
// the gateway's base URL. Only a loopback address is accepted.
func (g *Gateway) Listen(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return "", err
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

// checkLoopback refuses a listen address that is not on loopback.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("gateway address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("gateway address %q: the local serving plane listens on loopback only (e.g. 127.0.0.1:8501)", addr)
	}
	return nil
}

// Close stops the gateway gracefully (in-flight requests finish, bounded by ctx).
func (g *Gateway) Close(ctx context.Context) error {
	if g.srv == nil {
		return nil
	}
	return g.srv.Shutdown(ctx)
}
