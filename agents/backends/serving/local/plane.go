package local

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/internal/procid"
	"github.com/branchml/branchml/agents/records"
)

// PlaneGCPercent is the garbage collector target of a process that only
// runs a serving plane (`branchml serve`): its heap is small and steady, so
// collecting less often costs little memory and takes the collector's
// pauses out of the gateway's latency tail (runtime/debug.SetGCPercent).
const PlaneGCPercent = 400

// Files of a model's serving plane in StateDir(stateDir, model).
const (
	// planeLock is flocked by the plane for its whole life: one plane per
	// model per state directory.
	planeLock = "plane.lock"
	// planeFile says where the plane listens and its control token (0600).
	planeFile = "plane.json"
	// stateFile is what serves, rewritten atomically on every change.
	stateFile = "state.json"
)

// StateDir is where the serving plane of model keeps its files.
func StateDir(stateDir, model string) string { return filepath.Join(stateDir, "serving", model) }

// planeInfo is plane.json.
type planeInfo struct {
	URL   string        `json:"url"`
	Token string        `json:"token"`
	Owner procid.Holder `json:"owner"`
}

// leaseRec is the rollout lease the plane holds for one process.
type leaseRec struct {
	ID     string        `json:"id"`
	Holder procid.Holder `json:"holder"`
}

// planeState is state.json, and the answer of GET state.
type planeState struct {
	Model string `json:"model"`
	// URL is where the gateway listens (kept after the plane stops, so
	// that the next plane takes the same port).
	URL          string         `json:"url"`
	Owner        *procid.Holder `json:"owner,omitempty"`
	CanaryWeight int            `json:"canaryWeight"`
	Variants     []procFile     `json:"variants"`
	Lease        *leaseRec      `json:"lease,omitempty"`
	UpdatedAt    time.Time      `json:"updatedAt"`
}

// RunningError is a plane that cannot start because another serves the
// model from the same state directory.
type RunningError struct {
	Model string
	Owner procid.Holder
	URL   string
}

func (e *RunningError) Error() string {
	return fmt.Sprintf("the serving plane of %s already runs: %s at %s", e.Model, e.Owner, e.URL)
}

// Plane is the serving plane of one model in one state directory: the
// gateway every client sends its requests to, the model servers behind it
// (its child processes) and the rollout lease. It is long-lived: owned by
// whichever process serves (`branchml serve`, the quickstart) and used by
// every agent run through its control API (ControlPrefix on the gateway's
// listener, with the bearer token of plane.json). It never routes to a
// server that stopped: a server is removed from the routes before it is
// drained and stopped, and at once when it exits by itself; servers die
// with the plane (Pdeathsig), and a new plane stops any that a crashed
// one left (PID and start time checked).
type Plane struct {
	model, dir string
	o          options
	gw         *Gateway
	url, token string
	owner      procid.Holder
	release    func()

	mu      sync.Mutex
	procs   map[serving.Variant]*proc
	weight  int
	lease   *leaseRec
	revoked map[string]*serving.PreemptedError
	closed  bool
	// starting counts Deploys between start and swap (Shutdown waits).
	busy sync.WaitGroup
}

// NewPlane returns the plane of model in stateDir (WithAddr, WithLogger,
// WithReadyTimeout, WithDrainTimeout, WithOwner apply). Call Start.
func NewPlane(model, stateDir string, opts ...Option) (*Plane, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if model == "" {
		return nil, errors.New("local serving: empty model name (deploy.model)")
	}
	if stateDir == "" {
		return nil, errors.New("local serving: no state directory (backends.stateDir)")
	}
	return &Plane{model: model, dir: StateDir(stateDir, model), o: o, gw: NewGateway(),
		procs: map[serving.Variant]*proc{}, revoked: map[string]*serving.PreemptedError{}}, nil
}

// Start takes the plane's lock (a *RunningError when another plane
// serves the model), stops the servers a crashed plane left, listens on
// the configured address (port 0: the port the last plane had, if free)
// and writes plane.json. It returns the gateway's base URL.
func (p *Plane) Start(ctx context.Context) (string, error) {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return "", err
	}
	release, err := procid.Lock(ctx, filepath.Join(p.dir, planeLock), procid.LockOptions{What: p.o.owner})
	if err != nil {
		var he *procid.HeldError
		if errors.As(err, &he) {
			info, _ := readPlaneInfo(p.dir)
			return "", &RunningError{Model: p.model, Owner: he.Holder, URL: info.URL}
		}
		return "", err
	}
	fail := func(err error) (string, error) { release(); return "", err }
	last, err := readStateFile(p.dir)
	if err != nil {
		return fail(err)
	}
	for _, pf := range last.Variants {
		if pf.ID.Alive() {
			p.o.log.Warnf("stopping %s v%d (pid %d), left running by a serving plane that ended without stopping it", pf.Model.Name, pf.Model.Version, pf.ID.PID)
			if err := pf.ID.Stop(5 * time.Second); err != nil {
				return fail(fmt.Errorf("stop the model server a previous plane left (%s): %w", pf.ID, err))
			}
		}
	}
	addr := p.o.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	u, err := "", error(nil)
	if _, port, _ := net.SplitHostPort(addr); port == "0" && last.URL != "" {
		if lu, perr := url.Parse(last.URL); perr == nil {
			u, err = p.gw.Listen(lu.Host) // the same URL as before, when the port is free
		}
	}
	if u == "" {
		if u, err = p.gw.Listen(addr); err != nil {
			return fail(&serving.Error{Op: "start the gateway of " + p.model, Err: err})
		}
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	p.url, p.token, p.release = u, hex.EncodeToString(tok), release
	p.owner = procid.Holder{ID: procid.Self(), What: p.o.owner, Since: time.Now().UTC().Truncate(time.Millisecond)}
	p.gw.control = p.controlHandler()
	if err := p.saveLocked(); err != nil {
		_ = p.gw.Close(ctx)
		return fail(err)
	}
	if err := atomicfile.WriteFile(filepath.Join(p.dir, planeFile), mustJSON(planeInfo{URL: u, Token: p.token, Owner: p.owner}), 0o600); err != nil {
		_ = p.gw.Close(ctx)
		return fail(err)
	}
	p.o.log.Infof("serving plane of %s on %s (%s)", p.model, u, p.owner)
	return u, nil
}

// URL is the gateway's base URL.
func (p *Plane) URL() string { return p.url }

// Serve blocks until ctx ends, then shuts the plane down.
func (p *Plane) Serve(ctx context.Context) error {
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.Shutdown(sctx)
}

// Shutdown removes every route, drains and stops every model server, stops
// the gateway, removes plane.json and lets the lock go. The state file
// stays (no variants), with the URL for the next plane.
func (p *Plane) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	procs := p.procs
	p.procs = map[serving.Variant]*proc{}
	p.weight = 0
	p.applyRoutesLocked()
	p.mu.Unlock()
	p.busy.Wait()
	for _, pr := range procs {
		p.retire(ctx, pr)
	}
	err := p.gw.Close(ctx)
	p.mu.Lock()
	p.lease = nil
	serr := p.saveLocked()
	p.mu.Unlock()
	os.Remove(filepath.Join(p.dir, planeFile))
	if p.release != nil {
		p.release()
	}
	p.o.log.Infof("serving plane of %s stopped", p.model)
	return errors.Join(err, serr)
}

// applyRoutesLocked sets the gateway's table from procs and weight.
func (p *Plane) applyRoutesLocked() {
	var routes []Route
	s, c := p.procs[serving.Stable], p.procs[serving.Canary]
	w := p.weight
	if s == nil && c != nil {
		w = 100
	}
	if c == nil {
		w = 0
	}
	if s != nil && w < 100 {
		routes = append(routes, Route{Variant: serving.Stable, Version: s.Model.Version, Upstream: s.up, Weight: 100 - w})
	}
	if c != nil && w > 0 {
		routes = append(routes, Route{Variant: serving.Canary, Version: c.Model.Version, Upstream: c.up, Weight: w})
	}
	p.gw.SetRoutes(routes...)
}

func (p *Plane) stateLocked() planeState {
	st := planeState{Model: p.model, URL: p.url, CanaryWeight: p.weight, Variants: []procFile{}, Lease: p.lease, UpdatedAt: time.Now().UTC()}
	if p.owner.PID > 0 && !p.closed {
		o := p.owner
		st.Owner = &o
	}
	for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
		if pr := p.procs[v]; pr != nil {
			st.Variants = append(st.Variants, pr.procFile)
		}
	}
	if p.procs[serving.Canary] == nil {
		st.CanaryWeight = 0
	}
	return st
}

func (p *Plane) saveLocked() error {
	return atomicfile.WriteJSON(filepath.Join(p.dir, stateFile), p.stateLocked())
}

// retire drains pr (no longer routed) and stops it.
func (p *Plane) retire(ctx context.Context, pr *proc) {
	dctx, cancel := context.WithTimeout(ctx, p.o.drainTimeout)
	defer cancel()
	if err := Drain(dctx, pr.up); err != nil {
		p.o.log.Warnf("%v; stopping anyway", err)
	}
	p.o.log.Infof("stopping %s", pr)
	pr.stop(10 * time.Second)
	os.RemoveAll(filepath.Dir(pr.Log))
}

// watch removes pr from the routes the moment it exits by itself.
func (p *Plane) watch(pr *proc) {
	<-pr.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.procs[pr.Variant] != pr {
		return // retired on purpose
	}
	delete(p.procs, pr.Variant)
	p.applyRoutesLocked()
	_ = p.saveLocked()
	p.o.log.Errorf("%s exited by itself (%v); removed from the routes (log %s)", pr, pr.exitErr, pr.Log)
}

// --- the rollout lease ---

// freeDeadLeaseLocked forgets a lease whose holder died.
func (p *Plane) freeDeadLeaseLocked() {
	if p.lease != nil && !p.lease.Holder.Alive() {
		p.o.log.Warnf("rollout lease of %s freed: its holder %s is gone", p.model, p.lease.Holder)
		p.lease = nil
	}
}

// checkLeaseLocked says whether a change by lease id may proceed.
func (p *Plane) checkLeaseLocked(id string) error {
	if p.closed {
		return &planeErr{Kind: kindFailed, Msg: "the serving plane is stopping"}
	}
	if pe := p.revoked[id]; id != "" && pe != nil {
		return &planeErr{Kind: kindPreempted, Msg: pe.Error(), By: pe.By, Reason: pe.Reason}
	}
	p.freeDeadLeaseLocked()
	if p.lease == nil || p.lease.ID == id {
		return nil
	}
	return &planeErr{Kind: kindHeld, Msg: fmt.Sprintf("rollout in progress by %s", p.lease.Holder), Holder: p.lease.Holder.String()}
}

func (p *Plane) acquire(ctx context.Context, h procid.Holder, preempt bool) (string, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return "", &planeErr{Kind: kindFailed, Msg: "the serving plane is stopping"}
	}
	p.freeDeadLeaseLocked()
	old := p.lease
	if old != nil && !preempt {
		p.mu.Unlock()
		return "", &planeErr{Kind: kindHeld, Msg: fmt.Sprintf("rollout in progress by %s", old.Holder), Holder: old.Holder.String()}
	}
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	l := &leaseRec{ID: hex.EncodeToString(tok), Holder: h}
	var canary *proc
	if old != nil {
		reason := "its rollout was preempted"
		if c := p.procs[serving.Canary]; c != nil {
			reason = fmt.Sprintf("canary %s v%d removed, traffic back to stable", c.Model.Name, c.Model.Version)
		}
		p.revoked[old.ID] = &serving.PreemptedError{By: h.String(), Reason: reason}
		canary = p.procs[serving.Canary]
		delete(p.procs, serving.Canary)
		p.weight = 0
		p.applyRoutesLocked()
		p.o.log.Warnf("rollout lease of %s taken from %s by %s: %s", p.model, old.Holder, h, reason)
	}
	p.lease = l
	err := p.saveLocked()
	p.mu.Unlock()
	if canary != nil {
		p.retire(ctx, canary)
	}
	return l.ID, err
}

func (p *Plane) releaseLease(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lease != nil && p.lease.ID == id {
		p.lease = nil
		_ = p.saveLocked()
	}
	delete(p.revoked, id)
}

// leaseStatus reports whether id is the current lease, or why not.
func (p *Plane) leaseStatus(id string) (bool, *serving.PreemptedError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pe := p.revoked[id]; pe != nil {
		return false, pe
	}
	return p.lease != nil && p.lease.ID == id, nil
}

// --- the changes ---

func (p *Plane) deploy(ctx context.Context, lease string, v serving.Variant, m records.ModelRef, argv []string) error {
	p.mu.Lock()
	if err := p.checkLeaseLocked(lease); err != nil {
		p.mu.Unlock()
		return err
	}
	old := p.procs[v]
	if old != nil && old.Model.Version == m.Version && old.Model.Path == m.Path {
		p.mu.Unlock()
		return nil
	}
	p.busy.Add(1)
	p.mu.Unlock()
	defer p.busy.Done()
	dir := filepath.Join(p.dir, fmt.Sprintf("%s-v%d-%d", v, m.Version, time.Now().UnixNano()))
	pr, err := startProc(ctx, argv, dir, v, m, p.o.readyTimeout)
	if err != nil {
		// The directory stays: the error names its server.log.
		var se *serving.Error
		if errors.As(err, &se) && errors.Is(err, serving.ErrLoadFailed) {
			return &planeErr{Kind: kindLoadFailed, Msg: strings.Replace(err.Error(), serving.ErrLoadFailed.Error()+": ", "", 1)}
		}
		return &planeErr{Kind: kindFailed, Msg: err.Error(), Retriable: serving.IsTemporary(err)}
	}
	p.mu.Lock()
	if err := p.checkLeaseLocked(lease); err != nil {
		// Preempted (or the plane stops) while the server started: it never serves.
		p.mu.Unlock()
		pr.stop(5 * time.Second)
		os.RemoveAll(dir)
		return err
	}
	old = p.procs[v]
	pr.Since = time.Now().UTC()
	p.procs[v] = pr
	p.applyRoutesLocked()
	serr := p.saveLocked()
	p.mu.Unlock()
	go p.watch(pr)
	p.o.log.Infof("started %s", pr)
	if old != nil {
		p.retire(ctx, old)
	}
	if serr != nil {
		return &planeErr{Kind: kindFailed, Msg: serr.Error()}
	}
	return nil
}

func (p *Plane) route(lease string, w int) error {
	if w < 0 || w > 100 {
		return &planeErr{Kind: kindBadRequest, Msg: fmt.Sprintf("canary weight %d outside 0..100", w)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLeaseLocked(lease); err != nil {
		return err
	}
	if p.procs[serving.Canary] == nil && w > 0 {
		return &planeErr{Kind: kindNoCanary, Msg: fmt.Sprintf("route %d%% to canary: no canary runs", w)}
	}
	if w != p.weight {
		now := time.Now().UTC()
		for _, pr := range p.procs {
			pr.Since = now
		}
	}
	p.weight = w
	p.applyRoutesLocked()
	if err := p.saveLocked(); err != nil {
		return &planeErr{Kind: kindFailed, Msg: err.Error()}
	}
	return nil
}

func (p *Plane) promote(ctx context.Context, lease string) error {
	p.mu.Lock()
	if err := p.checkLeaseLocked(lease); err != nil {
		p.mu.Unlock()
		return err
	}
	c, old := p.procs[serving.Canary], p.procs[serving.Stable]
	if c == nil {
		p.mu.Unlock()
		return &planeErr{Kind: kindNoCanary, Msg: "promote: no canary runs"}
	}
	c.Variant = serving.Stable
	if p.weight != 100 {
		c.Since = time.Now().UTC()
	}
	p.procs[serving.Stable] = c
	delete(p.procs, serving.Canary)
	p.weight = 0
	p.applyRoutesLocked()
	serr := p.saveLocked()
	p.mu.Unlock()
	if old != nil {
		p.retire(ctx, old)
	}
	if serr != nil {
		return &planeErr{Kind: kindFailed, Msg: serr.Error()}
	}
	return nil
}

func (p *Plane) abort(ctx context.Context, lease string) error {
	p.mu.Lock()
	if err := p.checkLeaseLocked(lease); err != nil {
		p.mu.Unlock()
		return err
	}
	c := p.procs[serving.Canary]
	delete(p.procs, serving.Canary)
	if p.weight != 0 {
		if s := p.procs[serving.Stable]; s != nil {
			s.Since = time.Now().UTC()
		}
	}
	p.weight = 0
	p.applyRoutesLocked()
	serr := p.saveLocked()
	p.mu.Unlock()
	if c != nil {
		p.retire(ctx, c)
	}
	if serr != nil {
		return &planeErr{Kind: kindFailed, Msg: serr.Error()}
	}
	return nil
}

func (p *Plane) counters(v serving.Variant) (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.procs[v]
	if pr == nil {
		return nil, &planeErr{Kind: kindNoVariant, Msg: fmt.Sprintf("no %s server runs", v)}
	}
	return pr.up.Stats.Counters(), nil
}

// --- the control API ---

// Kinds of control API errors.
const (
	kindHeld       = "held"
	kindPreempted  = "preempted"
	kindLoadFailed = "load-failed"
	kindNoCanary   = "no-canary"
	kindNoVariant  = "no-variant"
	kindBadRequest = "bad-request"
	kindFailed     = "failed"
)

// planeErr is a control API error, as sent on the wire.
type planeErr struct {
	Kind      string `json:"kind"`
	Msg       string `json:"error"`
	Holder    string `json:"holder,omitempty"`
	By        string `json:"by,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Retriable bool   `json:"retriable,omitempty"`
}

func (e *planeErr) Error() string { return e.Msg }

func (e *planeErr) status() int {
	switch e.Kind {
	case kindHeld, kindPreempted, kindNoCanary:
		return http.StatusConflict
	case kindNoVariant:
		return http.StatusNotFound
	case kindBadRequest:
		return http.StatusBadRequest
	case kindLoadFailed:
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// LeaseHeader carries the caller's rollout lease on changes.
const LeaseHeader = "X-Branchml-Lease"

type deployReq struct {
	Variant serving.Variant  `json:"variant"`
	Model   records.ModelRef `json:"model"`
	Argv    []string         `json:"argv"`
}

type leaseReq struct {
	Holder  procid.Holder `json:"holder"`
	Preempt bool          `json:"preempt"`
}

type leaseAnswer struct {
	ID      string `json:"id,omitempty"`
	Current bool   `json:"current"`
	By      string `json:"by,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

func (p *Plane) controlHandler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			pe, ok := err.(*planeErr)
			if !ok {
				pe = &planeErr{Kind: kindFailed, Msg: err.Error()}
			}
			w.WriteHeader(pe.status())
			_ = json.NewEncoder(w).Encode(pe)
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
	decode := func(w http.ResponseWriter, r *http.Request, v any) error {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
			return &planeErr{Kind: kindBadRequest, Msg: "request body: " + err.Error()}
		}
		return nil
	}
	mux.HandleFunc("GET "+ControlPrefix+"state", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		st := p.stateLocked()
		p.mu.Unlock()
		reply(w, st, nil)
	})
	mux.HandleFunc("POST "+ControlPrefix+"lease", func(w http.ResponseWriter, r *http.Request) {
		var req leaseReq
		if err := decode(w, r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		if !req.Holder.Alive() {
			reply(w, nil, &planeErr{Kind: kindBadRequest, Msg: fmt.Sprintf("lease holder %s does not run", req.Holder)})
			return
		}
		id, err := p.acquire(r.Context(), req.Holder, req.Preempt)
		reply(w, leaseAnswer{ID: id, Current: err == nil}, err)
	})
	mux.HandleFunc("GET "+ControlPrefix+"lease", func(w http.ResponseWriter, r *http.Request) {
		cur, pe := p.leaseStatus(r.URL.Query().Get("id"))
		a := leaseAnswer{Current: cur}
		if pe != nil {
			a.By, a.Reason = pe.By, pe.Reason
		}
		reply(w, a, nil)
	})
	mux.HandleFunc("DELETE "+ControlPrefix+"lease", func(w http.ResponseWriter, r *http.Request) {
		p.releaseLease(r.URL.Query().Get("id"))
		reply(w, leaseAnswer{}, nil)
	})
	mux.HandleFunc("POST "+ControlPrefix+"deploy", func(w http.ResponseWriter, r *http.Request) {
		var req deployReq
		if err := decode(w, r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		if req.Variant != serving.Stable && req.Variant != serving.Canary {
			reply(w, nil, &planeErr{Kind: kindBadRequest, Msg: fmt.Sprintf("variant %q: stable or canary", req.Variant)})
			return
		}
		reply(w, struct{}{}, p.deploy(r.Context(), r.Header.Get(LeaseHeader), req.Variant, req.Model, req.Argv))
	})
	mux.HandleFunc("POST "+ControlPrefix+"route", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			CanaryWeight int `json:"canaryWeight"`
		}
		if err := decode(w, r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, struct{}{}, p.route(r.Header.Get(LeaseHeader), req.CanaryWeight))
	})
	mux.HandleFunc("POST "+ControlPrefix+"promote", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, p.promote(r.Context(), r.Header.Get(LeaseHeader)))
	})
	mux.HandleFunc("POST "+ControlPrefix+"abort", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, p.abort(r.Context(), r.Header.Get(LeaseHeader)))
	})
	mux.HandleFunc("GET "+ControlPrefix+"counters", func(w http.ResponseWriter, r *http.Request) {
		c, err := p.counters(serving.Variant(r.URL.Query().Get("variant")))
		reply(w, c, err)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, []byte("Bearer "+p.token)) != 1 {
			writeErr(w, http.StatusUnauthorized, "the control API needs the token of %s", filepath.Join(p.dir, planeFile))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// --- files ---

func mustJSON(v any) []byte {
	raw, _ := json.MarshalIndent(v, "", "  ")
	return append(raw, '\n')
}

func readPlaneInfo(dir string) (planeInfo, error) {
	var pi planeInfo
	raw, err := os.ReadFile(filepath.Join(dir, planeFile))
	if err != nil {
		return pi, err
	}
	if err := json.Unmarshal(raw, &pi); err != nil {
		return pi, fmt.Errorf("%s: not valid JSON (%v)", filepath.Join(dir, planeFile), err)
	}
	return pi, nil
}

// StateError is a state file of the serving plane that cannot be read.
type StateError struct {
	Path string
	Err  error
}

func (e *StateError) Error() string {
	return fmt.Sprintf("%s is corrupted (%v): stop the model servers it lists by hand if any still run, then move it aside (mv %s %s.bad); the next serving plane starts from nothing", e.Path, e.Err, e.Path, e.Path)
}

func (e *StateError) Unwrap() error { return e.Err }

// readStateFile reads state.json; a missing file is an empty state, a
// corrupted one a *StateError.
func readStateFile(dir string) (planeState, error) {
	var st planeState
	path := filepath.Join(dir, stateFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, &StateError{Path: path, Err: err}
	}
	return st, nil
}
