package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/deploy"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
)

var fakeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fake-tfserving-")
	if err != nil {
		panic(err)
	}
	fakeBin = filepath.Join(dir, "fake-tfserving")
	if out, err := exec.Command("go", "build", "-o", fakeBin, "github.com/branchml/branchml/agents/internal/fake/tfserving/cmd/fake-tfserving").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fake-tfserving: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// memForge is an in-memory forge.Forge: files per branch, write-backs recorded.
type memForge struct {
	mu     sync.Mutex
	files  map[string]map[string][]byte
	writes []forge.WriteBack
}

func (f *memForge) ReadFile(_ context.Context, ref, path string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.files[ref][path]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("%s:%s: %w", ref, path, forge.ErrNotFound)
}
func (f *memForge) WriteBack(ctx context.Context, wb forge.WriteBack) (string, error) {
	if err := ctx.Err(); err != nil {
		// As a real forge: a push with a done context does not happen.
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files = map[string]map[string][]byte{}
	}
	if f.files[wb.Branch] == nil {
		f.files[wb.Branch] = map[string][]byte{}
	}
	for p, b := range wb.Files {
		f.files[wb.Branch][p] = b
	}
	f.writes = append(f.writes, wb)
	return fmt.Sprintf("sha%d", len(f.writes)), nil
}
func (f *memForge) EnsurePullRequest(context.Context, forge.PullRequest) (*forge.PullRequest, error) {
	return nil, errors.New("unused")
}
func (f *memForge) SetStatus(context.Context, string, forge.Status) error { return nil }
func (f *memForge) Comment(context.Context, int, string) error            { return nil }

var _ forge.Forge = (*memForge)(nil)

func cfg() *config.Config {
	c := &config.Config{Project: "djia30", Branches: map[string]string{"deploy": "deploy-model"}}
	c.Deploy.Model = "djia30"
	c.Deploy.Strategy = "canary"
	c.Deploy.Canary = config.Canary{Steps: []int{10, 50, 100}, Interval: config.Duration{Duration: 120 * time.Millisecond}, Threshold: 2, MinRequests: 3, SuccessRate: 99, MaxLatencyP99: config.Duration{Duration: time.Second}}
	c.Deploy.AB = config.AB{Weight: 50, Requests: 60}
	return c
}

func writeSpec(t *testing.T, ws string, version int64) {
	t.Helper()
	spec := fmt.Sprintf("apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel:\n  name: djia30\n  version: %d\n  volume: djia30-model\n  path: models/djia30\nlineageId: lin-%d\n", version, version)
	if err := os.WriteFile(filepath.Join(ws, "deploy.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
}

type env struct {
	ws, root string
	stateDir string
	log      *logrus.Logger
	b        *local.Backend
	f        *memForge
	opts     deploy.Options
}

func setup(t *testing.T) *env {
	ws := t.TempDir()
	root := t.TempDir()
	for v, beh := range map[int64]string{1: "", 2: "", 3: `{"failEvery":2}`} {
		d := filepath.Join(root, "models", "djia30", fmt.Sprint(v))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if beh != "" {
			os.WriteFile(filepath.Join(d, "behavior.json"), []byte(beh), 0o644)
		}
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(logrus.WarnLevel)
	f := &memForge{}
	e := &env{ws: ws, root: root, stateDir: t.TempDir(), log: log, f: f,
		opts: deploy.Options{Config: cfg(), Workspace: ws, ModelRoot: root, Forge: f, Log: log}}
	e.startBackend(t)
	return e
}

// startBackend starts a local backend on the env's state directory that
// hosts its serving plane.
func (e *env) startBackend(t *testing.T) {
	t.Helper()
	b, err := local.New("djia30", []string{fakeBin}, local.WithStateDir(e.stateDir), local.WithLogger(e.log), local.WithHost())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	e.b, e.opts.Serving = b, b
	e.opts.StatusFile = filepath.Join(local.StateDir(e.stateDir, "djia30"), "deploy-status.json")
}

// stopAll stops every model server and the gateway, as the quickstart does
// at its end, and starts a new backend that finds nothing serving.
func (e *env) stopAll(t *testing.T) {
	t.Helper()
	if err := e.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.startBackend(t)
	if st, _ := e.b.State(context.Background()); len(st.Variants) != 0 {
		t.Fatalf("after stopping every server: %+v", st)
	}
}

func (e *env) run(t *testing.T, version int64, commit string) (*deploy.Result, error) {
	writeSpec(t, e.ws, version)
	o := e.opts
	o.Commit = commit
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan loadgen.Report, 1)
	if st, _ := e.b.State(ctx); st.Get(serving.Stable) == nil {
		cancel() // nothing serves yet: no load before the first deploy
	}
	go func() {
		rep, _ := loadgen.Run(ctx, loadgen.Options{URL: e.b.URL() + "/v1/models/djia30:predict", Body: []byte(`{"instances":[[1]]}`), Concurrency: 2, Rate: 800})
		done <- rep
	}()
	res, err := deploy.Run(context.Background(), o)
	cancel()
	rep := <-done
	if version != 3 && rep.Failed != 0 {
		t.Fatalf("v%d: %d of %d requests failed: %q", version, rep.Failed, rep.Sent, rep.Errors)
	}
	return res, err
}

func (e *env) stable(t *testing.T) (int64, int) {
	st, _ := e.b.State(context.Background())
	s := st.Get(serving.Stable)
	if s == nil {
		t.Fatal("nothing serves")
	}
	return s.Model.Version, len(st.Variants)
}

func TestRunRevertRollbackCycle(t *testing.T) {
	e := setup(t)
	// First deploy: nothing served before.
	res, err := e.run(t, 1, "c1c1c1c1c1c1c1c1")
	if err != nil || res.Status.Phase != "Succeeded" || res.Status.StableVersion != 1 {
		t.Fatalf("first deploy: %+v, %v", res, err)
	}
	if len(e.f.writes) != 1 || e.f.writes[0].Message != "branchml deploy: Succeeded djia30 v1 for c1c1c1c1c1c1" || e.f.writes[0].Branch != "deploy-model" {
		t.Fatalf("write-backs = %+v", e.f.writes)
	}
	// Same commit again: nothing changes, nothing is written.
	if res, err := e.run(t, 1, "c1c1c1c1c1c1c1c1"); err != nil || len(e.f.writes) != 1 || res.Plan[0] != "nothing to do: djia30 v1 already serves at 100%" {
		t.Fatalf("second run: %+v, %v, %d writes", res, err, len(e.f.writes))
	}
	// Dry run of v2 plans and changes nothing.
	writeSpec(t, e.ws, 2)
	o := e.opts
	o.DryRun = true
	plan, err := deploy.Run(context.Background(), o)
	if err != nil || plan.Plan[0] != "canary djia30 v2 against stable v1: steps [10 50 100] every 120ms, threshold 2" || len(e.f.writes) != 1 {
		t.Fatalf("dry run: %+v, %v", plan, err)
	}
	// v2 by canary under load.
	res, err = e.run(t, 2, "c2")
	if err != nil || res.Status.Phase != "Succeeded" {
		t.Fatalf("v2: %+v, %v", res.Status, err)
	}
	if v, n := e.stable(t); v != 2 || n != 1 {
		t.Fatalf("after v2: stable v%d, %d variants", v, n)
	}
	// Revert deploy.yaml to v1: v1 comes back at 100%.
	res, err = e.run(t, 1, "c3")
	if err != nil || res.Status.Phase != "Succeeded" || res.Status.StableVersion != 1 || res.Status.CanaryWeight != 0 {
		t.Fatalf("revert: %+v, %v", res.Status, err)
	}
	if v, n := e.stable(t); v != 1 || n != 1 {
		t.Fatalf("after revert: stable v%d, %d variants", v, n)
	}
	// A bad v3 is rolled back; stable v1 keeps serving; the status says why.
	res, err = e.run(t, 3, "c4")
	if !errors.Is(err, deploy.ErrRolledBack) || res.Status.Phase != "RolledBack" || !strings.Contains(res.Status.Message, "success rate") {
		t.Fatalf("bad v3: %+v, %v", res.Status, err)
	}
	if v, n := e.stable(t); v != 1 || n != 1 {
		t.Fatalf("after v3: stable v%d, %d variants", v, n)
	}
	var written records.DeployStatus
	if err := json.Unmarshal(e.f.files["deploy-model"][records.DeployStatusPath], &written); err != nil {
		t.Fatal(err)
	}
	if written.Phase != "RolledBack" || written.StableVersion != 1 || written.SourceCommit != "c4" || written.History[len(written.History)-1].Event != "rolled-back" {
		t.Fatalf("written status = %+v", written)
	}
	// Manual rollback to v2. A plain rollback then never brings back v1,
	// which was rolled back from; --to 1 does, by name. An unknown version
	// is refused at once, changing nothing.
	rb, err := deploy.Rollback(context.Background(), e.opts, 2)
	if err != nil || rb.Status.StableVersion != 2 {
		t.Fatalf("rollback --to 2: %+v, %v", rb, err)
	}
	if v, _ := e.stable(t); v != 2 {
		t.Fatalf("after rollback --to 2: v%d", v)
	}
	if last := rb.Status.History[len(rb.Status.History)-1]; last.Event != "rolled-back" || last.From != 1 || last.Version != 2 || !strings.HasSuffix(last.By, "(branchml deploy)") {
		t.Fatalf("rollback event = %+v", last)
	}
	writes := len(e.f.writes)
	var ue *deploy.UsageError
	if _, err := deploy.Rollback(context.Background(), e.opts, 0); !errors.As(err, &ue) || !strings.Contains(err.Error(), "not rolled back from") {
		t.Fatalf("plain rollback after rolling back from v1: %v", err)
	}
	start := time.Now()
	if _, err := deploy.Rollback(context.Background(), e.opts, 99); !errors.As(err, &ue) || err.Error() != "--to 99: v99 never served djia30 (the deploy history knows v1, v2)" {
		t.Fatalf("rollback --to 99: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second || len(e.f.writes) != writes {
		t.Fatalf("refusals took %v and wrote %d", d, len(e.f.writes)-writes)
	}
	rb, err = deploy.Rollback(context.Background(), e.opts, 1)
	if err != nil || rb.Status.StableVersion != 1 {
		t.Fatalf("rollback --to 1: %+v, %v", rb.Status, err)
	}
	st, err := deploy.Status(context.Background(), e.opts)
	if err != nil || st.Status.Phase != "RolledBack" || st.Serving.Get(serving.Stable).Model.Version != 1 {
		t.Fatalf("status = %+v, %v", st, err)
	}
}

func TestAB(t *testing.T) {
	e := setup(t)
	if _, err := e.run(t, 1, "a1"); err != nil {
		t.Fatal(err)
	}
	e.opts.Config.Deploy.Strategy = "ab"
	res, err := e.run(t, 2, "a2")
	if err != nil || res.AB == nil || res.Status.Phase != "Succeeded" || !strings.HasPrefix(res.Status.Message, "A/B finished: ") {
		t.Fatalf("ab: %+v, %v", res, err)
	}
	if res.AB.CandidateAnalysis.CanaryRequests == 0 || res.AB.StableAnalysis.CanaryRequests == 0 {
		t.Fatalf("ab report = %+v", res.AB)
	}
	if v, n := e.stable(t); v != 1 || n != 1 {
		t.Fatalf("after A/B: stable v%d, %d variants (promotion needs a merge)", v, n)
	}
}

func TestSpecErrors(t *testing.T) {
	cases := map[string]string{
		"apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 0, path: p}\n":         "model.version 0",
		"apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 1}\n":                  "model.path is empty",
		"apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 1, path: p}\nfoo: 1\n": "unknown field \"foo\"",
		"apiVersion: v2\nkind: DeploySpec\nmodel: {name: djia30, version: 1, path: p}\nstrategy: blue\n":      "strategy \"blue\": use canary or ab",
	}
	for in, want := range cases {
		_, err := deploy.ParseSpec("deploy.yaml", []byte(in))
		var se *deploy.SpecError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSpec(%q) = %v, want %q", in, err, want)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add("apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 1, path: p}\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := deploy.ParseSpec("deploy.yaml", []byte(in))
		if err == nil && (s.Model.Version <= 0 || s.Model.Name == "") {
			t.Fatalf("accepted %q", in)
		}
	})
}

// The night: v3 good, v6 bad; after rollback --to 3 a plain
// rollback must not bring v6 back (it did, at 100%).
func TestRollbackTargetFromHistory(t *testing.T) {
	ev := func(kind string, v, from int64) records.DeployEvent {
		return records.DeployEvent{Event: kind, Version: v, From: from}
	}
	h := []records.DeployEvent{ev("promoted", 1, 0), ev("promoted", 3, 0), ev("step", 5, 0), ev("rolled-back", 5, 0), ev("promoted", 6, 0), ev("rolled-back", 3, 6)}
	if got := deploy.RollbackTarget(h, 3); got != 1 {
		t.Fatalf("after rollback --to 3 from v6: target v%d, want v1 (never v6, never the rolled-back canary v5)", got)
	}
	if got := deploy.RollbackTarget(h[:5], 6); got != 3 {
		t.Fatalf("from v6: target v%d, want v3", got)
	}
	// Promoted again after the rollback: it may come back.
	h2 := append(append([]records.DeployEvent(nil), h...), ev("promoted", 6, 0), ev("promoted", 7, 0))
	if got := deploy.RollbackTarget(h2, 7); got != 6 {
		t.Fatalf("after v6 was promoted again: target v%d, want v6", got)
	}
	if got := fmt.Sprint(deploy.ServedVersions(h)); got != "[1 3 6]" {
		t.Fatalf("served versions = %s", got)
	}
}
