package follow

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
	fakekfp "github.com/branchml/branchml/agents/internal/fake/kfp"
)

// startKFPRun creates a run on the fake KFP server through the real KFP
// client and scripts its state sequence.
func startKFPRun(t *testing.T, states ...string) (*fakekfp.Server, *kfp.Client, string) {
	t.Helper()
	srv := fakekfp.New()
	t.Cleanup(srv.Close)
	c, err := kfp.New(srv.URL, kfp.WithRetry(kfp.RetryPolicy{Attempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	pid := srv.AddPipeline("djia30-sentiment", "")
	vid := srv.AddVersion(pid, "v1", "", runnertest.TrainSpec("r/t@sha256:00", false))
	run, err := c.CreateRun(context.Background(), pipelines.RunRequest{Experiment: "djia30", DisplayName: "djia30-abc", PipelineID: pid, VersionID: vid})
	if err != nil {
		t.Fatal(err)
	}
	if !srv.SetRunStates(run.ID, states...) {
		t.Fatalf("no run %s", run.ID)
	}
	return srv, c, run.ID
}

func cancels(srv *fakekfp.Server) int {
	n := 0
	for _, c := range srv.Calls() {
		// CancelRun is v2beta1 RunService.TerminateRun: POST /runs/{id}:terminate.
		if strings.HasPrefix(c, "POST ") && strings.HasSuffix(c, ":terminate") {
			n++
		}
	}
	return n
}

func TestFollowFakeKFP(t *testing.T) {
	cases := []struct {
		name    string
		states  []string
		fault   fakekfp.Fault
		opts    Options
		state   string
		err     string
		cancels int
	}{
		{name: "succeeded", states: []string{"PENDING", "RUNNING", "SUCCEEDED"}, state: "SUCCEEDED"},
		{name: "failed", states: []string{"PENDING", "RUNNING", "FAILED"}, state: "FAILED"},
		{name: "canceled", states: []string{"RUNNING", "CANCELING", "CANCELING", "CANCELED"}, state: "CANCELED"},
		{name: "5xx burst", states: []string{"PENDING", "RUNNING", "SUCCEEDED"}, fault: fakekfp.On("GET", `/runs/`, 3, fakekfp.Unavailable()), opts: Options{MaxErrors: 3}, state: "SUCCEEDED"},
		{name: "5xx too long", states: []string{"RUNNING"}, fault: fakekfp.On("GET", `/runs/`, 0, fakekfp.Unavailable()), opts: Options{MaxErrors: 2}, err: "3 errors in a row"},
		{name: "stuck running", states: []string{"PENDING", "RUNNING"}, opts: Options{StallTimeout: time.Minute}, state: "RUNNING", err: "stalled: no state or task change for 1m0s (state RUNNING); cancel requested", cancels: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, c, id := startKFPRun(t, tc.states...)
			if tc.fault != nil {
				srv.Inject(tc.fault)
			}
			tc.opts.Clock, tc.opts.Interval = &clock{now: time.Unix(0, 0)}, 10*time.Second
			run, err := Follow(context.Background(), c, id, tc.opts)
			state := ""
			if run != nil {
				state = run.State
			}
			if state != tc.state || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %q, %v; want %q, %q", state, err, tc.state, tc.err)
			}
			if got := cancels(srv); got != tc.cancels {
				t.Errorf("cancel calls = %d, want %d: %v", got, tc.cancels, srv.Calls())
			}
			if tc.name == "failed" && (len(run.Tasks) != 2 || run.Tasks[0].State != "FAILED") {
				t.Errorf("tasks = %+v", run.Tasks)
			}
		})
	}
}

func TestFollowFakeKFPUnknownRun(t *testing.T) {
	_, c, _ := startKFPRun(t, "RUNNING")
	_, err := Follow(context.Background(), c, "00000000-0000-0000-0000-000000000000", Options{Clock: &clock{}, Interval: time.Second})
	if !errors.Is(err, pipelines.ErrNotFound) {
		t.Fatalf("err = %v, want pipelines.ErrNotFound", err)
	}
}

func TestFollowFakeKFPAbortCancels(t *testing.T) {
	srv, c, id := startKFPRun(t, "RUNNING")
	ctx, cancel := context.WithCancel(context.Background())
	f := New(c, id, Options{Clock: &clock{}, Interval: time.Second})
	if done, err := f.Tick(ctx); done || err != nil {
		t.Fatal(done, err)
	}
	cancel()
	if done, err := f.Tick(ctx); !done || !errors.Is(err, context.Canceled) {
		t.Fatalf("%v %v", done, err)
	}
	if cancels(srv) != 1 {
		t.Errorf("calls = %v", srv.Calls())
	}
}
