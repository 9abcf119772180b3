package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/deploy"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
	"github.com/branchml/branchml/agents/stages/deploy/rollout"
)

// loadWhenServing sends predicts through the gateway from the moment a
// stable server runs until ctx ends; every request after that must succeed.
func (e *env) loadWhenServing(ctx context.Context) <-chan loadgen.Report {
	done := make(chan loadgen.Report, 1)
	go func() {
		for {
			if st, _ := e.b.State(ctx); st.Get(serving.Stable) != nil {
				break
			}
			select {
			case <-ctx.Done():
				done <- loadgen.Report{}
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
		rep, _ := loadgen.Run(ctx, loadgen.Options{URL: e.b.URL() + "/v1/models/djia30:predict", Body: []byte(`{"instances":[[1]]}`), Concurrency: 2, Rate: 800})
		done <- rep
	}()
	return done
}

// newEvents are the event kinds of st's history after the first n, less
// the "no data" analyses a loaded machine may add (too few canary requests
// in an interval; below the threshold they change nothing else).
func newEvents(st records.DeployStatus, n int) []string {
	var kinds []string
	for _, ev := range st.History[n:] {
		if ev.Event == "analysis-failed" && strings.HasPrefix(ev.Message, "no data") {
			continue
		}
		kinds = append(kinds, ev.Event)
	}
	return kinds
}

// passed counts the analyses that passed.
func passed(as []rollout.Analysis) int {
	n := 0
	for _, a := range as {
		if a.Passed() {
			n++
		}
	}
	return n
}

func (e *env) written(t *testing.T) records.DeployStatus {
	t.Helper()
	var st records.DeployStatus
	if err := json.Unmarshal(e.f.files["deploy-model"][records.DeployStatusPath], &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *env) statusFile(t *testing.T) records.DeployStatus {
	t.Helper()
	var st records.DeployStatus
	raw, err := os.ReadFile(e.opts.StatusFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// After every server stopped (the quickstart's end, an interrupted run),
// a new version is not deployed directly: the recorded stable comes back
// first and the new version goes through the canary with its analyses.
func TestNothingServingRestoresRecordedStableThenCanary(t *testing.T) {
	e := setup(t)
	if _, err := e.run(t, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	e.stopAll(t)
	before := len(e.written(t).History)

	writeSpec(t, e.ws, 2)
	o := e.opts
	o.Commit = "c2"
	dry := o
	dry.DryRun = true
	plan, err := deploy.Run(context.Background(), dry)
	if err != nil || len(plan.Plan) != 2 || plan.Plan[0] != "restore djia30 v1, the recorded stable, at 100% (nothing serves)" ||
		plan.Plan[1] != "canary djia30 v2 against stable v1: steps [10 50 100] every 120ms, threshold 2" || plan.Status.Phase != "Succeeded" {
		t.Fatalf("dry run: %+v, %v", plan, err)
	}
	if now, _ := e.b.State(context.Background()); len(now.Variants) != 0 || len(e.f.writes) != 1 {
		t.Fatalf("the dry run changed something: %+v, %d writes", now, len(e.f.writes))
	}
	ctx, cancel := context.WithCancel(context.Background())
	load := e.loadWhenServing(ctx)
	res, err := deploy.Run(context.Background(), o)
	cancel()
	rep := <-load
	if err != nil || res.Status.Phase != "Succeeded" || res.Status.StableVersion != 2 {
		t.Fatalf("v2 after a stop: %+v, %v", res.Status, err)
	}
	if rep.OK == 0 || rep.Failed != 0 {
		t.Fatalf("load once v1 was restored: %d ok, %d failed %q", rep.OK, rep.Failed, rep.Errors)
	}
	if len(res.Plan) != 2 || !strings.HasPrefix(res.Plan[0], "restore djia30 v1, the recorded stable") || !strings.HasPrefix(res.Plan[1], "canary djia30 v2 against stable v1") {
		t.Fatalf("plan = %q", res.Plan)
	}
	if passed(res.Analyses) != 3 {
		t.Fatalf("analyses = %+v, want one per step", res.Analyses)
	}
	if got := strings.Join(newEvents(res.Status, before), ","); got != "restored,step,step,step,promoted" {
		t.Fatalf("events = %s", got)
	}
	if w := e.written(t); w.Phase != "Succeeded" || w.StableVersion != 2 || strings.Contains(w.Message, "nothing served before") {
		t.Fatalf("written = %+v", w)
	}
	if v, n := e.stable(t); v != 2 || n != 1 {
		t.Fatalf("serving v%d, %d variants", v, n)
	}
}

// The spec names the recorded stable and nothing serves: it is started
// again, and neither the history nor the deploy branch changes, however
// often (the quickstart's rerun; the commit is the write-back's).
func TestNothingServingSameVersionRestoresAndWritesNothing(t *testing.T) {
	e := setup(t)
	if _, err := e.run(t, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	writes := len(e.f.writes)
	was := e.written(t)
	fileBefore, _ := os.ReadFile(e.opts.StatusFile)
	for i, commit := range []string{"writeback1", "writeback2"} {
		e.stopAll(t)
		o := e.opts
		o.Commit = commit
		res, err := deploy.Run(context.Background(), o)
		if err != nil || len(res.Plan) != 1 || !strings.HasPrefix(res.Plan[0], "restore djia30 v1, the recorded stable") {
			t.Fatalf("rerun %d: %+v, %v", i, res, err)
		}
		if v, n := e.stable(t); v != 1 || n != 1 {
			t.Fatalf("rerun %d: serving v%d, %d variants", i, v, n)
		}
		if len(e.f.writes) != writes || len(res.Status.History) != len(was.History) || res.Status.SourceCommit != "c1" {
			t.Fatalf("rerun %d wrote: %d writes (want %d), status %+v", i, len(e.f.writes), writes, res.Status)
		}
		if fileAfter, _ := os.ReadFile(e.opts.StatusFile); string(fileAfter) != string(fileBefore) {
			t.Fatalf("rerun %d changed the status file:\n%s", i, fileAfter)
		}
	}
	// And while it serves, another commit of the same spec writes nothing either.
	o := e.opts
	o.Commit = "writeback3"
	if res, err := deploy.Run(context.Background(), o); err != nil || !strings.HasPrefix(res.Plan[0], "nothing to do") || len(e.f.writes) != writes {
		t.Fatalf("serving rerun: %+v, %v, %d writes", res, err, len(e.f.writes))
	}
}

// An interrupted canary (SIGINT: ctx cancelled) is recorded on the deploy
// branch and in the status file, with its steps and its end, although ctx
// is done; after every server stopped, the next run restores v1 and rolls
// v2 out again by canary.
func TestInterruptedCanaryIsRecordedAndRolledOutAgain(t *testing.T) {
	e := setup(t)
	if _, err := e.run(t, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	before := len(e.written(t).History)
	writes := len(e.f.writes)

	writeSpec(t, e.ws, 2)
	o := e.opts
	o.Commit = "c2"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lctx, lcancel := context.WithCancel(context.Background())
	load := e.loadWhenServing(lctx)
	go func() { // SIGINT once the canary takes half the traffic
		for ctx.Err() == nil {
			if st, _ := e.b.State(ctx); st.CanaryWeight >= 50 {
				cancel()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	res, err := deploy.Run(ctx, o)
	lcancel()
	rep := <-load
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: err = %v, want context.Canceled", err)
	}
	if rep.Failed != 0 {
		t.Fatalf("load during the interruption: %d of %d failed %q", rep.Failed, rep.Sent, rep.Errors)
	}
	for name, st := range map[string]records.DeployStatus{"result": res.Status, "written back": e.written(t), "status file": e.statusFile(t)} {
		if st.Phase != "Interrupted" || st.StableVersion != 1 || st.CanaryVersion != 0 || st.CanaryWeight != 0 || !strings.HasPrefix(st.Message, "interrupted at 50%") {
			t.Fatalf("%s status = %+v", name, st)
		}
		if got := strings.Join(newEvents(st, before), ","); got != "step,step,interrupted" {
			t.Fatalf("%s events = %s", name, got)
		}
	}
	if len(e.f.writes) != writes+1 || e.f.writes[len(e.f.writes)-1].Message != "branchml deploy: Interrupted djia30 v2 for c2" {
		t.Fatalf("write-backs = %+v", e.f.writes[writes:])
	}
	if v, n := e.stable(t); v != 1 || n != 1 {
		t.Fatalf("after the interruption: serving v%d, %d variants", v, n)
	}

	// The processes are gone (the shell's Ctrl-C, the quickstart's end).
	e.stopAll(t)
	before = len(e.written(t).History)
	o = e.opts
	o.Commit = "c3"
	lctx, lcancel = context.WithCancel(context.Background())
	load = e.loadWhenServing(lctx)
	res, err = deploy.Run(context.Background(), o)
	lcancel()
	if rep := <-load; rep.OK == 0 || rep.Failed != 0 {
		t.Errorf("load once v1 was restored: %d ok, %d failed %q", rep.OK, rep.Failed, rep.Errors)
	}
	if err != nil || res.Status.Phase != "Succeeded" || res.Status.StableVersion != 2 {
		t.Fatalf("run after the interruption: %+v, %v", res.Status, err)
	}
	if got := strings.Join(newEvents(res.Status, before), ","); got != "restored,step,step,step,promoted" {
		t.Fatalf("events = %s", got)
	}
}

// rollback reads the recorded status when nothing serves: the dry run
// says what it would do, the real one does it; --to below 1 is refused.
func TestRollbackWhenNothingServes(t *testing.T) {
	e := setup(t)
	// Nothing serves and nothing was recorded: nothing to roll back, and the
	// fix is not about deploy.yaml.
	_, err := deploy.Rollback(context.Background(), e.opts, 0)
	var ue *deploy.UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "no deploy status was recorded") || !strings.Contains(ue.Fix, "branchml-deploy run") {
		t.Fatalf("rollback of nothing: %v", err)
	}
	if _, err := e.run(t, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.run(t, 2, "c2"); err != nil {
		t.Fatal(err)
	}
	e.stopAll(t)
	writes := len(e.f.writes)

	st, err := deploy.Status(context.Background(), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	// The rollout's events, less "no data" analyses a loaded machine may add.
	var kinds []string
	for _, ev := range st.Status.History {
		if ev.Event != "analysis-failed" {
			kinds = append(kinds, fmt.Sprintf("v%d %d%% %s", ev.Version, ev.Weight, ev.Event))
		}
	}
	if got := strings.Join(kinds, ", "); got != "v1 100% promoted, v2 10% step, v2 50% step, v2 100% step, v2 100% promoted" {
		t.Errorf("history = %s", got)
	}
	text := st.Text()
	for _, want := range []string{"djia30: Succeeded (recorded), not serving: no model server runs; the status records stable v2\n", "serving: nothing (no model server runs)\n",
		"status: Succeeded, stable v2, commit c2, updated ", "\n  v2 promoted after 3 steps\n",
		fmt.Sprintf("history (%d events, oldest first):\n", len(st.Status.History))} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
	if lines := strings.Split(text, "\n"); !strings.Contains(lines[len(lines)-1], "v2  100%  promoted") {
		t.Errorf("last line = %q, want the promotion", lines[len(lines)-1])
	}
	for _, bad := range []string{"null", "0001-01-01", "{", "["} {
		if strings.Contains(text, bad) {
			t.Errorf("status text has %q:\n%s", bad, text)
		}
	}

	dry := e.opts
	dry.DryRun = true
	res, err := deploy.Rollback(context.Background(), dry, 0)
	if err != nil || len(res.Plan) != 1 || res.Plan[0] != "start djia30 v1 as stable at 100% (nothing serves; the status records stable v2)" || res.Status.Phase != "Succeeded" {
		t.Fatalf("rollback --dry-run: %+v, %v", res, err)
	}
	if text := res.Text(); !strings.HasPrefix(text, "djia30: plan (dry run, nothing changed); recorded Succeeded; not serving\n") ||
		!strings.Contains(text, "would:\n  - start djia30 v1 as stable at 100%") || !strings.Contains(text, "recorded status: Succeeded, stable v2") {
		t.Errorf("dry-run text:\n%s", text)
	}
	if now, _ := e.b.State(context.Background()); len(now.Variants) != 0 || len(e.f.writes) != writes {
		t.Fatalf("the dry run changed something: %+v, %d writes", now, len(e.f.writes))
	}
	for _, to := range []int64{-1} {
		if _, err := deploy.Rollback(context.Background(), e.opts, to); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--to -1") {
			t.Fatalf("rollback --to %d: %v", to, err)
		}
	}

	res, err = deploy.Rollback(context.Background(), e.opts, 0)
	if err != nil || res.Status.Phase != "RolledBack" || res.Status.StableVersion != 1 {
		t.Fatalf("rollback: %+v, %v", res, err)
	}
	if v, n := e.stable(t); v != 1 || n != 1 {
		t.Fatalf("after rollback: serving v%d, %d variants", v, n)
	}
	if w := e.written(t); w.Phase != "RolledBack" || w.History[len(w.History)-1].Message != "manual rollback from v2 to v1 (nothing served)" {
		t.Fatalf("written = %+v", w)
	}
}
