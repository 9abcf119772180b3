package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/deploy/rollout"
)

// fakeClock advances by d on every After, which fires at once; onAfter
// runs first (tests use it to send traffic during the interval).
type fakeClock struct {
	now     time.Time
	onAfter func()
}

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	if c.onAfter != nil {
		c.onAfter()
	}
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// fakeBackend simulates a serving backend: traffic split by weight,
// per-variant error rate and latency, every call recorded.
type fakeBackend struct {
	mu       sync.Mutex
	calls    []string
	weight   int
	models   map[serving.Variant]records.ModelRef
	counters map[serving.Variant]*tfserving.Counters
	errEvery map[serving.Variant]int // every n-th request fails
	errCode  map[serving.Variant]int // with this status (default 500)
	// badEvery makes every n-th request a bad one (the client's fault):
	// both variants answer it 400.
	badEvery int
	latency  map[serving.Variant]time.Duration
	predict  float64
	// metricsErr is returned by Counters(canary) when set.
	metricsErr error
	deployErr  error
	routeErr   error
	n          map[serving.Variant]int
	total      int
}

func newFake(stable int64) *fakeBackend {
	f := &fakeBackend{models: map[serving.Variant]records.ModelRef{}, counters: map[serving.Variant]*tfserving.Counters{},
		errEvery: map[serving.Variant]int{}, errCode: map[serving.Variant]int{}, latency: map[serving.Variant]time.Duration{serving.Stable: 2 * time.Millisecond, serving.Canary: 2 * time.Millisecond},
		n: map[serving.Variant]int{}}
	f.models[serving.Stable] = records.ModelRef{Name: "djia30", Version: stable, Path: "/m"}
	for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
		c := tfserving.Counters{Latency: tfserving.NewHistogram(tfserving.LatencyBounds)}
		f.counters[v] = &c
	}
	return f
}

func (f *fakeBackend) record(s string) { f.calls = append(f.calls, s) }

func (f *fakeBackend) Deploy(_ context.Context, v serving.Variant, m records.ModelRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(fmt.Sprintf("deploy %s v%d", v, m.Version))
	if f.deployErr != nil {
		return f.deployErr
	}
	f.models[v] = m
	return nil
}
func (f *fakeBackend) Route(_ context.Context, w int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(fmt.Sprintf("route %d", w))
	if f.routeErr != nil {
		return f.routeErr
	}
	f.weight = w
	return nil
}
func (f *fakeBackend) Promote(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("promote")
	f.models[serving.Stable] = f.models[serving.Canary]
	delete(f.models, serving.Canary)
	f.weight = 0
	return nil
}
func (f *fakeBackend) Abort(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("abort")
	delete(f.models, serving.Canary)
	f.weight = 0
	return nil
}
func (f *fakeBackend) State(context.Context) (serving.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := serving.State{Backend: "fake", Model: "djia30", CanaryWeight: f.weight}
	for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
		if m, ok := f.models[v]; ok {
			st.Variants = append(st.Variants, serving.VariantState{Variant: v, Model: m, Replicas: 1})
		}
	}
	return st, nil
}
func (f *fakeBackend) Counters(_ context.Context, v serving.Variant) (tfserving.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v == serving.Canary && f.metricsErr != nil {
		return tfserving.Counters{}, f.metricsErr
	}
	return f.counters[v].Clone(), nil
}
func (f *fakeBackend) Predict(_ context.Context, v serving.Variant, body []byte) (*tfserving.PredictResponse, error) {
	out := f.predict
	if out == 0 {
		out = float64(f.models[v].Version)
	}
	return &tfserving.PredictResponse{Predictions: []byte(fmt.Sprintf("[[%g]]", out))}, nil
}

// serve sends n requests through the split: smooth, exact shares.
func (f *fakeBackend) serve(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < n; i++ {
		v := serving.Stable
		if (i*f.weight)%100+f.weight > 99 || f.weight == 100 {
			v = serving.Canary
		}
		if f.weight == 0 {
			v = serving.Stable
		}
		c := f.counters[v]
		f.n[v]++
		f.total++
		code := 200
		if e := f.errEvery[v]; e > 0 && f.n[v]%e == 0 {
			code = f.errCode[v]
			if code == 0 {
				code = 500
			}
		} else if f.badEvery > 0 && f.total%f.badEvery == 0 {
			code = 400
		}
		c.Count(code)
		c.Latency.Observe(f.latency[v])
	}
}

func policy() rollout.Policy {
	return rollout.Policy{Steps: []int{10, 25, 50, 100}, Interval: 100 * time.Millisecond, Threshold: 2,
		MinRequests: 5, SuccessRate: 99, MaxLatencyP99: 250 * time.Millisecond}
}

var v2 = records.ModelRef{Name: "djia30", Version: 2, Path: "/m"}

func TestPromoteOneTickAtATime(t *testing.T) {
	ctx := context.Background()
	f := newFake(1)
	clk := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
	r, err := rollout.New(f, v2, policy(), rollout.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"deploy canary v2", "route 10"}; !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls after Start = %q, want %q", f.calls, want)
	}
	wantWeights := []int{25, 50, 100}
	for i, w := range wantWeights {
		f.serve(200)
		if err := r.Tick(ctx); err != nil {
			t.Fatalf("tick %d: %v", i, err)
		}
		if st := r.Status(); st.Weight != w || st.Phase != rollout.PhaseProgressing {
			t.Fatalf("after tick %d: weight %d phase %s, want %d Progressing", i, st.Weight, st.Phase, w)
		}
	}
	f.serve(200)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.Status()
	if st.Phase != rollout.PhaseSucceeded || st.Stable.Version != 2 || st.Weight != 100 {
		t.Fatalf("final status = %+v", st)
	}
	if want := []string{"deploy canary v2", "route 10", "route 25", "route 50", "route 100", "promote"}; !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls = %q, want %q", f.calls, want)
	}
	var shares []float64
	for _, a := range st.Analyses {
		shares = append(shares, a.Share)
	}
	if want := []float64{10, 25, 50, 100}; !reflect.DeepEqual(shares, want) {
		t.Fatalf("measured shares = %v, want %v", shares, want)
	}
	var events []string
	for _, e := range st.History {
		events = append(events, fmt.Sprintf("%s %d %s", e.Event, e.Weight, e.Message))
	}
	want := []string{"step 10 canary v2 at 10%", "step 25 canary v2 at 25%", "step 50 canary v2 at 50%", "step 100 canary v2 at 100%", "promoted 100 v2 promoted after 4 steps"}
	if !reflect.DeepEqual(events, want) {
		t.Fatalf("history = %q\nwant %q", events, want)
	}
}

func TestRollbackOnErrorsAtThreshold(t *testing.T) {
	ctx := context.Background()
	f := newFake(1)
	f.errEvery[serving.Canary] = 10 // 90% success
	r, _ := rollout.New(f, v2, policy(), rollout.WithClock(&fakeClock{}))
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f.serve(500) // 50 canary requests, 5 failed
	if err := r.Tick(ctx); err != nil {
		t.Fatalf("first failed analysis must not roll back yet: %v", err)
	}
	if st := r.Status(); st.Failures != 1 || st.Weight != 10 || st.Phase != rollout.PhaseProgressing {
		t.Fatalf("after one failure: %+v", st)
	}
	f.serve(500)
	err := r.Tick(ctx)
	if !errors.Is(err, rollout.ErrRolledBack) {
		t.Fatalf("err = %v, want ErrRolledBack", err)
	}
	st := r.Status()
	wantReason := "2 failed analyses (threshold 2), last at 10%: success rate 90.00% < 99.00% (5 of 50 failed)"
	if st.Phase != rollout.PhaseRolledBack || st.Reason != wantReason || st.Weight != 0 {
		t.Fatalf("status = %q %q %d\nwant reason %q", st.Phase, st.Reason, st.Weight, wantReason)
	}
	if want := []string{"deploy canary v2", "route 10", "abort"}; !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls = %q", f.calls)
	}
	// Stable served throughout: every stable request succeeded.
	if c := f.counters[serving.Stable]; c.Requests != 900 || c.Codes[200] != 900 {
		t.Fatalf("stable counters = %d/%v", c.Requests, c.Codes)
	}
}

func TestRollbackOnLatencyAndNoData(t *testing.T) {
	ctx := context.Background()
	t.Run("slow", func(t *testing.T) {
		f := newFake(1)
		f.latency[serving.Canary] = 300 * time.Millisecond
		p := policy()
		p.Threshold = 1
		r, _ := rollout.New(f, v2, p, rollout.WithClock(&fakeClock{}))
		_ = r.Start(ctx)
		f.serve(100)
		err := r.Tick(ctx)
		if !errors.Is(err, rollout.ErrRolledBack) || !strings.Contains(r.Status().Reason, "p99 latency") || !strings.Contains(r.Status().Reason, "> 250ms") {
			t.Fatalf("err = %v reason %q", err, r.Status().Reason)
		}
	})
	t.Run("no data holds the step, then fails for lack of traffic", func(t *testing.T) {
		f := newFake(1)
		p := policy()
		p.Threshold, p.MaxInconclusive = 1, 3
		p.NoTrafficHint = "send predict requests to http://gw/v1/models/djia30:predict"
		r, _ := rollout.New(f, v2, p, rollout.WithClock(&fakeClock{}))
		_ = r.Start(ctx)
		for i := 0; i < 2; i++ {
			if err := r.Tick(ctx); err != nil {
				t.Fatalf("tick %d: %v", i, err)
			}
			if st := r.Status(); st.Phase != rollout.PhaseProgressing || st.Failures != 0 || st.Weight != 10 {
				t.Fatalf("after inconclusive tick %d: %+v", i, st)
			}
		}
		st := r.Status()
		want := "waiting for traffic at 10%: 0 canary requests in the interval, need 5; send predict requests to http://gw/v1/models/djia30:predict"
		if last := st.History[len(st.History)-1]; last.Event != rollout.EventWaiting || last.Message != want {
			t.Fatalf("history = %+v", st.History)
		}
		// Traffic comes: the step goes on, judged on the whole wait.
		f.serve(100)
		if err := r.Tick(ctx); err != nil || r.Status().Weight != 25 {
			t.Fatalf("after traffic: %v, %+v", err, r.Status())
		}
		for i := 0; i < 2; i++ {
			_ = r.Tick(ctx)
		}
		err := r.Tick(ctx)
		var re *rollout.Error
		if !errors.Is(err, rollout.ErrNoTraffic) || !errors.As(err, &re) || r.Status().Phase != rollout.PhaseFailed || f.calls[len(f.calls)-1] != "abort" {
			t.Fatalf("err = %v, status %+v, calls %q", err, r.Status(), f.calls)
		}
		waits := 0
		for _, e := range r.Status().History {
			if e.Event == rollout.EventWaiting {
				waits++
			}
		}
		if waits != 2 {
			t.Fatalf("waiting events = %d, want one per held step", waits)
		}
	})
	t.Run("temporary metrics error is inconclusive", func(t *testing.T) {
		f := newFake(1)
		r, _ := rollout.New(f, v2, policy(), rollout.WithClock(&fakeClock{}))
		_ = r.Start(ctx)
		f.metricsErr = &tfserving.Error{Method: "GET", URL: "http://x/monitoring/prometheus/metrics", StatusCode: 503}
		f.serve(100)
		if err := r.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if st := r.Status(); st.Failures != 0 || st.Weight != 10 || !strings.HasPrefix(st.Analyses[0].NoData, "metrics unreadable: GET http://x/monitoring/prometheus/metrics: 503") {
			t.Fatalf("status = %+v", st)
		}
	})
	t.Run("permanent metrics error fails and aborts", func(t *testing.T) {
		f := newFake(1)
		r, _ := rollout.New(f, v2, policy(), rollout.WithClock(&fakeClock{}))
		_ = r.Start(ctx)
		f.metricsErr = &tfserving.Error{Method: "GET", URL: "http://x/m", StatusCode: 403}
		err := r.Tick(ctx)
		var re *rollout.Error
		if !errors.As(err, &re) || re.Retriable || r.Status().Phase != rollout.PhaseFailed || f.calls[len(f.calls)-1] != "abort" {
			t.Fatalf("err = %v, calls %q", err, f.calls)
		}
	})
}

func TestSmokeFailureRollsBackBeforeTraffic(t *testing.T) {
	f := newFake(1)
	f.predict = 0.25
	p := policy()
	p.Smoke = []config.SmokeTest{{Name: "up-day", Request: map[string]any{"instances": []any{[]any{1.0}}}, Expect: [][]float64{{0.75}}, Tolerance: 0.1}}
	r, _ := rollout.New(f, v2, p, rollout.WithClock(&fakeClock{}))
	err := r.Start(context.Background())
	want := "smoke tests failed before traffic moved: smoke up-day: prediction [0][0] = 0.25, want 0.75 ± 0.1"
	if !errors.Is(err, rollout.ErrRolledBack) || r.Status().Reason != want {
		t.Fatalf("err = %v\nreason %q\nwant   %q", err, r.Status().Reason, want)
	}
	if want := []string{"deploy canary v2", "abort"}; !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls = %q", f.calls)
	}
}

func TestRunWithFakeClock(t *testing.T) {
	f := newFake(1)
	clk := &fakeClock{now: time.Unix(0, 0)}
	clk.onAfter = func() { f.serve(100) }
	r, _ := rollout.New(f, v2, policy(), rollout.WithClock(clk))
	st, err := r.Run(context.Background())
	if err != nil || st.Phase != rollout.PhaseSucceeded {
		t.Fatalf("Run = %+v, %v", st, err)
	}
	if got := clk.now.Sub(time.Unix(0, 0)); got != 400*time.Millisecond {
		t.Fatalf("rollout took %v of fake time, want 4 intervals (400ms)", got)
	}
}

func TestRunDeployFailure(t *testing.T) {
	f := newFake(1)
	f.deployErr = &serving.Error{Op: "start canary", Err: errors.New("exec: no such file"), Retriable: false}
	r, _ := rollout.New(f, v2, policy(), rollout.WithClock(&fakeClock{}))
	_, err := r.Run(context.Background())
	var re *rollout.Error
	if !errors.As(err, &re) || re.Retriable || re.Op != "deploy canary djia30 v2" {
		t.Fatalf("err = %#v", err)
	}
}

func TestPolicyValidate(t *testing.T) {
	err := rollout.Policy{Steps: []int{50, 20, 120}}.Validate()
	want := []string{"steps[1] = 20", "steps[2] = 120", "interval must be positive", "threshold must be at least 1"}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate error %v lacks %q", err, w)
		}
	}
}

func TestAB(t *testing.T) {
	f := newFake(1)
	f.latency[serving.Canary] = 1 * time.Millisecond
	f.latency[serving.Stable] = 100 * time.Millisecond
	clk := &fakeClock{}
	clk.onAfter = func() { f.serve(100) }
	rep, err := rollout.RunAB(context.Background(), f, v2, rollout.ABPolicy{Weight: 50, Requests: 300, Interval: 50 * time.Millisecond, Bounds: policy()}, rollout.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	if rep.CandidateAnalysis.CanaryRequests != 150 || rep.StableAnalysis.CanaryRequests != 150 || rep.Verdict != "candidate-better" || rep.Elapsed != 150*time.Millisecond {
		t.Fatalf("report = %+v", rep)
	}
	if want := []string{"deploy canary v2", "route 50", "abort"}; !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls = %q", f.calls)
	}
}

// Cancelling ctx (SIGINT) mid-rollout removes the canary, ends in
// PhaseInterrupted with an "interrupted" event and no verdict on the cut
// interval, and returns an error wrapping context.Canceled.
func TestRunInterrupted(t *testing.T) {
	f := newFake(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := &fakeClock{now: time.Unix(0, 0)}
	afters := 0
	clk.onAfter = func() {
		f.serve(100)
		if afters++; afters == 2 {
			cancel()
		}
	}
	r, _ := rollout.New(f, v2, policy(), rollout.WithClock(clk))
	st, err := r.Run(ctx)
	if !errors.Is(err, context.Canceled) || st.Phase != rollout.PhaseInterrupted || st.Weight != 0 || st.Failures != 0 {
		t.Fatalf("Run = %+v, %v", st, err)
	}
	if want := "interrupted at 25% (context canceled): canary v2 removed, stable v1 serves"; st.Reason != want {
		t.Fatalf("reason = %q, want %q", st.Reason, want)
	}
	var kinds []string
	for _, ev := range st.History {
		kinds = append(kinds, ev.Event)
	}
	if got := strings.Join(kinds, ","); got != "step,step,interrupted" {
		t.Fatalf("events = %s", got)
	}
	if f.calls[len(f.calls)-1] != "abort" {
		t.Fatalf("calls = %q", f.calls)
	}
	if s, _ := f.State(context.Background()); s.Get(serving.Canary) != nil || s.CanaryWeight != 0 {
		t.Fatalf("state = %+v", s)
	}
}

// The one definition of a failed request: a canary that answers 400 (or
// 404) where the stable version answers 200 fails; bad requests that both
// answer 400 alike do not fail the canary; 429 and 5xx always count; a
// client that gave up (499) counts neither way.
func TestErrorDefinition(t *testing.T) {
	ctx := context.Background()
	run := func(t *testing.T, setup func(f *fakeBackend)) (rollout.Status, error) {
		f := newFake(1)
		setup(f)
		clk := &fakeClock{}
		clk.onAfter = func() { f.serve(400) }
		r, _ := rollout.New(f, v2, policy(), rollout.WithClock(clk))
		return r.Run(ctx)
	}
	for _, tc := range []struct {
		name   string
		setup  func(f *fakeBackend)
		phase  string
		reason string
	}{
		{"canary answers 400 to every request", func(f *fakeBackend) { f.errEvery[serving.Canary], f.errCode[serving.Canary] = 1, 400 },
			rollout.PhaseRolledBack, "last at 10%: success rate 0.00% < 99.00% (40 of 40 failed: 0 server errors, 40 client errors (4xx) beyond the stable version's rate)"},
		{"canary answers 404 (version not loaded)", func(f *fakeBackend) { f.errEvery[serving.Canary], f.errCode[serving.Canary] = 1, 404 },
			rollout.PhaseRolledBack, "success rate 0.00%"},
		{"canary overloaded (429)", func(f *fakeBackend) { f.errEvery[serving.Canary], f.errCode[serving.Canary] = 10, 429 },
			rollout.PhaseRolledBack, "success rate 90.00% < 99.00% (4 of 40 failed)"},
		{"clients send bad bodies to both alike", func(f *fakeBackend) { f.badEvery = 7 },
			rollout.PhaseSucceeded, "v2 promoted after 4 steps"},
		{"clients give up (499)", func(f *fakeBackend) { f.errEvery[serving.Canary], f.errCode[serving.Canary] = 2, 499 },
			rollout.PhaseSucceeded, "v2 promoted after 4 steps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := run(t, tc.setup)
			if st.Phase != tc.phase || !strings.Contains(st.Reason, tc.reason) {
				t.Fatalf("phase %s reason %q (err %v); want %s with %q", st.Phase, st.Reason, err, tc.phase, tc.reason)
			}
			if (tc.phase == rollout.PhaseRolledBack) != errors.Is(err, rollout.ErrRolledBack) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	// At 100% the stable version gets nothing: its 4xx rate measured at
	// the earlier steps is the measure (1 in 7 bad bodies throughout: pass).
	f := newFake(1)
	f.badEvery = 7
	clk := &fakeClock{}
	clk.onAfter = func() { f.serve(400) }
	r, _ := rollout.New(f, v2, policy(), rollout.WithClock(clk))
	st, err := r.Run(ctx)
	if err != nil || st.Phase != rollout.PhaseSucceeded {
		t.Fatalf("bad bodies at every step: %v %+v", err, st)
	}
	last := st.Analyses[len(st.Analyses)-1]
	if last.Weight != 100 || last.StableRequests != 0 || last.CanaryClientErrors != 57 || last.CanaryErrors != 0 || last.SuccessRate != 100 {
		t.Fatalf("analysis at 100%% = %+v", last)
	}
}

func TestClassify(t *testing.T) {
	for code, want := range map[int]rollout.Outcome{200: rollout.Success, 204: rollout.Success, 400: rollout.ClientError, 404: rollout.ClientError,
		409: rollout.ClientError, 429: rollout.ServerError, 499: rollout.Ignored, 408: rollout.Ignored, 500: rollout.ServerError,
		502: rollout.ServerError, 503: rollout.ServerError, 504: rollout.ServerError, 0: rollout.ServerError} {
		if got := rollout.Classify(code); got != want {
			t.Errorf("Classify(%d) = %v, want %v", code, got, want)
		}
	}
}

// A version that cannot load is a failed canary: rolled back at once
// (exit 3 for the stage), not a failure of the serving system.
func TestCanaryThatCannotLoadIsRolledBack(t *testing.T) {
	f := newFake(1)
	f.deployErr = &serving.Error{Op: "deploy canary djia30 v2", Err: fmt.Errorf("%w: model djia30 version 2 failed to load: INVALID_ARGUMENT: bad", serving.ErrLoadFailed)}
	r, _ := rollout.New(f, v2, policy(), rollout.WithClock(&fakeClock{}))
	st, err := r.Run(context.Background())
	if !errors.Is(err, rollout.ErrRolledBack) || !errors.Is(err, serving.ErrLoadFailed) || st.Phase != rollout.PhaseRolledBack {
		t.Fatalf("Run = %v, %+v", err, st)
	}
	if st.Reason != "canary v2 cannot load: model djia30 version 2 failed to load: INVALID_ARGUMENT: bad" {
		t.Fatalf("reason = %q", st.Reason)
	}
	if len(st.History) != 1 || st.History[0].Event != rollout.EventRolledBack || len(st.Analyses) != 0 {
		t.Fatalf("history = %+v", st.History)
	}
}

// A rollout whose lease a manual rollback took ends RolledBack naming the
// rollback, not blaming the model: by a refused change, or by its context
// ending with the preemption as cause.
func TestPreemptedByManualRollback(t *testing.T) {
	pe := &serving.PreemptedError{By: "pid 77 (branchml-deploy rollback)", Reason: "canary djia30 v2 removed, traffic back to stable"}
	f := newFake(1)
	clk := &fakeClock{}
	clk.onAfter = func() { f.serve(400); f.routeErr = &serving.Error{Op: "route", Err: pe} }
	r, _ := rollout.New(f, v2, policy(), rollout.WithClock(clk))
	st, err := r.Run(context.Background())
	var got *serving.PreemptedError
	if !errors.Is(err, rollout.ErrRolledBack) || !errors.As(err, &got) || st.Phase != rollout.PhaseRolledBack ||
		st.Reason != "preempted at 10% by pid 77 (branchml-deploy rollback): canary v2 removed, not judged; v1 serves" {
		t.Fatalf("by refusal: %v, %+v", err, st)
	}
	f = newFake(1)
	ctx, cancel := context.WithCancelCause(context.Background())
	clk = &fakeClock{}
	clk.onAfter = func() { f.serve(400); cancel(pe) }
	r, _ = rollout.New(f, v2, policy(), rollout.WithClock(clk))
	st, err = r.Run(ctx)
	if !errors.Is(err, rollout.ErrRolledBack) || errors.Is(err, context.Canceled) || st.Phase != rollout.PhaseRolledBack || !strings.HasPrefix(st.Reason, "preempted at ") {
		t.Fatalf("by cause: %v, %+v", err, st)
	}
}

// rebalancing is a backend whose split drifts (a serving.Rebalancer).
type rebalancing struct{ *fakeBackend }

func (r rebalancing) Rebalance(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record(fmt.Sprintf("rebalance %d", r.weight))
	return nil
}

// A step held (a failed analysis below the threshold, an inconclusive one)
// rebalances the split; a step passed routes the next weight instead.
func TestHeldStepRebalances(t *testing.T) {
	ctx := context.Background()
	f := newFake(1)
	b := rebalancing{f}
	r, _ := rollout.New(b, v2, policy(), rollout.WithClock(&fakeClock{}))
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Tick(ctx); err != nil { // no traffic: inconclusive, held
		t.Fatal(err)
	}
	f.errEvery[serving.Canary] = 10
	f.serve(500)
	if err := r.Tick(ctx); err != nil { // failed once: held
		t.Fatal(err)
	}
	f.errEvery[serving.Canary] = 0
	f.serve(500)
	if err := r.Tick(ctx); err != nil { // passed: the next step
		t.Fatal(err)
	}
	want := []string{"deploy canary v2", "route 10", "rebalance 10", "rebalance 10", "route 25"}
	if !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls = %q\nwant    %q", f.calls, want)
	}
}

// An A/B experiment rebalances its split at each interval.
func TestABRebalances(t *testing.T) {
	f := newFake(1)
	clk := &fakeClock{}
	clk.onAfter = func() { f.serve(100) }
	if _, err := rollout.RunAB(context.Background(), rebalancing{f}, v2, rollout.ABPolicy{Weight: 50, Requests: 300, Interval: 50 * time.Millisecond, Bounds: policy()}, rollout.WithClock(clk)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"deploy canary v2", "route 50", "rebalance 50", "rebalance 50", "rebalance 50", "abort"}; !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls = %q\nwant    %q", f.calls, want)
	}
}
