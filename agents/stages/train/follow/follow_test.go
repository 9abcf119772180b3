package follow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/pipelines"
)

// script is a pipelines.Backend whose GetRun answers come from a list, one
// per call (the last repeats); CancelRun calls are recorded.
type script struct {
	mu      sync.Mutex
	answers []answer
	calls   int
	cancels []string
	// cancelCtxErr records whether CancelRun got a live context.
	cancelCtxErr []error
}

type answer struct {
	run *pipelines.Run
	err error
}

func (s *script) UploadVersion(context.Context, pipelines.Upload) (*pipelines.Version, error) {
	return nil, errors.New("unused")
}
func (s *script) CreateRun(context.Context, pipelines.RunRequest) (*pipelines.Run, error) {
	return nil, errors.New("unused")
}
func (s *script) Artifact(context.Context, string, string, string, string) ([]byte, error) {
	return nil, errors.New("unused")
}
func (s *script) GetRun(ctx context.Context, id string) (*pipelines.Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.answers[min(s.calls, len(s.answers)-1)]
	s.calls++
	return a.run, a.err
}
func (s *script) CancelRun(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancels = append(s.cancels, id)
	s.cancelCtxErr = append(s.cancelCtxErr, ctx.Err())
	return nil
}

var _ pipelines.Backend = (*script)(nil)

func run(state string, tasks ...string) answer {
	r := &pipelines.Run{ID: "r1", State: state}
	for _, t := range tasks {
		n, s, _ := strings.Cut(t, "=")
		r.Tasks = append(r.Tasks, pipelines.Task{Name: n, State: s})
	}
	return answer{run: r}
}

type tempErr struct{ temp bool }

func (e tempErr) Error() string   { return fmt.Sprintf("KFP GET /runs/r1: 503 (temporary %v)", e.temp) }
func (e tempErr) Temporary() bool { return e.temp }

// clock is a manual clock: After advances it by d and fires at once.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }
func (c *clock) After(d time.Duration) <-chan time.Time {
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func newFollower(s *script, o Options) (*Follower, *clock, *bytes.Buffer) {
	c := &clock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	var buf bytes.Buffer
	log := logrus.New()
	log.Out = &buf
	log.Formatter = &logrus.TextFormatter{DisableTimestamp: true}
	o.Clock, o.Log = c, log
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	return New(s, "r1", o), c, &buf
}

func TestTickByTickToSucceeded(t *testing.T) {
	s := &script{answers: []answer{
		run("PENDING", "prepare-data=PENDING", "train=PENDING"),
		run("RUNNING", "prepare-data=RUNNING", "train=PENDING"),
		run("RUNNING", "prepare-data=SUCCEEDED", "train=RUNNING"),
		run("RUNNING", "prepare-data=SUCCEEDED", "train=RUNNING"),
		run("SUCCEEDED", "prepare-data=SUCCEEDED", "train=SUCCEEDED"),
	}}
	f, c, log := newFollower(s, Options{})
	for i := 0; i < 4; i++ {
		done, err := f.Tick(context.Background())
		if done || err != nil {
			t.Fatalf("tick %d: done %v err %v", i, done, err)
		}
		c.After(10 * time.Second)
	}
	done, err := f.Tick(context.Background())
	if !done || err != nil || f.Last().State != "SUCCEEDED" {
		t.Fatalf("last tick: %v %v %+v", done, err, f.Last())
	}
	want := `level=info msg="run r1: PENDING, 0/2 tasks done, 0s elapsed"
level=info msg="run r1: RUNNING, 0/2 tasks done, running prepare-data, 10s elapsed"
level=info msg="run r1: RUNNING, 1/2 tasks done, running train, 20s elapsed"
level=info msg="run r1: SUCCEEDED, 2/2 tasks done, 40s elapsed"
`
	if log.String() != want {
		t.Errorf("log =\n%s\nwant\n%s", log, want)
	}
	if len(s.cancels) != 0 {
		t.Errorf("cancels = %v", s.cancels)
	}
}

func TestFollowEndings(t *testing.T) {
	cases := []struct {
		name    string
		answers []answer
		opts    Options
		state   string
		err     string
		cancels int
		calls   int
	}{
		{"failed", []answer{run("PENDING"), run("RUNNING"), run("FAILED", "train=FAILED")}, Options{}, "FAILED", "", 0, 3},
		{"canceled", []answer{run("RUNNING"), run("CANCELING"), run("CANCELING"), run("CANCELED")}, Options{}, "CANCELED", "", 0, 4},
		{"skipped", []answer{run("SKIPPED")}, Options{}, "SKIPPED", "", 0, 1},
		{"not found", []answer{run("RUNNING"), {err: fmt.Errorf("KFP GET /runs/r1: 404: %w", pipelines.ErrNotFound)}}, Options{}, "RUNNING", "follow run r1: KFP GET /runs/r1: 404: not found", 0, 2},
		{"5xx burst", []answer{run("RUNNING"), {err: tempErr{true}}, {err: tempErr{true}}, {err: tempErr{true}}, run("SUCCEEDED")}, Options{MaxErrors: 3}, "SUCCEEDED", "", 0, 5},
		{"too many 5xx", []answer{run("RUNNING"), {err: tempErr{true}}}, Options{MaxErrors: 3}, "RUNNING", "follow run r1: 4 errors in a row, the last: KFP GET /runs/r1: 503 (temporary true)", 0, 5},
		{"permanent error", []answer{{err: tempErr{false}}}, Options{}, "", "follow run r1: KFP GET /runs/r1: 503 (temporary false)", 0, 1},
		{"stalled", []answer{run("RUNNING", "train=RUNNING")}, Options{StallTimeout: time.Minute}, "RUNNING", "run r1 stalled: no state or task change for 1m0s (state RUNNING); cancel requested", 1, 7},
		{"deadline", []answer{run("PENDING"), run("RUNNING", "a=RUNNING"), run("RUNNING", "a=SUCCEEDED")}, Options{Timeout: 30 * time.Second, StallTimeout: time.Hour}, "RUNNING", "run r1 did not finish within 30s (state RUNNING); cancel requested", 1, 4},
		{"canceling is not terminal", []answer{run("CANCELING")}, Options{StallTimeout: 20 * time.Second}, "CANCELING", "run r1 stalled: no state or task change for 20s (state CANCELING); cancel requested", 1, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{answers: tc.answers}
			c := &clock{now: time.Unix(0, 0)}
			tc.opts.Clock, tc.opts.Interval = c, 10*time.Second
			r, err := Follow(context.Background(), s, "r1", tc.opts)
			state := ""
			if r != nil {
				state = r.State
			}
			errStr := ""
			if err != nil {
				errStr = err.Error()
			}
			if state != tc.state || errStr != tc.err || len(s.cancels) != tc.cancels || s.calls != tc.calls {
				t.Errorf("got state %q err %q cancels %d calls %d; want %q %q %d %d", state, errStr, len(s.cancels), s.calls, tc.state, tc.err, tc.cancels, tc.calls)
			}
			for _, e := range s.cancelCtxErr {
				if e != nil {
					t.Errorf("CancelRun got a dead context: %v", e)
				}
			}
		})
	}
}

func TestErrorTypes(t *testing.T) {
	s := &script{answers: []answer{run("RUNNING")}}
	_, err := Follow(context.Background(), s, "r1", Options{Clock: &clock{}, StallTimeout: time.Second, Interval: time.Second})
	var se *StalledError
	if !errors.As(err, &se) || se.RunID != "r1" || se.For != time.Second {
		t.Errorf("stall = %#v", err)
	}
	_, err = Follow(context.Background(), s, "r1", Options{Clock: &clock{}, Timeout: 3 * time.Second, Interval: time.Second})
	var de *DeadlineError
	if !errors.As(err, &de) || de.Timeout != 3*time.Second {
		t.Errorf("deadline = %#v", err)
	}
}

func TestAbortCancelsRunOnFreshContext(t *testing.T) {
	s := &script{answers: []answer{run("RUNNING", "train=RUNNING")}}
	f, _, log := newFollower(s, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	if done, err := f.Tick(ctx); done || err != nil {
		t.Fatal(done, err)
	}
	cancel()
	done, err := f.Tick(ctx)
	if !done || !errors.Is(err, context.Canceled) || err.Error() != "run r1: interrupted, cancel requested: context canceled" {
		t.Fatalf("after abort: %v %v", done, err)
	}
	if len(s.cancels) != 1 || s.cancels[0] != "r1" || s.cancelCtxErr[0] != nil {
		t.Errorf("cancels = %v %v", s.cancels, s.cancelCtxErr)
	}
	if !strings.Contains(log.String(), `level=warning msg="run r1: cancel requested"`) {
		t.Errorf("log = %s", log)
	}
}

func TestProgressRepeatsWithoutChange(t *testing.T) {
	s := &script{answers: []answer{run("RUNNING", "train=RUNNING")}}
	f, c, log := newFollower(s, Options{ProgressEvery: 30 * time.Second})
	for i := 0; i < 4; i++ {
		f.Tick(context.Background())
		c.After(10 * time.Second)
	}
	if got := strings.Count(log.String(), "run r1: RUNNING, 0/1 tasks done, running train"); got != 2 {
		t.Errorf("progress lines = %d:\n%s", got, log)
	}
}
