package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/internal/procid"
	"github.com/branchml/branchml/agents/records"
)

// Name of this backend in config.Backends.Serving.Type.
const Name = "local"

var (
	_ serving.Backend = (*Backend)(nil)
	_ serving.Leaser  = (*Backend)(nil)
)

// Default timeouts.
var (
	DefaultReadyTimeout = 60 * time.Second
	DefaultDrainTimeout = 30 * time.Second
	// DefaultSpawnTimeout bounds the wait for a spawned plane to answer.
	DefaultSpawnTimeout = 30 * time.Second
)

type options struct {
	stateDir     string
	addr         string
	log          logrus.FieldLogger
	readyTimeout time.Duration
	drainTimeout time.Duration
	owner        string
	host         bool
	spawn        []string
}

func defaultOptions() options {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	return options{addr: "127.0.0.1:0", readyTimeout: DefaultReadyTimeout, drainTimeout: DefaultDrainTimeout, log: l, owner: "serving plane"}
}

// Option configures a Backend or a Plane.
type Option func(*options)

// WithStateDir sets the state directory (the plane's files are in
// <dir>/serving/<model>/).
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithAddr sets the gateway's listen address (default "127.0.0.1:0": the
// last plane's port when free, else any); loopback only.
func WithAddr(addr string) Option {
	return func(o *options) {
		if addr != "" {
			o.addr = addr
		}
	}
}

// WithLogger sets the logger.
func WithLogger(l logrus.FieldLogger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithReadyTimeout bounds the wait for a new server to serve its version.
func WithReadyTimeout(d time.Duration) Option { return func(o *options) { o.readyTimeout = d } }

// WithDrainTimeout bounds the wait for in-flight requests before a stop.
func WithDrainTimeout(d time.Duration) Option { return func(o *options) { o.drainTimeout = d } }

// WithOwner names the process that owns a plane it hosts, e.g. "branchml
// quickstart --serve" (shown to whoever finds the plane running).
func WithOwner(what string) Option { return func(o *options) { o.owner = what } }

// WithHost makes Start host the serving plane in this process when none
// runs; Close then shuts it down (and every model server with it).
func WithHost() Option { return func(o *options) { o.host = true } }

// WithSpawn makes Start run argv as a detached process of its own (its
// own session, output to <plane dir>/plane.log) when no plane runs, e.g.
// {"/usr/bin/branchml-deploy", "serve", "--model", "djia30", ...}; the
// plane then outlives this process and keeps serving.
func WithSpawn(argv ...string) Option { return func(o *options) { o.spawn = argv } }

// Backend is the local serving backend as a client of the model's serving
// plane: Start finds the plane that runs for the model in the state
// directory (or hosts or spawns one), and every change goes through its
// control API, so that every agent run, in whatever process, changes the
// one gateway clients use.
type Backend struct {
	model   string
	command []string
	o       options
	dir     string
	hc      *http.Client

	mu     sync.Mutex
	plane  *Plane // hosted here
	info   planeInfo
	lease  string
	leases []*lease
}

// New returns a backend for model whose servers run command (argv; the
// plane appends --rest_api_host=127.0.0.1, --rest_api_port=0,
// --model_config_file and --file_system_poll_wait_seconds). command may be
// empty for a backend that only observes or serves. Call Start before use.
func New(model string, command []string, opts ...Option) (*Backend, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if model == "" {
		return nil, errors.New("local serving: empty model name (deploy.model)")
	}
	if o.stateDir == "" {
		return nil, errors.New("local serving: no state directory (backends.stateDir)")
	}
	if err := checkLoopback(o.addr); err != nil {
		return nil, err
	}
	return &Backend{model: model, command: command, o: o, dir: StateDir(o.stateDir, model), hc: &http.Client{}}, nil
}

// ErrNoPlane is returned (wrapped) by Start when no serving plane runs and
// the backend may neither host nor spawn one.
var ErrNoPlane = errors.New("no serving plane runs")

// Start connects to the model's serving plane: the one that runs (its
// owner alive, its control API answering), else one hosted here
// (WithHost) or spawned (WithSpawn). It returns the gateway's base URL.
func (b *Backend) Start(ctx context.Context) (string, error) {
	if info, ok := b.running(ctx); ok {
		b.setInfo(info)
		return info.URL, nil
	}
	switch {
	case b.o.host:
		p, err := NewPlane(b.model, b.o.stateDir, func(o *options) { *o = b.o })
		if err != nil {
			return "", err
		}
		if _, err := p.Start(ctx); err != nil {
			var re *RunningError
			if !errors.As(err, &re) {
				return "", err
			}
			return b.waitRunning(ctx, nil) // another process won the race
		}
		info, err := readPlaneInfo(b.dir)
		if err != nil {
			_ = p.Shutdown(ctx)
			return "", err
		}
		b.mu.Lock()
		b.plane = p
		b.mu.Unlock()
		b.setInfo(info)
		return info.URL, nil
	case len(b.o.spawn) > 0:
		if err := os.MkdirAll(b.dir, 0o755); err != nil {
			return "", err
		}
		logPath := filepath.Join(b.dir, "plane.log")
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return "", err
		}
		cmd := exec.Command(b.o.spawn[0], b.o.spawn[1:]...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // not killed with our terminal or process group
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return "", &serving.Error{Op: "start the serving plane of " + b.model, Err: err}
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		b.o.log.Infof("started the serving plane of %s (pid %d; log %s)", b.model, cmd.Process.Pid, logPath)
		return b.waitRunning(ctx, exited)
	}
	return "", fmt.Errorf("%w for model %s in %s: start one with 'branchml serve --model %s --state-dir %s'", ErrNoPlane, b.model, b.o.stateDir, b.model, b.o.stateDir)
}

// waitRunning waits for a plane to answer; exited reports our spawned
// process ending (a plane that lost the race ends at once: keep waiting
// for the winner).
func (b *Backend) waitRunning(ctx context.Context, exited <-chan error) (string, error) {
	deadline := time.Now().Add(DefaultSpawnTimeout)
	var exitErr error
	for {
		if info, ok := b.running(ctx); ok {
			b.setInfo(info)
			return info.URL, nil
		}
		select {
		case err := <-exited:
			exitErr = fmt.Errorf("the spawned serving plane exited (%v)", err)
			exited = nil
		default:
		}
		if time.Now().After(deadline) {
			tail, _ := os.ReadFile(filepath.Join(b.dir, "plane.log"))
			if len(tail) > 600 {
				tail = tail[len(tail)-600:]
			}
			return "", &serving.Error{Op: "start the serving plane of " + b.model,
				Err: fmt.Errorf("no plane answered within %v (%v); log %s: %s", DefaultSpawnTimeout, exitErr, filepath.Join(b.dir, "plane.log"), tail)}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// running reads plane.json and checks that its owner runs and answers.
func (b *Backend) running(ctx context.Context) (planeInfo, bool) {
	info, err := readPlaneInfo(b.dir)
	if err != nil || !info.Owner.Alive() {
		return info, false
	}
	var st planeState
	if err := b.call(ctx, info, http.MethodGet, "state", nil, &st); err != nil {
		return info, false
	}
	return info, true
}

func (b *Backend) setInfo(info planeInfo) {
	b.mu.Lock()
	b.info = info
	b.mu.Unlock()
}

// URL is the gateway's base URL ("" before Start).
func (b *Backend) URL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.info.URL
}

// Owner is the process that owns the plane (hosting it).
func (b *Backend) Owner() procid.Holder {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.info.Owner
}

// Hosted reports whether this backend hosts the plane (Close stops it).
func (b *Backend) Hosted() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.plane != nil
}

// Close gives back the leases this backend holds and, when the plane is
// hosted here, shuts it down: every model server stops.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	ls, p := b.leases, b.plane
	b.leases, b.plane = nil, nil
	b.mu.Unlock()
	for _, l := range ls {
		_ = l.Release(ctx)
	}
	if p != nil {
		return p.Shutdown(ctx)
	}
	return nil
}

// call sends one control API request; a plane error comes back typed.
func (b *Backend) call(ctx context.Context, info planeInfo, method, path string, body, out any) error {
	return b.callLease(ctx, info, "", method, path, body, out)
}

func (b *Backend) callLease(ctx context.Context, info planeInfo, leaseID, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(info.URL, "/")+ControlPrefix+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+info.Token)
	req.Header.Set("Content-Type", "application/json")
	if leaseID != "" {
		req.Header.Set(LeaseHeader, leaseID)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return &serving.Error{Op: method + " " + path + " on the serving plane of " + b.model, Err: err, Retriable: true}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return &serving.Error{Op: method + " " + path, Err: err, Retriable: true}
	}
	if resp.StatusCode/100 != 2 {
		var pe planeErr
		if json.Unmarshal(raw, &pe) != nil || pe.Msg == "" {
			pe = planeErr{Kind: kindFailed, Msg: fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(raw))}
		}
		return b.typed(path, &pe)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s answer of the serving plane: %w", path, err)
		}
	}
	return nil
}

// typed turns a wire error into the serving package's errors.
func (b *Backend) typed(op string, pe *planeErr) error {
	op = op + " " + b.model
	switch pe.Kind {
	case kindHeld:
		return &serving.HeldError{Model: b.model, Holder: pe.Holder}
	case kindPreempted:
		return &serving.Error{Op: op, Err: &serving.PreemptedError{By: pe.By, Reason: pe.Reason}}
	case kindLoadFailed:
		return &serving.Error{Op: op, Err: fmt.Errorf("%w: %s", serving.ErrLoadFailed, pe.Msg)}
	}
	return &serving.Error{Op: op, Err: errors.New(pe.Msg), Retriable: pe.Retriable}
}

// quick runs a short change (route, promote, abort) to its end even when
// ctx ends meanwhile (bounded): the caller then knows whether it happened.
func (b *Backend) quick(ctx context.Context, path string, body any) error {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.o.drainTimeout+15*time.Second)
	defer cancel()
	return b.do(qctx, http.MethodPost, path, body, nil)
}

func (b *Backend) do(ctx context.Context, method, path string, body, out any) error {
	b.mu.Lock()
	info, id := b.info, b.lease
	b.mu.Unlock()
	if info.URL == "" {
		return &serving.Error{Op: path, Err: errors.New("local serving backend not started")}
	}
	return b.callLease(ctx, info, id, method, path, body, out)
}

// Deploy makes variant v serve exactly m: the plane starts a server for
// it (unless one serves exactly m), waits until m.Version is AVAILABLE,
// swaps it into the gateway at the variant's weight and only then drains
// and stops the server it replaces. A version that cannot load wraps
// serving.ErrLoadFailed.
func (b *Backend) Deploy(ctx context.Context, v serving.Variant, m records.ModelRef) error {
	if abs, err := filepath.Abs(m.Path); err == nil {
		m.Path = abs
	}
	return b.do(ctx, http.MethodPost, "deploy", deployReq{Variant: v, Model: m, Argv: b.command}, nil)
}

// Route sets the canary's weight (0..100) atomically. Route, Promote and
// Abort run to their end once sent, even when ctx ends meanwhile.
func (b *Backend) Route(ctx context.Context, canaryWeight int) error {
	return b.quick(ctx, "route", map[string]int{"canaryWeight": canaryWeight})
}

// Promote makes the canary the stable server at 100%, then drains and
// stops the old stable.
func (b *Backend) Promote(ctx context.Context) error {
	return b.quick(ctx, "promote", struct{}{})
}

// Abort routes everything to stable, then drains and stops the canary.
func (b *Backend) Abort(ctx context.Context) error {
	return b.quick(ctx, "abort", struct{}{})
}

func (b *Backend) planeState(ctx context.Context) (planeState, error) {
	var st planeState
	err := b.do(ctx, http.MethodGet, "state", nil, &st)
	return st, err
}

// State reports the running servers and the canary's weight.
func (b *Backend) State(ctx context.Context) (serving.State, error) {
	st, err := b.planeState(ctx)
	if err != nil {
		return serving.State{}, err
	}
	return toState(b.model, st), nil
}

func toState(model string, st planeState) serving.State {
	out := serving.State{Backend: Name, Model: model, Endpoint: st.URL, CanaryWeight: st.CanaryWeight, Variants: []serving.VariantState{}}
	for _, pf := range st.Variants {
		out.Variants = append(out.Variants, serving.VariantState{Variant: pf.Variant, Model: pf.Model, Endpoint: pf.URL, Replicas: 1, PID: pf.ID.PID, Since: pf.Since})
	}
	if out.Get(serving.Canary) == nil {
		out.CanaryWeight = 0
	}
	return out
}

// Counters returns what the gateway counted for variant v's server.
func (b *Backend) Counters(ctx context.Context, v serving.Variant) (tfserving.Counters, error) {
	var c tfserving.Counters
	err := b.do(ctx, http.MethodGet, "counters?variant="+url.QueryEscape(string(v)), nil, &c)
	return c, err
}

// Predict sends body straight to variant v's server (bypassing the gateway).
func (b *Backend) Predict(ctx context.Context, v serving.Variant, body []byte) (*tfserving.PredictResponse, error) {
	st, err := b.planeState(ctx)
	if err != nil {
		return nil, err
	}
	for _, pf := range st.Variants {
		if pf.Variant == v {
			c, err := tfserving.New(pf.URL)
			if err != nil {
				return nil, err
			}
			return c.Predict(ctx, pf.Model.Name, tfserving.Selector{Version: pf.Model.Version}, body)
		}
	}
	return nil, &serving.Error{Op: "probe " + string(v), Err: fmt.Errorf("no %s server runs", v)}
}

// --- the rollout lease ---

type lease struct {
	b      *Backend
	id     string
	lost   chan struct{}
	stop   chan struct{}
	once   sync.Once
	relOne sync.Once
	mu     sync.Mutex
	err    error
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Release gives the lease back.
func (l *lease) Release(ctx context.Context) error {
	var err error
	l.relOne.Do(func() {
		close(l.stop)
		l.b.mu.Lock()
		if l.b.lease == l.id {
			l.b.lease = ""
		}
		info := l.b.info
		l.b.mu.Unlock()
		err = l.b.call(ctx, info, http.MethodDelete, "lease?id="+l.id, nil, nil)
	})
	return err
}

// watch polls the plane for the lease being taken.
func (l *lease) watch() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.b.mu.Lock()
		info := l.b.info
		l.b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var a leaseAnswer
		err := l.b.call(ctx, info, http.MethodGet, "lease?id="+l.id, nil, &a)
		cancel()
		if err == nil && !a.Current && a.By != "" {
			l.mu.Lock()
			l.err = &serving.PreemptedError{By: a.By, Reason: a.Reason}
			l.mu.Unlock()
			l.once.Do(func() { close(l.lost) })
			return
		}
	}
}

// Lease takes the model's rollout lease in the plane (see serving.Leaser).
// The holder is this process (PID and start time) and r.What.
func (b *Backend) Lease(ctx context.Context, r serving.LeaseRequest) (serving.Lease, error) {
	b.mu.Lock()
	info := b.info
	b.mu.Unlock()
	if info.URL == "" {
		return nil, &serving.Error{Op: "lease", Err: errors.New("local serving backend not started")}
	}
	h := procid.Holder{ID: procid.Self(), What: r.What, Since: time.Now().UTC().Truncate(time.Millisecond)}
	told := false
	for {
		var a leaseAnswer
		err := b.call(ctx, info, http.MethodPost, "lease", leaseReq{Holder: h, Preempt: r.Preempt}, &a)
		if err == nil {
			l := &lease{b: b, id: a.ID, lost: make(chan struct{}), stop: make(chan struct{})}
			b.mu.Lock()
			b.lease = a.ID
			b.leases = append(b.leases, l)
			b.mu.Unlock()
			go l.watch()
			return l, nil
		}
		var he *serving.HeldError
		if !errors.As(err, &he) || !r.Wait {
			return nil, err
		}
		if !told && r.OnWait != nil {
			r.OnWait(he.Holder)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the rollout in progress by %s: %w", he.Holder, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// --- reading from another process ---

// ReadState reads what serves model from the state directory, without
// starting anything (for `status` from another process): the live
// plane's answer, else nothing serves. Servers a dead plane left running
// are in Orphans. A corrupted state file is a *StateError naming it.
func ReadState(ctx context.Context, stateDir, model string) (serving.State, error) {
	dir := StateDir(stateDir, model)
	empty := serving.State{Backend: Name, Model: model, Variants: []serving.VariantState{}}
	b := &Backend{model: model, o: defaultOptions(), dir: dir, hc: &http.Client{Timeout: 5 * time.Second}}
	if info, ok := b.running(ctx); ok {
		b.setInfo(info)
		if st, err := b.planeState(ctx); err == nil {
			return toState(model, st), nil
		}
	}
	last, err := readStateFile(dir)
	if err != nil {
		return empty, err
	}
	if info, err := readPlaneInfo(dir); err == nil && info.Owner.Alive() {
		// The owner runs but did not answer: report its last saved state.
		st := toState(model, last)
		return st, nil
	}
	for _, pf := range last.Variants {
		if pf.ID.Alive() {
			empty.Orphans = append(empty.Orphans, serving.VariantState{Variant: pf.Variant, Model: pf.Model, Endpoint: pf.URL, Replicas: 1, PID: pf.ID.PID, Since: pf.Since})
		}
	}
	return empty, nil
}

// PlaneOwner is the process owning the running plane of model, and its
// URL; ok is false when none runs.
func PlaneOwner(stateDir, model string) (owner procid.Holder, url string, ok bool) {
	info, err := readPlaneInfo(StateDir(stateDir, model))
	if err != nil || !info.Owner.Alive() {
		return procid.Holder{}, "", false
	}
	return info.Owner, info.URL, true
}

// StopPlane stops the running plane of model (SIGTERM to its owner, PID
// and start time checked; the plane then stops its servers) and waits up
// to grace; false when none ran.
func StopPlane(stateDir, model string, grace time.Duration) (bool, error) {
	owner, _, ok := PlaneOwner(stateDir, model)
	if !ok {
		return false, nil
	}
	if owner.PID == os.Getpid() {
		return true, errors.New("the serving plane runs in this very process")
	}
	return true, owner.ID.Stop(grace)
}
