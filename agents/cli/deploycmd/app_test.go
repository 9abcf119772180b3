package deploycmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/cli"
	stage "github.com/branchml/branchml/agents/cli/deploycmd"
	"github.com/branchml/branchml/agents/records"
)

// The test binary doubles as branchml-deploy for the serving planes the
// deploys spawn (ServeArgv): with DEPLOYCMD_TEST_MAIN=1 it runs the app on
// its arguments, and exits when the test process that started the chain
// (DEPLOYCMD_TEST_PARENT) is gone, so that a crashed test leaves nothing.
func TestMain(m *testing.M) {
	if os.Getenv("DEPLOYCMD_TEST_LOAD") == "1" {
		os.Exit(loadMain(os.Args[1:]))
	}
	if os.Getenv("DEPLOYCMD_TEST_MAIN") == "1" {
		if pid, _ := strconv.Atoi(os.Getenv("DEPLOYCMD_TEST_PARENT")); pid > 0 {
			go func() {
				for syscall.Kill(pid, 0) == nil {
					time.Sleep(100 * time.Millisecond)
				}
				_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
			}()
		}
		os.Exit(cli.Run(context.Background(), stage.App(), append([]string{"branchml-deploy"}, os.Args[1:]...), cli.StdStreams()))
	}
	os.Setenv("DEPLOYCMD_TEST_MAIN", "1")
	os.Setenv("DEPLOYCMD_TEST_PARENT", strconv.Itoa(os.Getpid()))
	stage.ServeArgv = func(stateDir, model, addr string) ([]string, error) {
		return []string{os.Args[0], "serve", "--model", model, "--state-dir", stateDir}, nil
	}
	code := m.Run()
	os.Unsetenv("DEPLOYCMD_TEST_MAIN")
	os.Exit(code)
}

func build(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "fake-tfserving")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/branchml/branchml/agents/internal/fake/tfserving/cmd/fake-tfserving").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// runCLI runs branchml-deploy with args in this process: the exit code,
// standard output and standard error.
func runCLI(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Run(ctx, stage.App(), append([]string{"branchml-deploy"}, args...), cli.Streams{Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// deployWorkspace is a workspace for the deploy agent on model djia30: a
// directory models/djia30/<v> for each version in models (with the value as
// its behavior.json for the fake model server, when not ""), a
// branchml.yaml whose deploy section has, after "model: djia30", the lines
// in deploy (indented by two spaces, each ending in a newline), its state
// directory ws/state, and in it the ML repository's forge: a bare git
// remote with main and deploy-model, where the status is written back.
func deployWorkspace(t *testing.T, models map[int]string, deploy string) (ws, state string, remote *gitremote.Forge) {
	t.Helper()
	ws = t.TempDir()
	state = filepath.Join(ws, "state")
	for v, beh := range models {
		d := filepath.Join(ws, "models", "djia30", fmt.Sprint(v))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if beh != "" {
			if err := os.WriteFile(filepath.Join(d, "behavior.json"), []byte(beh), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := `apiVersion: branchml.dev/v1
project: djia30
branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}
deploy:
  model: djia30
` + deploy + `backends:
  stateDir: ` + state + "\n"
	if err := os.WriteFile(filepath.Join(ws, "branchml.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	remote, err := gitremote.Init(context.Background(), filepath.Join(state, "forge", "djia30.git"),
		map[string][]byte{"README.md": []byte("ml repo\n")}, []string{"main", "deploy-model"})
	if err != nil {
		t.Fatal(err)
	}
	return ws, state, remote
}

// writeSpec writes ws/deploy.yaml: version v of djia30 from volume
// djia30-model.
func writeSpec(t *testing.T, ws string, v int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ws, "deploy.yaml"), []byte(fmt.Sprintf("apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: %d, volume: djia30-model, path: models/djia30}\n", v)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCLIRunStatusGate(t *testing.T) {
	bin := build(t)
	ws, state, remote := deployWorkspace(t, map[int]string{1: "", 3: `{"failEvery":2}`}, "  canary: {steps: [20, 100], interval: 300ms, threshold: 1, minRequests: 3, successRate: 99, maxLatencyP99: 1s}\n")
	spec := func(v int) { writeSpec(t, ws, v) }
	t.Cleanup(func() { killAll(t, state) })
	run := func(args ...string) (int, string, string) { return runCLI(context.Background(), args...) }
	spec(1)
	if code, out, errs := run("run", "--workspace", ws, "--commit", "c1", "--serve-command", bin); code != 0 {
		t.Fatalf("run v1 = %d\n%s\n%s", code, out, errs)
	}
	spec(3)
	resultPath := filepath.Join(ws, "result.json")
	code, out, errs := run("run", "--workspace", ws, "--commit", "c2", "--serve-command", bin, "--load", "300", "--load-body", `{"instances":[[1]]}`, "--result", resultPath, "--error-details", filepath.Join(ws, "err.json"))
	if code != 3 {
		t.Fatalf("run bad v3 = %d, want 3\n%s\n%s", code, out, errs)
	}
	var res struct {
		ExitCode int `json:"exitCode"`
		Outputs  struct {
			Status struct {
				Phase, Message string
				StableVersion  int64
			} `json:"status"`
		} `json:"outputs"`
	}
	raw, _ := os.ReadFile(resultPath)
	if err := json.Unmarshal(raw, &res); err != nil || res.ExitCode != 3 || res.Outputs.Status.Phase != "RolledBack" || res.Outputs.Status.StableVersion != 1 || !strings.Contains(res.Outputs.Status.Message, "success rate") {
		t.Fatalf("result = %s", raw)
	}
	// The rolled-back status was written back to deploy-model.
	raw, err := remote.ReadFile(context.Background(), "deploy-model", records.DeployStatusPath)
	if err != nil {
		t.Fatal(err)
	}
	var written records.DeployStatus
	if err := json.Unmarshal(raw, &written); err != nil || written.Phase != "RolledBack" || written.StableVersion != 1 || written.SourceCommit != "c2" {
		t.Fatalf("written-back status = %s", raw)
	}
	code, out, _ = run("status", "--workspace", ws, "-o", "json")
	if code != 0 || !strings.Contains(out, `"phase": "RolledBack"`) || !strings.Contains(out, `"variant": "stable"`) {
		t.Fatalf("status = %d\n%s", code, out)
	}
	code, out, _ = run("status", "--workspace", ws)
	if code != 0 || !strings.HasPrefix(out, "djia30: RolledBack; stable v1 (1 failed analyses") || !strings.Contains(out, "\nserving (local, http://127.0.0.1:") || !strings.Contains(out, "):\n  stable djia30 v1 at 100% (pid ") ||
		!strings.Contains(out, "  rolled-back      1 failed analyses") || strings.Contains(out, "status.") || strings.Contains(out, "null") {
		t.Fatalf("status text = %d\n%s", code, out)
	}
	t.Logf("status:\n%s", out)
	os.WriteFile(filepath.Join(ws, "deploy.yaml"), []byte("apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 0}\n"), 0o644)
	if code, _, errs := run("run", "--workspace", ws, "--serve-command", bin); code != 2 || !strings.Contains(errs, "model.version 0") {
		t.Fatalf("bad spec = %d\n%s", code, errs)
	}
}

// killAll stops the serving plane of the state directory and with it
// every model server, as 'branchml-deploy serve --stop' does.
func killAll(t *testing.T, state string) {
	t.Helper()
	if _, err := local.StopPlane(state, "djia30", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := local.ReadState(context.Background(), state, "djia30")
	if err != nil || len(st.Variants) != 0 || len(st.Orphans) != 0 {
		t.Fatalf("after stopping the plane: %+v, %v", st, err)
	}
}

// The QA session: v1 serves, the v2 canary is interrupted (exit 130), every
// server stops; status, rollback --dry-run and the next run must work from
// the recorded status, and the text output must be readable.
func TestCLIInterruptStopRestoreStatusRollback(t *testing.T) {
	bin := build(t)
	ws, state, remote := deployWorkspace(t, map[int]string{1: "", 2: ""}, "  canary: {steps: [10, 50, 100], interval: 150ms, threshold: 2, minRequests: 1, successRate: 99, maxLatencyP99: 1s}\n")
	spec := func(v int) { writeSpec(t, ws, v) }
	t.Cleanup(func() { killAll(t, state) })
	runCtx := runCLI
	run := func(args ...string) (int, string, string) { return runCtx(context.Background(), args...) }
	written := func() (records.DeployStatus, string) {
		t.Helper()
		raw, err := remote.ReadFile(context.Background(), "deploy-model", records.DeployStatusPath)
		if err != nil {
			t.Fatal(err)
		}
		var st records.DeployStatus
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		return st, string(raw)
	}
	events := func(st records.DeployStatus) string {
		var k []string
		for _, ev := range st.History {
			k = append(k, ev.Event)
		}
		return strings.Join(k, ",")
	}
	load := []string{"--load", "300", "--load-body", `{"instances":[[1]]}`}

	spec(1)
	if code, out, errs := run("run", "--workspace", ws, "--commit", "c1", "--serve-command", bin); code != 0 {
		t.Fatalf("run v1 = %d\n%s\n%s", code, out, errs)
	}

	// 1. SIGINT while the v2 canary takes 50%: exit 130, the interruption
	// is written back with the canary's steps.
	spec(2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if st, _ := local.ReadState(context.Background(), state, "djia30"); st.CanaryWeight >= 50 {
				cancel()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	resultPath := filepath.Join(ws, "result.json")
	code, out, errs := runCtx(ctx, append([]string{"run", "--workspace", ws, "--commit", "c2", "--serve-command", bin, "--result", resultPath}, load...)...)
	if code != 130 {
		t.Fatalf("interrupted run = %d, want 130\n%s\n%s", code, out, errs)
	}
	var res struct {
		ExitCode int `json:"exitCode"`
		Outputs  struct {
			Status records.DeployStatus `json:"status"`
		} `json:"outputs"`
	}
	raw, _ := os.ReadFile(resultPath)
	if err := json.Unmarshal(raw, &res); err != nil || res.ExitCode != 130 || res.Outputs.Status.Phase != "Interrupted" {
		t.Fatalf("result = %s", raw)
	}
	if st, _ := written(); st.Phase != "Interrupted" || st.StableVersion != 1 || st.CanaryWeight != 0 || events(st) != "promoted,step,step,interrupted" || st.SourceCommit != "c2" {
		t.Fatalf("written-back status after the interrupt = %+v", st)
	}

	// 2. Every server stops. status says so, in lines people read.
	killAll(t, state)
	code, out, errs = run("status", "--workspace", ws)
	if code != 0 || !strings.HasPrefix(out, "djia30: Interrupted (recorded), not serving: no model server runs; the status records stable v1\n") ||
		!strings.Contains(out, "\nserving: nothing (no model server runs)\n") || !strings.Contains(out, "\nhistory (4 events, oldest first):\n") {
		t.Fatalf("status = %d\n%s\n%s", code, out, errs)
	}
	t.Logf("status:\n%s", out)
	for _, bad := range []string{"null", "0001-01-01", "status.history", "plan:", "{"} {
		if strings.Contains(out, bad) {
			t.Errorf("status text has %q:\n%s", bad, out)
		}
	}
	if code, out, _ = run("status", "--workspace", ws, "-o", "json"); code != 0 || !strings.Contains(out, `"variants": []`) || strings.Contains(out, "null") {
		t.Fatalf("status -o json = %d\n%s", code, out)
	}

	// 3. rollback --dry-run plans from the recorded status; --to must be positive.
	if code, out, errs = run("rollback", "--workspace", ws, "--dry-run"); code != 2 || !strings.Contains(errs, "no version earlier than v1") || !strings.Contains(errs, "--to VERSION") || strings.Contains(errs, "deploy.yaml or branchml.yaml") {
		t.Fatalf("rollback --dry-run (only v1 ever served) = %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run("rollback", "--workspace", ws, "--dry-run", "--to", "1")
	if code != 0 || !strings.HasPrefix(out, "djia30: plan (dry run, nothing changed); recorded Interrupted; not serving\n") || !strings.Contains(out, "\nwould:\n  - start djia30 v1, the recorded stable, at 100% (nothing serves)\n") {
		t.Fatalf("rollback --dry-run --to 1 = %d\n%s\n%s", code, out, errs)
	}
	t.Logf("rollback --dry-run --to 1:\n%s", out)
	for _, to := range []string{"-1", "0"} {
		if code, out, errs := run("rollback", "--workspace", ws, "--serve-command", bin, "--to", to); code != 2 || !strings.Contains(errs, "--to "+to) {
			t.Fatalf("rollback --to %s = %d\n%s\n%s", to, code, out, errs)
		}
	}
	if st, _ := local.ReadState(context.Background(), state, "djia30"); len(st.Variants) != 0 {
		t.Fatalf("a refused or planned rollback started %+v", st.Variants)
	}

	// 4. The next run restores v1, then rolls v2 out by canary.
	if code, out, errs = run(append([]string{"run", "--workspace", ws, "--commit", "c3", "--serve-command", bin}, load...)...); code != 0 {
		t.Fatalf("run after the stop = %d\n%s\n%s", code, out, errs)
	}
	st, before := written()
	if st.Phase != "Succeeded" || st.StableVersion != 2 || events(st) != "promoted,step,step,interrupted,restored,step,step,step,promoted" {
		t.Fatalf("status after the run = %+v", st)
	}

	// 5. Every server stops again; the unchanged branch runs again (its tip
	// is the write-back): v2 serves again, nothing is written back.
	killAll(t, state)
	if code, out, errs = run("run", "--workspace", ws, "--commit", "writeback-of-c3", "--serve-command", bin); code != 0 {
		t.Fatalf("rerun = %d\n%s\n%s", code, out, errs)
	}
	if s, _ := local.ReadState(context.Background(), state, "djia30"); s.Get("stable") == nil || s.Get("stable").Model.Version != 2 {
		t.Fatalf("after the rerun: %+v", s)
	}
	if _, after := written(); after != before {
		t.Fatalf("the rerun wrote the status back:\n%s", after)
	}
}

// The canary edges of the operator's night, by the exit codes and texts
// of the CLI: a by-hand deploy with no traffic sends its own (no "no data"
// rollback); a version that cannot load is a failed canary, exit 3 at
// once, recorded; rollback --to an unknown version exit 2 at once, not
// recorded; a corrupted status file is exit 2 naming it, the history left
// as it was.
func TestCLICanaryEdges(t *testing.T) {
	bin := build(t)
	ws, state, remote := deployWorkspace(t, map[int]string{1: "", 2: "", 6: `{"loadError":"Could not parse saved_model.pb"}`}, "  canary: {steps: [50, 100], interval: 300ms, threshold: 1, minRequests: 5, successRate: 99, maxLatencyP99: 1s}\n")
	spec := func(v int) { writeSpec(t, ws, v) }
	t.Cleanup(func() { killAll(t, state) })
	run := func(args ...string) (int, string, string) { return runCLI(context.Background(), args...) }
	history := func() string {
		raw, _ := remote.ReadFile(context.Background(), "deploy-model", records.DeployStatusPath)
		var st records.DeployStatus
		json.Unmarshal(raw, &st)
		var k []string
		for _, e := range st.History {
			if e.Event != "step" && e.Event != "analysis-failed" {
				k = append(k, fmt.Sprintf("%s v%d", e.Event, e.Version))
			}
		}
		return strings.Join(k, ", ")
	}
	spec(1)
	if code, out, errs := run("run", "--workspace", ws, "--commit", "c1", "--serve-command", bin); code != 0 {
		t.Fatalf("run v1 = %d\n%s\n%s", code, out, errs)
	}
	// By hand, no traffic: the agent's own analysis traffic (auto).
	spec(2)
	code, out, errs := run("run", "--workspace", ws, "--commit", "c2", "--serve-command", bin, "--load-body", `{"instances":[[1]]}`)
	if code != 0 || !strings.Contains(errs, "analysis traffic: ") || !strings.Contains(out, "djia30: Succeeded; stable v2") {
		t.Fatalf("by-hand deploy of v2 = %d\n%s\n%s", code, out, errs)
	}
	// v6 cannot load: exit 3 at once, recorded.
	spec(6)
	start := time.Now()
	code, out, errs = run("run", "--workspace", ws, "--commit", "c6", "--serve-command", bin, "--load-body", `{"instances":[[1]]}`)
	if code != 3 || !strings.Contains(out, "djia30: RolledBack; stable v2 (canary v6 cannot load: start canary djia30 v6") || !strings.Contains(errs, "failed to load: INVALID_ARGUMENT: Could not parse saved_model.pb") || !strings.Contains(errs, "fix: the version cannot load") {
		t.Fatalf("run v6 = %d\n%s\n%s", code, out, errs)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("the failed load took %v", d)
	}
	if got := history(); got != "promoted v1, promoted v2, rolled-back v6" {
		t.Fatalf("history = %s", got)
	}
	// rollback --to 99: refused at once, nothing recorded.
	before := history()
	start = time.Now()
	code, _, errs = run("rollback", "--workspace", ws, "--serve-command", bin, "--to", "99")
	if code != 2 || !strings.Contains(errs, "--to 99: v99 never served djia30 (the deploy history knows v1, v2)") || time.Since(start) > 5*time.Second {
		t.Fatalf("rollback --to 99 = %d after %v\n%s", code, time.Since(start), errs)
	}
	if history() != before {
		t.Fatalf("the refused rollback was recorded: %s", history())
	}
	// No traffic and nothing to send: the rollout waits, saying where to
	// send traffic, then gives up without blaming the model (exit 1).
	spec(1)
	code, out, errs = run("run", "--workspace", ws, "--commit", "c8", "--serve-command", bin)
	if code != 1 || !strings.Contains(errs, "no predict body for the analysis traffic: pass --load-body") ||
		!strings.Contains(errs, "waiting for traffic at 50%: 0 canary requests in the interval, need 5; send predict requests to http://127.0.0.1:") ||
		!strings.Contains(errs, "fix: the canary got too few requests to judge") || strings.Contains(errs, "fix the model") {
		t.Fatalf("run with no traffic = %d\n%s\n%s", code, out, errs)
	}
	before = history()
	// history lists it all; -o json too.
	code, out, _ = run("history", "--workspace", ws)
	if code != 0 || !strings.HasPrefix(out, "djia30: ") || !strings.Contains(out, "served as stable: v1, v2") || !strings.Contains(out, "rolled-back      canary v6 cannot load") || !strings.Contains(out, "waiting          waiting for traffic at 50%") {
		t.Fatalf("history = %d\n%s", code, out)
	}
	code, out, _ = run("history", "--workspace", ws, "-o", "json")
	var hj struct {
		Outputs struct {
			Served  []int64               `json:"served"`
			History []records.DeployEvent `json:"history"`
		} `json:"outputs"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &hj) != nil || fmt.Sprint(hj.Outputs.Served) != "[1 2]" || len(hj.Outputs.History) == 0 {
		t.Fatalf("history -o json = %d\n%s", code, out)
	}
	// A corrupted deploy status on the deploy branch: exit 2 naming it.
	good, _ := remote.ReadFile(context.Background(), "deploy-model", records.DeployStatusPath)
	if _, err := remote.WriteBack(context.Background(), forge.WriteBack{Branch: "deploy-model", Message: "truncate",
		Files: map[string][]byte{records.DeployStatusPath: good[:len(good)/2]}}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"run", "--commit", "c7"}, {"rollback"}, {"status"}} {
		code, _, errs = run(append(args, "--workspace", ws, "--serve-command", bin)...)
		if code != 2 || !strings.Contains(errs, "the deploy status .branchml/deploy-status.json on branch deploy-model is corrupted") || !strings.Contains(errs, "fix: restore it from the branch's history") {
			t.Fatalf("%v with a corrupted status = %d\n%s", args, code, errs)
		}
	}
	if raw, _ := remote.ReadFile(context.Background(), "deploy-model", records.DeployStatusPath); string(raw) != string(good[:len(good)/2]) {
		t.Fatal("the corrupted status was overwritten")
	}
}

// stages.deploy.requireApproval: a commit that did not arrive through an
// approved pull request is refused, exit 2, before any work (no serving
// plane started); after a reviewer approved and merged, the stage runs.
func TestCLIRequireApproval(t *testing.T) {
	bin := build(t)
	ws := t.TempDir()
	state := filepath.Join(ws, "state")
	os.MkdirAll(filepath.Join(ws, "models", "djia30", "1"), 0o755)
	cfg := `apiVersion: branchml.dev/v1
project: djia30
branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}
stages:
  deploy: {requireApproval: true}
deploy:
  model: djia30
backends:
  stateDir: ` + state + "\n"
	os.WriteFile(filepath.Join(ws, "branchml.yaml"), []byte(cfg), 0o644)
	os.WriteFile(filepath.Join(ws, "deploy.yaml"), []byte("apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 1, volume: djia30-model, path: models/djia30}\n"), 0o644)
	ctx := context.Background()
	remote, err := gitremote.Init(ctx, filepath.Join(state, "forge", "djia30.git"), map[string][]byte{"README.md": []byte("ml repo\n")}, []string{"main", "deploy-model", "training"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killAll(t, state) })
	run := func(args ...string) (int, string, string) { return runCLI(ctx, args...) }
	pushed, err := remote.WriteBack(ctx, forge.WriteBack{Branch: "training", Message: "someone's push", Files: map[string][]byte{"deploy.yaml": []byte("x\n")}})
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs := run("run", "--workspace", ws, "--commit", pushed, "--serve-command", bin)
	if code != 2 || !strings.Contains(errs, "stages.deploy.requireApproval: commit ") || !strings.Contains(errs, "did not arrive through a merged pull request") ||
		!strings.Contains(errs, "fix: merge into deploy-model through a pull request with an approving review") {
		t.Fatalf("unreviewed commit = %d\n%s", code, errs)
	}
	if _, _, ok := local.PlaneOwner(state, "djia30"); ok {
		t.Fatal("a refused run started the serving plane")
	}
	pr, _ := remote.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "deploy-model", Title: "Promote v1", Author: "branchml"})
	merge, err := remote.MergeAs(ctx, pr.Number, "reviewer")
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errs = run("run", "--workspace", ws, "--commit", merge, "--serve-command", bin); code != 2 || !strings.Contains(errs, "arrived through pull request #1, which no reviewer approved") {
		t.Fatalf("unapproved merge = %d\n%s", code, errs)
	}
	// Approved: merged again through a second, approved pull request.
	remote.WriteBack(ctx, forge.WriteBack{Branch: "training", Message: "v1 again", Files: map[string][]byte{"deploy.yaml": []byte("y\n")}})
	pr2, _ := remote.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "deploy-model", Title: "Promote v1", Author: "branchml"})
	if _, err := remote.Review(ctx, pr2.Number, "reviewer", "APPROVED", ""); err != nil {
		t.Fatal(err)
	}
	merge2, err := remote.MergeAs(ctx, pr2.Number, "reviewer")
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errs := run("run", "--workspace", ws, "--commit", merge2, "--serve-command", bin); code != 0 {
		t.Fatalf("approved merge = %d\n%s\n%s", code, out, errs)
	}
	// A dry run (a change request) only plans: no gate.
	if code, _, errs := run("run", "--workspace", ws, "--commit", pushed, "--dry-run"); code != 0 {
		t.Fatalf("dry run = %d\n%s", code, errs)
	}
}

// run --serve hosts the serving plane in the process itself and keeps
// serving after the rollout until interrupted; then it stops the plane and
// every model server.
func TestCLIRunServeHostsThePlane(t *testing.T) {
	bin := build(t)
	ws := t.TempDir()
	state := filepath.Join(ws, "state")
	os.MkdirAll(filepath.Join(ws, "models", "djia30", "1"), 0o755)
	os.WriteFile(filepath.Join(ws, "branchml.yaml"), []byte("apiVersion: branchml.dev/v1\nproject: djia30\nbranches: {build: b, pipeline: p, train: t, deploy: deploy-model}\ndeploy:\n  model: djia30\nbackends:\n  stateDir: "+state+"\n"), 0o644)
	os.WriteFile(filepath.Join(ws, "deploy.yaml"), []byte("apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 1, volume: djia30-model, path: models/djia30}\n"), 0o644)
	if _, err := gitremote.Init(context.Background(), filepath.Join(state, "forge", "djia30.git"), map[string][]byte{"README.md": []byte("x\n")}, []string{"main", "deploy-model"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- cli.Run(ctx, stage.App(), []string{"branchml-deploy", "run", "--workspace", ws, "--commit", "c1", "--serve-command", bin, "--serve"}, cli.Streams{Out: &bytes.Buffer{}, Err: &errb})
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if st, _ := local.ReadState(context.Background(), state, "djia30"); st.Get("stable") != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing served:\n%s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	owner, _, ok := local.PlaneOwner(state, "djia30")
	if !ok || owner.PID != os.Getpid() || owner.What != "branchml-deploy run --serve" {
		t.Fatalf("plane owner = %+v, %v", owner, ok)
	}
	st, _ := local.ReadState(context.Background(), state, "djia30")
	pid := st.Get("stable").PID
	cancel()
	if code := <-done; code != 0 && code != 130 {
		t.Fatalf("run --serve = %d\n%s", code, errb.String())
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("model server %d survives run --serve", pid)
	}
	if _, _, ok := local.PlaneOwner(state, "djia30"); ok {
		t.Fatal("the plane survives run --serve")
	}
}

// A serving setting that the backend refuses (here a kubeconfig that is
// not there) is bad configuration, exit 2, naming it; nothing is deployed.
func TestServingConfigErrorIsUsage(t *testing.T) {
	ws, _, _ := deployWorkspace(t, map[int]string{1: ""}, "")
	writeSpec(t, ws, 1)
	kc := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	code, _, errs := runCLI(context.Background(), "run", "--workspace", ws, "--commit", "c1",
		"--set", "backends.serving.type=kubernetes", "--set", "backends.serving.kubeconfig="+kc, "--set", "deploy.serving.image=registry.example/serve:1",
		"--set", "deploy.canary.steps=[25, 50, 100]")
	if code != 2 || !strings.Contains(errs, "kubernetes client config (backends.serving.kubeconfig") || !strings.Contains(errs, "fix the setting it names") {
		t.Fatalf("exit %d, want 2 naming the kubeconfig\n%s", code, errs)
	}
}
