package local_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/local"
	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
	fake "github.com/branchml/branchml/agents/internal/fake/tfserving"
	"github.com/branchml/branchml/agents/internal/procid"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
	"github.com/branchml/branchml/agents/stages/deploy/rollout"
)

var fakeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fake-tfserving-")
	if err != nil {
		panic(err)
	}
	fakeBin = filepath.Join(dir, "fake-tfserving")
	out, err := exec.Command("go", "build", "-o", fakeBin, "github.com/branchml/branchml/agents/internal/fake/tfserving/cmd/fake-tfserving").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build fake-tfserving: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const body = `{"instances":[[0.1,0.2,0.3]]}`

func testLog(t *testing.T) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// models makes a model base path with the given versions; behaviors go to
// <v>/behavior.json.
func models(t *testing.T, behaviors map[int64]string, versions ...int64) string {
	base := filepath.Join(t.TempDir(), "models", "djia30")
	for _, v := range versions {
		d := filepath.Join(base, fmt.Sprint(v))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if b := behaviors[v]; b != "" {
			if err := os.WriteFile(filepath.Join(d, "behavior.json"), []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return base
}

// hosted is a backend that hosts the plane of stateDir (shut down at the
// end of the test).
func hosted(t *testing.T, stateDir string, opts ...local.Option) *local.Backend {
	t.Helper()
	b, err := local.New("djia30", []string{fakeBin}, append([]local.Option{local.WithStateDir(stateDir), local.WithLogger(testLog(t)),
		local.WithReadyTimeout(20 * time.Second), local.WithHost()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// client is another agent run's backend on the same plane.
func client(t *testing.T, stateDir string) *local.Backend {
	t.Helper()
	b, err := local.New("djia30", []string{fakeBin}, local.WithStateDir(stateDir), local.WithLogger(testLog(t)), local.WithReadyTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

func ref(base string, v int64) records.ModelRef {
	return records.ModelRef{Name: "djia30", Version: v, Path: base}
}

func TestGatewaySplitsExactlyAndPinsVersions(t *testing.T) {
	stable, canary := fake.New("djia30"), fake.New("djia30")
	stable.SetState(1, tfs.StateAvailable)
	canary.SetState(2, tfs.StateAvailable)
	s1, s2 := httptest.NewServer(stable), httptest.NewServer(canary)
	defer s1.Close()
	defer s2.Close()
	gw := local.NewGateway()
	url, err := gw.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close(context.Background())
	us, uc := local.NewUpstream(s1.URL), local.NewUpstream(s2.URL)
	for _, w := range []int{10, 25, 50} {
		gw.SetRoutes(local.Route{Variant: serving.Stable, Version: 1, Upstream: us, Weight: 100 - w}, local.Route{Variant: serving.Canary, Version: 2, Upstream: uc, Weight: w})
		rep, err := loadgen.Run(context.Background(), loadgen.Options{URL: url + "/v1/models/djia30:predict", Body: []byte(body), Requests: 1000, Concurrency: 4, VariantHeader: local.VariantHeader})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Failed != 0 || rep.ByVariant["canary"] != 10*w || rep.ByVariant["stable"] != 1000-10*w {
			t.Fatalf("weight %d: report %+v", w, rep)
		}
	}
	if c := uc.Stats.Counters(); c.Requests != 850 || c.Codes[200] != 850 || c.Latency.Count != 850 {
		t.Fatalf("canary stats = %+v", c)
	}
	// Pinned requests go to the server of that version, whatever the
	// weights: all 20 of each (before: 404 from the other server 16 of 20).
	gw.SetRoutes(local.Route{Variant: serving.Stable, Version: 1, Upstream: us, Weight: 90}, local.Route{Variant: serving.Canary, Version: 2, Upstream: uc, Weight: 10})
	c, _ := tfs.New(url)
	for _, sel := range []tfs.Selector{{Version: 2}, {Label: "canary"}, {Version: 1}, {Label: "stable"}} {
		want := "[[2]]"
		if sel.Version == 1 || sel.Label == "stable" {
			want = "[[1]]"
		}
		for i := 0; i < 20; i++ {
			p, err := c.Predict(context.Background(), "djia30", sel, []byte(body))
			if err != nil || string(p.Predictions) != want {
				t.Fatalf("pinned %+v request %d: %v, %v", sel, i, p, err)
			}
		}
	}
	if got := canary.Calls(); got[len(got)-1].Path != "/v1/models/djia30/versions/2:predict" {
		t.Fatalf("a label request reaches the server as %q (it knows its version only)", got[len(got)-1].Path)
	}
	_, err = c.Predict(context.Background(), "djia30", tfs.Selector{Version: 7}, []byte(body))
	var te *tfs.Error
	if !errors.As(err, &te) || te.StatusCode != 404 || te.Message != "Servable not found for request: Specific(djia30, 7)" {
		t.Fatalf("unknown version = %v", err)
	}
	// No routes: 503 with TF Serving's error body.
	gw.SetRoutes()
	rep, _ := loadgen.Run(context.Background(), loadgen.Options{URL: url + "/v1/models/djia30:predict", Body: []byte(body), Requests: 1})
	if rep.Failed != 1 || rep.Errors[0] != `503: {"error":"no model version is serving"}`+"\n" {
		t.Fatalf("no-route report = %+v", rep)
	}
	if _, err := local.NewGateway().Listen("0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Fatalf("listen on all interfaces: %v", err)
	}
}

// steadyLoad runs load against url until stop is called and returns the report.
func steadyLoad(t *testing.T, url string) (stop func() loadgen.Report) {
	ctx, cancel := context.WithCancel(context.Background())
	var rep loadgen.Report
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rep, _ = loadgen.Run(ctx, loadgen.Options{URL: url + "/v1/models/djia30:predict", Body: []byte(body), Concurrency: 4, Rate: 600, VariantHeader: local.VariantHeader})
	}()
	return func() loadgen.Report { cancel(); wg.Wait(); return rep }
}

func policy() rollout.Policy {
	return rollout.Policy{Steps: []int{10, 25, 50, 100}, Interval: 150 * time.Millisecond, Threshold: 2, MinRequests: 5, SuccessRate: 99, MaxLatencyP99: time.Second}
}

// A rollout by one agent run, on the plane another process hosts, under
// steady load: zero failed requests, each step's share as set, the old
// stable stopped after promotion.
func TestCanaryUnderSteadyLoadZeroDowntime(t *testing.T) {
	ctx := context.Background()
	base := models(t, nil, 1, 2)
	state := t.TempDir()
	owner := hosted(t, state)
	if err := owner.Deploy(ctx, serving.Stable, ref(base, 1)); err != nil {
		t.Fatal(err)
	}
	st0, _ := owner.State(ctx)
	oldPID := st0.Get(serving.Stable).PID
	stop := steadyLoad(t, owner.URL())
	time.Sleep(100 * time.Millisecond)
	agent := client(t, state)
	if agent.URL() != owner.URL() || agent.Hosted() {
		t.Fatalf("the agent's backend uses %s (hosted %v), the plane serves %s", agent.URL(), agent.Hosted(), owner.URL())
	}
	r, err := rollout.New(agent, ref(base, 2), policy(), rollout.WithLogger(testLog(t)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Run(ctx)
	time.Sleep(100 * time.Millisecond) // keep load on the promoted server
	rep := stop()
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	if rep.Failed != 0 || rep.Sent < 300 {
		t.Fatalf("load: %d sent, %d failed (%q); want 0 failed of at least 300", rep.Sent, rep.Failed, rep.Errors)
	}
	var weights []int
	for _, a := range st.Analyses {
		if a.Passed() {
			weights = append(weights, a.Weight)
			if math.Abs(a.Share-float64(a.Weight)) > 5 {
				t.Errorf("step %d%%: measured share %.2f%% (%d canary of %d)", a.Weight, a.Share, a.CanaryRequests, a.CanaryRequests+a.StableRequests)
			}
		}
	}
	if fmt.Sprint(weights) != "[10 25 50 100]" {
		t.Fatalf("passed analyses at weights %v, want [10 25 50 100]: %+v", weights, st.Analyses)
	}
	now, _ := owner.State(ctx)
	if len(now.Variants) != 1 || now.Get(serving.Stable).Model.Version != 2 || now.CanaryWeight != 0 || now.Get(serving.Stable).Since.IsZero() {
		t.Fatalf("state after promotion = %+v", now)
	}
	if err := syscall.Kill(oldPID, 0); err == nil {
		t.Fatalf("old stable pid %d still runs", oldPID)
	}
	c, _ := tfs.New(owner.URL())
	p, err := c.Predict(ctx, "djia30", tfs.Selector{}, []byte(body))
	if err != nil || string(p.Predictions) != "[[2]]" {
		t.Fatalf("predict after promotion = %v, %v", p, err)
	}
}

func TestBadCanaryRolledBackWithinOneInterval(t *testing.T) {
	ctx := context.Background()
	base := models(t, map[int64]string{3: `{"failEvery":2}`}, 1, 3)
	b := hosted(t, t.TempDir())
	if err := b.Deploy(ctx, serving.Stable, ref(base, 1)); err != nil {
		t.Fatal(err)
	}
	stop := steadyLoad(t, b.URL())
	r, _ := rollout.New(b, ref(base, 3), policy(), rollout.WithLogger(testLog(t)))
	st, err := r.Run(ctx)
	rep := stop()
	if !errors.Is(err, rollout.ErrRolledBack) || st.Phase != rollout.PhaseRolledBack {
		t.Fatalf("rollout = %v, %v; want rolled back", st.Phase, err)
	}
	if !strings.Contains(st.Reason, "2 failed analyses (threshold 2), last at 10%: success rate") {
		t.Fatalf("reason = %q", st.Reason)
	}
	now, _ := b.State(ctx)
	if len(now.Variants) != 1 || now.Get(serving.Stable).Model.Version != 1 {
		t.Fatalf("state after rollback = %+v", now)
	}
	if rep.ByVariant["stable"] == 0 || rep.Failed == 0 {
		t.Fatalf("load = %+v", rep)
	}
	sc, _ := b.Counters(ctx, serving.Stable)
	if sc.Requests == 0 || sc.Codes[200] != sc.Requests {
		t.Fatalf("stable counters = %+v", sc)
	}
}

// A canary answering 400 to everything (the stable version answers 200)
// is rolled back; before, the gateway counted only 5xx and promoted it.
func TestCanaryAnswering400IsRolledBack(t *testing.T) {
	ctx := context.Background()
	base := models(t, map[int64]string{4: `{"status":400}`}, 1, 4)
	b := hosted(t, t.TempDir())
	if err := b.Deploy(ctx, serving.Stable, ref(base, 1)); err != nil {
		t.Fatal(err)
	}
	stop := steadyLoad(t, b.URL())
	r, _ := rollout.New(b, ref(base, 4), policy(), rollout.WithLogger(testLog(t)))
	st, err := r.Run(ctx)
	stop()
	if !errors.Is(err, rollout.ErrRolledBack) || !strings.Contains(st.Reason, "client errors (4xx) beyond the stable version's rate") {
		t.Fatalf("rollout = %v, %q", err, st.Reason)
	}
	if now, _ := b.State(ctx); now.Get(serving.Stable).Model.Version != 1 || now.Get(serving.Canary) != nil {
		t.Fatalf("state = %+v", now)
	}
}

// A version that cannot load fails at once with serving.ErrLoadFailed:
// its directory missing, or the server reporting the load failed.
func TestVersionThatCannotLoadFailsAtOnce(t *testing.T) {
	ctx := context.Background()
	base := models(t, map[int64]string{6: `{"loadError":"Could not parse saved_model.pb"}`}, 1, 6)
	b := hosted(t, t.TempDir(), local.WithReadyTimeout(time.Minute))
	if err := b.Deploy(ctx, serving.Stable, ref(base, 1)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		v    int64
		want string
	}{{99, "no version directory " + filepath.Join(base, "99")}, {6, "model djia30 version 6 failed to load: INVALID_ARGUMENT: Could not parse saved_model.pb"}} {
		start := time.Now()
		err := b.Deploy(ctx, serving.Canary, ref(base, tc.v))
		if !errors.Is(err, serving.ErrLoadFailed) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("deploy v%d: %v", tc.v, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("deploy v%d took %v to fail", tc.v, d)
		}
	}
	if now, _ := b.State(ctx); len(now.Variants) != 1 || now.Get(serving.Stable).Model.Version != 1 {
		t.Fatalf("state = %+v", now)
	}
}

// Every server listens on loopback: the plane tells it so, and refuses one
// that listens elsewhere.
func TestServersListenOnLoopbackOnly(t *testing.T) {
	ctx := context.Background()
	base := models(t, nil, 1)
	b := hosted(t, t.TempDir())
	if err := b.Deploy(ctx, serving.Stable, ref(base, 1)); err != nil {
		t.Fatal(err)
	}
	st, _ := b.State(ctx)
	if ep := st.Get(serving.Stable).Endpoint; !strings.HasPrefix(ep, "http://127.0.0.1:") {
		t.Fatalf("stable listens on %s", ep)
	}
	if cl := procid.Cmdline(st.Get(serving.Stable).PID); !strings.Contains(cl, "--rest_api_host=127.0.0.1") {
		t.Fatalf("server command line %q", cl)
	}
	wide, err := local.New("djia30", []string{"/bin/sh", "-c", `exec "$0" "$@" --rest_api_host=0.0.0.0`, fakeBin},
		local.WithStateDir(t.TempDir()), local.WithLogger(testLog(t)), local.WithHost())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wide.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer wide.Close(ctx)
	if err := wide.Deploy(ctx, serving.Stable, ref(base, 1)); err == nil || !strings.Contains(err.Error(), "not on loopback") {
		t.Fatalf("a server on 0.0.0.0: %v", err)
	}
}

// The rollout lease: one holder at a time, named; a preempting holder
// (a manual rollback) removes the canary with no failed request and the
// old holder's changes are refused as preempted.
func TestLeaseHeldAndPreempted(t *testing.T) {
	ctx := context.Background()
	base := models(t, nil, 1, 2)
	state := t.TempDir()
	owner := hosted(t, state)
	if err := owner.Deploy(ctx, serving.Stable, ref(base, 1)); err != nil {
		t.Fatal(err)
	}
	rollout1, rollback := client(t, state), client(t, state)
	l1, err := rollout1.Lease(ctx, serving.LeaseRequest{What: "branchml-deploy run: djia30 v2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rollout1.Deploy(ctx, serving.Canary, ref(base, 2)); err != nil {
		t.Fatal(err)
	}
	if err := rollout1.Route(ctx, 50); err != nil {
		t.Fatal(err)
	}
	// Another holder is refused, naming the holder; changes without the
	// lease are refused too.
	_, err = rollback.Lease(ctx, serving.LeaseRequest{What: "second deploy"})
	var he *serving.HeldError
	if !errors.As(err, &he) || !strings.HasPrefix(he.Holder, fmt.Sprintf("pid %d (branchml-deploy run: djia30 v2, since ", os.Getpid())) ||
		!strings.HasPrefix(err.Error(), "rollout of djia30 in progress by pid ") {
		t.Fatalf("second lease = %v", err)
	}
	if err := rollback.Route(ctx, 0); !errors.As(err, &he) {
		t.Fatalf("a change without the lease = %v", err)
	}
	// Waiting: told once, and gets it once it is released.
	var told []string
	got := make(chan error, 1)
	go func() {
		l, err := rollback.Lease(ctx, serving.LeaseRequest{What: "waiter", Wait: true, OnWait: func(h string) { told = append(told, h) }})
		if err == nil {
			err = l.Release(ctx)
		}
		got <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil || len(told) != 1 || !strings.Contains(told[0], "branchml-deploy run") {
		t.Fatalf("waiter: %v, told %q", err, told)
	}
	// Preemption under load.
	l1, err = rollout1.Lease(ctx, serving.LeaseRequest{What: "branchml-deploy run: djia30 v2"})
	if err != nil {
		t.Fatal(err)
	}
	stop := steadyLoad(t, owner.URL())
	time.Sleep(200 * time.Millisecond)
	l2, err := rollback.Lease(ctx, serving.LeaseRequest{What: "branchml-deploy rollback", Preempt: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release(ctx)
	time.Sleep(200 * time.Millisecond)
	rep := stop()
	if rep.Failed != 0 || rep.ByVariant["canary"] == 0 {
		t.Fatalf("load across the preemption: %+v", rep)
	}
	if now, _ := owner.State(ctx); now.Get(serving.Canary) != nil || now.CanaryWeight != 0 {
		t.Fatalf("the canary survived the preemption: %+v", now)
	}
	select {
	case <-l1.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the preempted holder was not told")
	}
	var pe *serving.PreemptedError
	if !errors.As(l1.Err(), &pe) || !strings.Contains(pe.By, "branchml-deploy rollback") || pe.Reason != "canary djia30 v2 removed, traffic back to stable" {
		t.Fatalf("lost lease: %v", l1.Err())
	}
	if err := rollout1.Route(ctx, 100); !errors.As(err, &pe) {
		t.Fatalf("a change by the preempted holder = %v", err)
	}
}

// A server that exits by itself leaves the routes at once: the requests
// after it go to the stable version.
func TestServerExitingIsUnrouted(t *testing.T) {
	ctx := context.Background()
	base := models(t, nil, 1, 2)
	b := hosted(t, t.TempDir())
	if err := b.Deploy(ctx, serving.Stable, ref(base, 1)); err != nil {
		t.Fatal(err)
	}
	if err := b.Deploy(ctx, serving.Canary, ref(base, 2)); err != nil {
		t.Fatal(err)
	}
	if err := b.Route(ctx, 50); err != nil {
		t.Fatal(err)
	}
	st, _ := b.State(ctx)
	_ = syscall.Kill(st.Get(serving.Canary).PID, syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if now, _ := b.State(ctx); now.Get(serving.Canary) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead canary is still routed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rep, _ := loadgen.Run(ctx, loadgen.Options{URL: b.URL() + "/v1/models/djia30:predict", Body: []byte(body), Requests: 200, Concurrency: 4, VariantHeader: local.VariantHeader})
	if rep.Failed != 0 || rep.ByVariant["stable"] != 200 {
		t.Fatalf("after the canary died: %+v", rep)
	}
}

// One plane per model per state directory: a second is refused, naming the
// owner; ReadState from another process reads the live plane; after the
// owner stops, nothing serves and nothing runs.
func TestOnePlaneAndReadState(t *testing.T) {
	ctx := context.Background()
	base := models(t, nil, 1)
	state := t.TempDir()
	b := hosted(t, state, local.WithOwner("branchml quickstart --serve"))
	if err := b.Deploy(ctx, serving.Stable, ref(base, 1)); err != nil {
		t.Fatal(err)
	}
	p, _ := local.NewPlane("djia30", state, local.WithLogger(testLog(t)))
	_, err := p.Start(ctx)
	var re *local.RunningError
	if !errors.As(err, &re) || re.URL != b.URL() || !strings.Contains(err.Error(), "(branchml quickstart --serve, since ") {
		t.Fatalf("second plane = %v", err)
	}
	st, err := local.ReadState(ctx, state, "djia30")
	if err != nil || st.Get(serving.Stable) == nil || st.Endpoint != b.URL() {
		t.Fatalf("ReadState = %+v, %v", st, err)
	}
	pid := st.Get(serving.Stable).PID
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("pid %d survives the plane", pid)
	}
	if st, err := local.ReadState(ctx, state, "djia30"); err != nil || len(st.Variants) != 0 || st.Endpoint != "" || len(st.Orphans) != 0 {
		t.Fatalf("ReadState after the stop = %+v, %v", st, err)
	}
	// The next plane takes the same URL.
	b2 := hosted(t, state)
	if b2.URL() != b.URL() {
		t.Logf("the URL moved from %s to %s (the port was taken meanwhile)", b.URL(), b2.URL())
	}
}

// A plane that died without stopping its servers (recorded in its state
// file) leaves orphans that ReadState shows and the next plane stops, PID
// and start time checked: a recorded PID that now belongs to another
// process is left alone.
func TestLeftoverServersAreShownAndStopped(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	dir := local.StateDir(state, "djia30")
	orphan := exec.Command("sleep", "60")
	bystander := exec.Command("sleep", "60")
	for _, c := range []*exec.Cmd{orphan, bystander} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Process.Kill()
	}
	oid, _ := procid.Of(orphan.Process.Pid)
	bid, _ := procid.Of(bystander.Process.Pid)
	bid.Start++ // recorded with another start time: not the same process
	left := map[string]any{"model": "djia30", "url": "http://127.0.0.1:1", "canaryWeight": 0, "variants": []map[string]any{
		{"variant": "stable", "process": oid, "url": "http://127.0.0.1:2", "model": ref("/m", 1)},
		{"variant": "canary", "process": bid, "url": "http://127.0.0.1:3", "model": ref("/m", 2)},
	}}
	raw, _ := json.Marshal(left)
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "state.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := local.ReadState(ctx, state, "djia30")
	if err != nil || len(st.Variants) != 0 || len(st.Orphans) != 1 || st.Orphans[0].PID != oid.PID {
		t.Fatalf("ReadState = %+v, %v", st, err)
	}
	hosted(t, state)
	done := make(chan error, 1)
	go func() { done <- orphan.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the orphan was not stopped")
	}
	if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the bystander with a reused PID was hit: %v", err)
	}
	// A corrupted state file is an error naming it, never a silent reset.
	dir2 := local.StateDir(t.TempDir(), "djia30")
	os.MkdirAll(dir2, 0o755)
	os.WriteFile(filepath.Join(dir2, "state.json"), []byte(`{"variants": [`), 0o644)
	_, err = local.ReadState(ctx, filepath.Dir(filepath.Dir(dir2)), "djia30")
	var se *local.StateError
	if !errors.As(err, &se) || se.Path != filepath.Join(dir2, "state.json") || !strings.Contains(err.Error(), "is corrupted") {
		t.Fatalf("corrupted state = %v", err)
	}
}

// The control API answers only with the plane's token.
func TestControlAPINeedsTheToken(t *testing.T) {
	b := hosted(t, t.TempDir())
	resp, err := http.Get(b.URL() + local.ControlPrefix + "state")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("state without a token: %d", resp.StatusCode)
	}
}
