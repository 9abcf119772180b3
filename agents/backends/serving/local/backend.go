package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/records"
)

// Name of this backend in config.Backends.Serving.Type.
const Name = "local"

var _ serving.Backend = (*Backend)(nil)

// Default timeouts.
var (
	DefaultReadyTimeout = 60 * time.Second
	DefaultDrainTimeout = 30 * time.Second
)

type options struct {
	stateDir     string
	addr         string
	log          logrus.FieldLogger
	readyTimeout time.Duration
	drainTimeout time.Duration
}

// Option configures a Backend.
type Option func(*options)

// WithStateDir sets where processes are recorded (<dir>/serving/<model>/).
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithAddr sets the gateway's listen address (default "127.0.0.1:0").
func WithAddr(addr string) Option { return func(o *options) { o.addr = addr } }

// WithLogger sets the logger.
func WithLogger(l logrus.FieldLogger) Option { return func(o *options) { o.log = l } }

// WithReadyTimeout bounds the wait for a new server to serve its version.
func WithReadyTimeout(d time.Duration) Option { return func(o *options) { o.readyTimeout = d } }

// WithDrainTimeout bounds the wait for in-flight requests before a stop.
func WithDrainTimeout(d time.Duration) Option { return func(o *options) { o.drainTimeout = d } }

// Backend runs model servers as local processes behind a Gateway.
type Backend struct {
	model   string
	command []string
	o       options
	dir     string

	mu     sync.Mutex
	gw     *Gateway
	url    string
	procs  map[serving.Variant]*proc
	weight int
}

// New returns a backend for model that runs command (argv; the backend
// appends --rest_api_port=0, --model_config_file and
// --file_system_poll_wait_seconds). Call Start before use.
func New(model string, command []string, opts ...Option) (*Backend, error) {
	o := options{addr: "127.0.0.1:0", readyTimeout: DefaultReadyTimeout, drainTimeout: DefaultDrainTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if model == "" {
		return nil, errors.New("local serving: empty model name (deploy.model)")
	}
	if o.stateDir == "" {
		return nil, errors.New("local serving: no state directory (backends.stateDir)")
	}
	if o.log == nil {
		l := logrus.New()
		l.SetOutput(os.Stderr)
		o.log = l
	}
	return &Backend{model: model, command: command, o: o, dir: StateDir(o.stateDir, model), gw: NewGateway(), procs: map[serving.Variant]*proc{}}, nil
}

// StateDir is where the processes of model are recorded.
func StateDir(stateDir, model string) string { return filepath.Join(stateDir, "serving", model) }

type gatewayFile struct {
	URL          string    `json:"url"`
	PID          int       `json:"pid"`
	CanaryWeight int       `json:"canaryWeight"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// Start adopts the servers a previous process left running (recorded in
// the state directory, alive and serving their version) and starts the
// gateway. It returns the gateway's base URL.
func (b *Backend) Start(ctx context.Context) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
		pf, err := readProcFile(filepath.Join(b.dir, string(v)+".json"))
		if err != nil {
			continue
		}
		c, cerr := tfserving.New(pf.URL, tfserving.WithTimeout(time.Second))
		if !alive(pf.PID) || cerr != nil {
			os.Remove(filepath.Join(b.dir, string(v)+".json"))
			continue
		}
		if ok, _ := c.Available(ctx, pf.Model.Name, pf.Model.Version); !ok {
			os.Remove(filepath.Join(b.dir, string(v)+".json"))
			continue
		}
		b.procs[v] = &proc{procFile: pf, up: NewUpstream(pf.URL)}
		b.o.log.Infof("adopted %s", b.procs[v])
	}
	if gf, err := readGatewayFile(filepath.Join(b.dir, "gateway.json")); err == nil && b.procs[serving.Canary] != nil {
		b.weight = gf.CanaryWeight
	}
	url, err := b.gw.Listen(b.o.addr)
	if err != nil {
		return "", &serving.Error{Op: "start gateway", Err: err}
	}
	b.url = url
	b.applyRoutes()
	return url, b.saveGateway()
}

// URL is the gateway's base URL ("" before Start).
func (b *Backend) URL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.url
}

// Close stops the gateway and leaves the model servers running (a later
// Backend on the same state directory adopts them).
func (b *Backend) Close(ctx context.Context) error {
	err := b.gw.Close(ctx)
	os.Remove(filepath.Join(b.dir, "gateway.json"))
	return err
}

// Shutdown stops the gateway and every model server and forgets them.
func (b *Backend) Shutdown(ctx context.Context) error {
	err := b.Close(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	for v, p := range b.procs {
		if serr := p.stop(ctx, 5*time.Second); serr != nil && err == nil {
			err = serr
		}
		os.Remove(filepath.Join(b.dir, string(v)+".json"))
		delete(b.procs, v)
	}
	return err
}

// applyRoutes sets the gateway's table from procs and weight; b.mu held.
func (b *Backend) applyRoutes() {
	var routes []Route
	s, c := b.procs[serving.Stable], b.procs[serving.Canary]
	w := b.weight
	if s == nil && c != nil {
		w = 100
	}
	if c == nil {
		w = 0
	}
	if s != nil && w < 100 {
		routes = append(routes, Route{Variant: serving.Stable, Upstream: s.up, Weight: 100 - w})
	}
	if c != nil && w > 0 {
		routes = append(routes, Route{Variant: serving.Canary, Upstream: c.up, Weight: w})
	}
	b.gw.SetRoutes(routes...)
}

func (b *Backend) saveGateway() error {
	return atomicfile.WriteJSON(filepath.Join(b.dir, "gateway.json"), gatewayFile{URL: b.url, PID: os.Getpid(), CanaryWeight: b.weight, UpdatedAt: time.Now().UTC()})
}

func (b *Backend) saveProc(p *proc) error {
	return atomicfile.WriteJSON(filepath.Join(b.dir, string(p.Variant)+".json"), p.procFile)
}

// retire drains p (no longer routed) and stops it.
func (b *Backend) retire(ctx context.Context, p *proc) error {
	dctx, cancel := context.WithTimeout(ctx, b.o.drainTimeout)
	defer cancel()
	if err := Drain(dctx, p.up); err != nil {
		b.o.log.Warnf("%v; stopping anyway", err)
	}
	b.o.log.Infof("stopping %s", p)
	return p.stop(ctx, 10*time.Second)
}

// Deploy starts a server for m as variant v (unless one already serves
// exactly m), waits until m.Version is AVAILABLE, swaps it into the
// gateway at the variant's current weight and only then drains and stops
// the server it replaces.
func (b *Backend) Deploy(ctx context.Context, v serving.Variant, m records.ModelRef) error {
	b.mu.Lock()
	old := b.procs[v]
	b.mu.Unlock()
	if old != nil && old.Model.Version == m.Version && old.Model.Path == m.Path {
		return nil
	}
	dir := filepath.Join(b.dir, fmt.Sprintf("%s-v%d-%d", v, m.Version, time.Now().UnixNano()))
	p, err := startProc(ctx, b.command, dir, v, m, b.o.readyTimeout)
	if err != nil {
		return err
	}
	b.o.log.Infof("started %s", p)
	b.mu.Lock()
	b.procs[v] = p
	b.applyRoutes()
	serr := b.saveProc(p)
	b.mu.Unlock()
	if old != nil {
		if err := b.retire(ctx, old); err != nil {
			return &serving.Error{Op: "stop " + old.String(), Err: err, Retriable: true}
		}
		os.RemoveAll(filepath.Dir(old.Log))
	}
	return serr
}

// Route sets the canary's weight (0..100) atomically.
func (b *Backend) Route(_ context.Context, canaryWeight int) error {
	if canaryWeight < 0 || canaryWeight > 100 {
		return &serving.Error{Op: "route", Err: fmt.Errorf("canary weight %d outside 0..100", canaryWeight)}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.procs[serving.Canary] == nil && canaryWeight > 0 {
		return &serving.Error{Op: fmt.Sprintf("route %d%% to canary", canaryWeight), Err: errors.New("no canary runs")}
	}
	b.weight = canaryWeight
	b.applyRoutes()
	return b.saveGateway()
}

// Promote makes the canary the stable server at 100%, then drains and
// stops the old stable.
func (b *Backend) Promote(ctx context.Context) error {
	b.mu.Lock()
	c, old := b.procs[serving.Canary], b.procs[serving.Stable]
	if c == nil {
		b.mu.Unlock()
		return &serving.Error{Op: "promote", Err: errors.New("no canary runs")}
	}
	c.Variant = serving.Stable
	b.procs[serving.Stable] = c
	delete(b.procs, serving.Canary)
	b.weight = 0
	b.applyRoutes()
	err := errors.Join(b.saveProc(c), b.saveGateway())
	os.Remove(filepath.Join(b.dir, string(serving.Canary)+".json"))
	b.mu.Unlock()
	if old != nil {
		if rerr := b.retire(ctx, old); rerr != nil {
			return &serving.Error{Op: "stop " + old.String(), Err: rerr, Retriable: true}
		}
		os.RemoveAll(filepath.Dir(old.Log))
	}
	return err
}

// Abort routes everything to stable, then drains and stops the canary.
func (b *Backend) Abort(ctx context.Context) error {
	b.mu.Lock()
	c := b.procs[serving.Canary]
	delete(b.procs, serving.Canary)
	b.weight = 0
	b.applyRoutes()
	err := b.saveGateway()
	os.Remove(filepath.Join(b.dir, string(serving.Canary)+".json"))
	b.mu.Unlock()
	if c != nil {
		if rerr := b.retire(ctx, c); rerr != nil {
			return &serving.Error{Op: "stop " + c.String(), Err: rerr, Retriable: true}
		}
	}
	return err
}

// State reports the running servers and the canary's weight.
func (b *Backend) State(context.Context) (serving.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := serving.State{Backend: Name, Model: b.model, Endpoint: b.url, CanaryWeight: b.weight, Variants: []serving.VariantState{}}
	for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
		if p := b.procs[v]; p != nil {
			st.Variants = append(st.Variants, serving.VariantState{Variant: v, Model: p.Model, Endpoint: p.URL, Replicas: 1, PID: p.PID})
		}
	}
	return st, nil
}

func (b *Backend) get(v serving.Variant) (*proc, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.procs[v]
	if p == nil {
		return nil, &serving.Error{Op: "probe " + string(v), Err: fmt.Errorf("no %s server runs", v)}
	}
	return p, nil
}

// Counters returns what the gateway counted for variant v's server.
func (b *Backend) Counters(_ context.Context, v serving.Variant) (tfserving.Counters, error) {
	p, err := b.get(v)
	if err != nil {
		return tfserving.Counters{}, err
	}
	return p.up.Stats.Counters(), nil
}

// Predict sends body straight to variant v's server (bypassing the gateway).
func (b *Backend) Predict(ctx context.Context, v serving.Variant, body []byte) (*tfserving.PredictResponse, error) {
	p, err := b.get(v)
	if err != nil {
		return nil, err
	}
	c, err := tfserving.New(p.URL)
	if err != nil {
		return nil, err
	}
	return c.Predict(ctx, p.Model.Name, tfserving.Selector{Version: p.Model.Version}, body)
}

// ReadState reads what serves model from the state directory, without
// starting anything (for `status` from another process). Servers whose
// process is gone are left out.
func ReadState(stateDir, model string) (serving.State, error) {
	dir := StateDir(stateDir, model)
	st := serving.State{Backend: Name, Model: model, Variants: []serving.VariantState{}}
	if gf, err := readGatewayFile(filepath.Join(dir, "gateway.json")); err == nil && alive(gf.PID) {
		st.Endpoint, st.CanaryWeight = gf.URL, gf.CanaryWeight
	}
	for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
		pf, err := readProcFile(filepath.Join(dir, string(v)+".json"))
		if err != nil || !alive(pf.PID) {
			continue
		}
		st.Variants = append(st.Variants, serving.VariantState{Variant: v, Model: pf.Model, Endpoint: pf.URL, Replicas: 1, PID: pf.PID})
	}
	if st.Get(serving.Canary) == nil {
		st.CanaryWeight = 0
	}
	return st, nil
}

func readProcFile(path string) (procFile, error) {
	var pf procFile
	raw, err := os.ReadFile(path)
	if err != nil {
		return pf, err
	}
	if err := json.Unmarshal(raw, &pf); err != nil {
		return pf, fmt.Errorf("%s: %w", path, err)
	}
	if pf.PID <= 0 || pf.URL == "" {
		return pf, fmt.Errorf("%s: no pid or url", path)
	}
	return pf, nil
}

func readGatewayFile(path string) (gatewayFile, error) {
	var gf gatewayFile
	raw, err := os.ReadFile(path)
	if err != nil {
		return gf, err
	}
	err = json.Unmarshal(raw, &gf)
	return gf, err
}

// Serve runs the gateway until ctx ends (the long-running `serve` mode),
// then closes it, leaving the servers running.
func (b *Backend) Serve(ctx context.Context) error {
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.Close(cctx)
}
