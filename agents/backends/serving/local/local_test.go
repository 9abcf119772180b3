package local_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/local"
	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
	fake "github.com/branchml/branchml/agents/internal/fake/tfserving"
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

func newBackend(t *testing.T, stateDir string) *local.Backend {
	t.Helper()
	b, err := local.New("djia30", []string{fakeBin}, local.WithStateDir(stateDir), local.WithLogger(testLog(t)), local.WithReadyTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGatewaySplitsExactly(t *testing.T) {
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
		gw.SetRoutes(local.Route{Variant: serving.Stable, Upstream: us, Weight: 100 - w}, local.Route{Variant: serving.Canary, Upstream: uc, Weight: w})
		rep, err := loadgen.Run(context.Background(), loadgen.Options{URL: url + "/v1/models/djia30:predict", Body: []byte(body), Requests: 1000, Concurrency: 4, VariantHeader: local.VariantHeader})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Failed != 0 || rep.ByVariant["canary"] != 10*w || rep.ByVariant["stable"] != 1000-10*w {
			t.Fatalf("weight %d: report %+v", w, rep)
		}
	}
	if c := uc.Stats.Counters(); c.Requests != 850 || c.Errors != 0 || c.Latency.Count != 850 {
		t.Fatalf("canary stats = %+v", c)
	}
	// No routes: 503 with TF Serving's error body.
	gw.SetRoutes()
	rep, _ := loadgen.Run(context.Background(), loadgen.Options{URL: url + "/v1/models/djia30:predict", Body: []byte(body), Requests: 1})
	if rep.Failed != 1 || rep.Errors[0] != `503: {"error":"no model version is serving"}`+"\n" {
		t.Fatalf("no-route report = %+v", rep)
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

func TestCanaryUnderSteadyLoadZeroDowntime(t *testing.T) {
	ctx := context.Background()
	base := models(t, nil, 1, 2)
	b := newBackend(t, t.TempDir())
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	if err := b.Deploy(ctx, serving.Stable, records.ModelRef{Name: "djia30", Version: 1, Path: base}); err != nil {
		t.Fatal(err)
	}
	st0, _ := b.State(ctx)
	oldPID := st0.Get(serving.Stable).PID
	stop := steadyLoad(t, b.URL())
	time.Sleep(100 * time.Millisecond)
	r, err := rollout.New(b, records.ModelRef{Name: "djia30", Version: 2, Path: base}, policy(), rollout.WithLogger(testLog(t)))
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
	// One passed analysis per step. On a loaded machine the load generator
	// can fall behind, and an interval with too few canary requests is a
	// failed "no data" analysis (below the threshold): those carry no share.
	var passed []rollout.Analysis
	var weights []int
	for _, a := range st.Analyses {
		if a.Passed() {
			passed = append(passed, a)
			weights = append(weights, a.Weight)
		}
	}
	if fmt.Sprint(weights) != "[10 25 50 100]" {
		t.Fatalf("passed analyses at weights %v, want [10 25 50 100]: %+v", weights, st.Analyses)
	}
	for _, a := range passed {
		if math.Abs(a.Share-float64(a.Weight)) > 5 {
			t.Errorf("step %d%%: measured share %.2f%% (%d canary of %d)", a.Weight, a.Share, a.CanaryRequests, a.CanaryRequests+a.StableRequests)
		}
	}
	now, _ := b.State(ctx)
	if len(now.Variants) != 1 || now.Get(serving.Stable).Model.Version != 2 || now.CanaryWeight != 0 {
		t.Fatalf("state after promotion = %+v", now)
	}
	if err := exec.Command("kill", "-0", fmt.Sprint(oldPID)).Run(); err == nil {
		t.Fatalf("old stable pid %d still runs", oldPID)
	}
	// Every answer came from version 1 or 2, and the last ones from 2.
	c, _ := tfs.New(b.URL())
	p, err := c.Predict(ctx, "djia30", tfs.Selector{}, []byte(body))
	if err != nil || string(p.Predictions) != "[[2]]" {
		t.Fatalf("predict after promotion = %v, %v", p, err)
	}
}

func TestBadCanaryRolledBackWithinOneInterval(t *testing.T) {
	ctx := context.Background()
	base := models(t, map[int64]string{3: `{"failEvery":2}`}, 1, 3)
	b := newBackend(t, t.TempDir())
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	if err := b.Deploy(ctx, serving.Stable, records.ModelRef{Name: "djia30", Version: 1, Path: base}); err != nil {
		t.Fatal(err)
	}
	stop := steadyLoad(t, b.URL())
	r, _ := rollout.New(b, records.ModelRef{Name: "djia30", Version: 3, Path: base}, policy(), rollout.WithLogger(testLog(t)))
	st, err := r.Run(ctx)
	rep := stop()
	if !errors.Is(err, rollout.ErrRolledBack) || st.Phase != rollout.PhaseRolledBack {
		t.Fatalf("rollout = %v, %v; want rolled back", st.Phase, err)
	}
	if !strings.Contains(st.Reason, "2 failed analyses (threshold 2), last at 10%: success rate") {
		t.Fatalf("reason = %q", st.Reason)
	}
	// Rolled back at the second analysis: within one interval of the threshold.
	var failedAt, rolledAt time.Time
	for _, e := range st.History {
		if e.Event == rollout.EventAnalysisFailed {
			failedAt = e.Time
		}
		if e.Event == rollout.EventRolledBack {
			rolledAt = e.Time
		}
	}
	if d := rolledAt.Sub(failedAt); d < 0 || d > policy().Interval {
		t.Fatalf("rolled back %v after the threshold-crossing analysis", d)
	}
	now, _ := b.State(ctx)
	if len(now.Variants) != 1 || now.Get(serving.Stable).Model.Version != 1 {
		t.Fatalf("state after rollback = %+v", now)
	}
	// Stable served throughout: the failures came only from the canary.
	if rep.ByVariant["stable"] == 0 || rep.Failed == 0 {
		t.Fatalf("load = %+v", rep)
	}
	sc, _ := b.Counters(ctx, serving.Stable)
	if sc.Errors != 0 {
		t.Fatalf("stable errors = %d", sc.Errors)
	}
}

func TestAdoptFromAnotherProcessAndReadState(t *testing.T) {
	ctx := context.Background()
	base := models(t, nil, 1)
	state := t.TempDir()
	b1 := newBackend(t, state)
	if err := b1.Deploy(ctx, serving.Stable, records.ModelRef{Name: "djia30", Version: 1, Path: base}); err != nil {
		t.Fatal(err)
	}
	_ = b1.Close(ctx) // the servers keep running
	st, err := local.ReadState(state, "djia30")
	if err != nil || st.Get(serving.Stable) == nil || st.Get(serving.Stable).Model.Version != 1 || st.Endpoint != "" {
		t.Fatalf("ReadState = %+v, %v", st, err)
	}
	pid := st.Get(serving.Stable).PID
	b2 := newBackend(t, state)
	defer b2.Shutdown(ctx)
	st2, _ := b2.State(ctx)
	if st2.Get(serving.Stable) == nil || st2.Get(serving.Stable).PID != pid {
		t.Fatalf("adopted state = %+v", st2)
	}
	c, _ := tfs.New(b2.URL())
	p, err := c.Predict(ctx, "djia30", tfs.Selector{}, []byte(body))
	if err != nil || string(p.Predictions) != "[[1]]" {
		t.Fatalf("predict through the new gateway = %v, %v", p, err)
	}
	if err := b2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("kill", "-0", fmt.Sprint(pid)).Run(); err == nil {
		t.Fatalf("pid %d survives Shutdown", pid)
	}
}

func TestStartFailureNamesTheLog(t *testing.T) {
	b, _ := local.New("djia30", []string{fakeBin}, local.WithStateDir(t.TempDir()), local.WithLogger(testLog(t)), local.WithReadyTimeout(5*time.Second))
	if _, err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	err := b.Deploy(context.Background(), serving.Stable, records.ModelRef{Name: "djia30", Version: 1, Path: filepath.Join(t.TempDir(), "missing")})
	var se *serving.Error
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "exited before listening") || !strings.Contains(err.Error(), "server.log") {
		t.Fatalf("err = %v", err)
	}
}
