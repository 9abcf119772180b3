package quickstart

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	slocal "github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
)

// syncWriter is a bytes.Buffer safe for the stages' goroutines, calling
// onLine for every write.
type syncWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	onLine func(string)
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.onLine != nil {
		w.onLine(string(p))
	}
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// processesUnder lists the command lines of live processes that run a file
// under dir (task binaries, model servers unpacked into the state dir).
func processesUnder(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(string(raw), "\x00", " ")
		if strings.HasPrefix(cmd, dir) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}

// The test binary doubles as an independent load generator
// (QUICKSTART_TEST_LOAD=1: loadgen.Main on its arguments).
func TestMain(m *testing.M) {
	if os.Getenv("QUICKSTART_TEST_LOAD") == "1" {
		os.Exit(loadgen.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// The main job end to end on the real DJIA 30 data: interrupted during
// training, then run to the end, then run again (nothing new), then the
// operator's night on its gateway under load, then README's by-hand
// section as it is written.
func TestQuickstartEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end quickstart skipped with -short")
	}
	if _, err := findData("", "."); err != nil {
		t.Skipf("no DJIA 30 data beside the checkout: %v", err)
	}
	work := t.TempDir()
	t.Cleanup(func() {
		if ps := processesUnder(work); len(ps) > 0 {
			t.Errorf("processes left running:\n%s", strings.Join(ps, "\n"))
		}
	})

	// 1. SIGINT (a cancelled context) while the first model trains.
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncWriter{onLine: func(line string) {
		if strings.Contains(line, "pipeline ") && strings.Contains(line, " created") {
			cancel()
		}
	}}
	_, err := Run(ctx, Options{Workdir: work, Out: out})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: err = %v\n%s", err, out)
	}
	if ps := processesUnder(work); len(ps) > 0 {
		t.Fatalf("processes left after the interrupt:\n%s", strings.Join(ps, "\n"))
	}

	// 2. The next run continues and finishes.
	out = &syncWriter{}
	sum, err := Run(context.Background(), Options{Workdir: work, Out: out})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	text := out.String()
	var names []string
	for _, s := range sum.Stages {
		names = append(names, s.Name)
	}
	// The interrupted pass is finished first (build and pipeline unchanged),
	// then each data-science change flows through the stages: the gate stops
	// pass 2 before deploy-model, pass 3 rolls out.
	if got := strings.Join(names, ","); got != "repository,build,pipeline,train,deploy,build,pipeline,train,build,pipeline,train,deploy" {
		t.Errorf("stages = %s", got)
	}
	for _, want := range []string{
		"build      ", "built 0 of 3 components, 3 unchanged", // passes 2 and 3 rebuild nothing
		"pipeline djia30-sentiment version", "unchanged",
		"KPI gate passed; pull request #4 branchml/promote-djia30-v1 → deploy-model",
		"training: pull request #3 from kf-pipeline, approved and merged by reviewer",
		`→ pull request    #10 "Merge kf-pipeline into training" by data-scientist, approved by reviewer, merged by reviewer`,
		// Pass 1: the logistic regression clears both baselines with confidence.
		"auc vs same_as_today       0.6109     0.5280      +0.0829  [+0.0660, +0.1000]    0.02  passed",
		"log_loss vs prior          0.5799     0.5884      +0.0085  [+0.0016, +0.0143]       0  passed",
		"auc vs champion                 –          –            –                   –       0  skipped: no champion: nothing is deployed on deploy-model yet",
		// Pass 2: worse than the champion; stopped, nothing merged or deployed.
		"SUCCEEDED; KPI gate failed",
		"pass 2: the KPI gate stopped djia30 v2; deploy-model untouched",
		"not met: auc vs champion v1: improvement -0.0057, 95% interval [-0.0152, +0.0037]: the lower bound does not clear the margin 0",
		"deploy-model: untouched: no pull request, deploy-model stays at ",
		// Pass 3: better than the champion on the same examples; canary.
		"auc       0.6201 [0.6016, 0.6398]  0.6109 [0.5928, 0.6289]  0.5280 [0.5167, 0.5390]  0.5000 [0.5000, 0.5000]",
		"auc vs champion v1         0.6201     0.6109      +0.0092  [+0.0010, +0.0181]       0  passed",
		"KPI gate passed; pull request #11 branchml/promote-djia30-v3 → deploy-model",
		"djia30: Succeeded; stable v3 (v3 promoted after 4 steps)",
		"canary v3 at 10%", "canary v3 at 25%", "canary v3 at 50%", "canary v3 at 100%",
		"→ data snapshot   djia30-data-lin-", "→ model snapshot  djia30-model-lin-", "→ model version   djia30 version 3 at djia30",
		"| **model** | test | 0.7223 | 0.6201 | 0.5752 |",
		"| same_as_today | test | 0.7248 | 0.5280 | 0.5894 |",
		`response: {"predictions":[[`,
		"→ P(AAPL moves more than its 20-day σ on the trading day after 2017-12-28) = 0.2646 (it actually did)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if len(sum.Passes) != 3 || !sum.Passes[1].Blocked || sum.Passes[0].Blocked || sum.Passes[2].Blocked {
		t.Errorf("passes = %+v", sum.Passes)
	}
	if p := sum.Prediction; p == nil || p.Probability <= 0 || p.Probability >= 1 || p.Date != "2017-12-28" || p.Actual != 1 {
		t.Errorf("prediction = %+v", sum.Prediction)
	}
	report, err := os.ReadFile(sum.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"![training curves](training_curves.png)", "```mermaid", "## Lineage", "## Prediction",
		"## Pass 2: Tune: a deeper network (hidden 32,16) at learning rate 0.003", "KPI gate **failed**.",
		"| auc vs champion v1 | 0.6052 | 0.6109 | -0.0057 | [-0.0152, +0.0037] | 0 | failed |"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "report", "training_curves.png")); err != nil {
		t.Error(err)
	}
	if t.Failed() {
		t.Logf("output:\n%s", text)
	}

	// 3. Again on the same workdir: nothing rebuilt, no new pipeline
	// version, no new run, no new pull request, no commit on any branch, no
	// new snapshot.
	tips := func() string {
		s, err := git(context.Background(), filepath.Join(work, "remote.git"), "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	snapshots := func() int {
		ents, _ := os.ReadDir(filepath.Join(work, "state", "snapshots"))
		return len(ents)
	}
	tipsBefore, snapsBefore := tips(), snapshots()
	if snapsBefore != 6 {
		t.Errorf("snapshots = %d, want 6 (data and model of three runs; the gate comes after the snapshots)", snapsBefore)
	}
	bin := buildAgents(t)
	out = &syncWriter{}
	sum, err = Run(context.Background(), Options{Workdir: work, Out: out, BinDir: bin})
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	exports := exportLines(t, out.String())
	text = out.String()
	for _, want := range []string{"ds1 already has examples/djia30", "built 0 of 3 components, 3 unchanged", "unchanged", "SUCCEEDED (reused)"} {
		if !strings.Contains(text, want) {
			t.Errorf("rerun output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "pass 1") || strings.Contains(text, " created") || strings.Contains(text, "pull request #12") {
		t.Errorf("rerun did new work:\n%s", text)
	}
	f, err := gitremote.New(filepath.Join(work, "remote.git"))
	if err != nil {
		t.Fatal(err)
	}
	if got := tips(); got != tipsBefore {
		t.Errorf("branches moved on the rerun:\nbefore %s\nafter  %s", tipsBefore, got)
	}
	if got := snapshots(); got != snapsBefore {
		t.Errorf("snapshots %d after the rerun, %d before", got, snapsBefore)
	}
	prs, _ := f.ListPullRequests(context.Background(), "all")
	var promotions []string
	for _, pr := range prs {
		if strings.HasPrefix(pr.Head, "branchml/promote-") {
			promotions = append(promotions, pr.Head)
		}
	}
	if len(prs) != 11 || strings.Join(promotions, " ") != "branchml/promote-djia30-v1 branchml/promote-djia30-v3" {
		t.Errorf("pull requests = %d, promotions %v; want 11: three stage merges per pass and the promotions of v1 and v3 (none for v2, which the gate stopped)", len(prs), promotions)
	}
	for _, pr := range prs {
		if pr.State != "merged" || pr.MergedBy != "reviewer" || fmt.Sprint(pr.Approvers()) != "[reviewer]" {
			t.Errorf("pull request #%d: %s, merged by %q, approved by %v", pr.Number, pr.State, pr.MergedBy, pr.Approvers())
		}
	}
	if t.Failed() {
		return
	}

	// 4. The operator's night on the quickstart's own gateway: while
	// quickstart --serve serves, an independent load generator sends ≥100
	// predicts/s through its gateway; a by-hand rollback, a by-hand deploy,
	// a rollback during a rollout and two concurrent deploys run as
	// processes of their own. Not one request fails, and every model
	// server that runs is one status knows.
	operatorsNight(t, work, exports, sum.Prediction)
	if t.Failed() {
		return
	}

	// 5. README's "Running an agent by hand", every block as it is written,
	// with nothing but the summary's export lines before it.
	t.Cleanup(func() { slocal.StopPlane(filepath.Join(work, "state"), "djia30", 10*time.Second) }) // should a block fail before its 'serve --stop'
	for i, block := range readmeBlocks(t) {
		t.Logf("README block %d:\n%s", i+1, block)
		out, err := shell(t, exports, block, 10*time.Minute)
		if err != nil {
			t.Fatalf("README block %d failed: %v\n%s", i+1, err, out)
		}
		t.Logf("README block %d output:\n%s", i+1, out)
	}
	// The data scientist's change reached serving: a third model, through
	// pull requests only; the quickstart did not rewrite their commit.
	st, err := slocal.ReadState(context.Background(), filepath.Join(work, "state"), "djia30")
	if err != nil || len(st.Variants) != 0 {
		t.Errorf("after the README: serving %+v, %v (the last --continue stops its plane)", st, err)
	}
	ds1, _ := git(context.Background(), filepath.Join(work, "remote.git"), "log", "-1", "--format=%s", "refs/heads/ds1")
	if ds1 != "Allow 40 epochs" {
		t.Errorf("ds1's tip is %q, want the data scientist's commit", ds1)
	}
	raw, _ := git(context.Background(), filepath.Join(work, "remote.git"), "show", "refs/heads/deploy-model:.branchml/deploy-status.json")
	if !strings.Contains(raw, `"stableVersion": 3`) {
		t.Errorf("deploy status after the README:\n%s", raw)
	}
	// A plain quickstart after it leaves the person's ds1 alone.
	out = &syncWriter{}
	if _, err := Run(context.Background(), Options{Workdir: work, Out: out}); err != nil {
		t.Fatalf("quickstart after the README: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "ds1 has commits of yours (tip ") || strings.Contains(out.String(), "— pass 1") {
		t.Errorf("quickstart after the README:\n%s", out)
	}
	if again, _ := git(context.Background(), filepath.Join(work, "remote.git"), "log", "-1", "--format=%s", "refs/heads/ds1"); again != "Allow 40 epochs" {
		t.Errorf("the quickstart rewrote ds1: its tip is %q", again)
	}
}

// buildAgents builds the agents into a directory (for the by-hand steps).
func buildAgents(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	out, err := exec.Command("go", "build", "-o", bin, "github.com/branchml/branchml/agents/cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("build the agents: %v\n%s", err, out)
	}
	return bin
}

// exportLines are the "export" lines of the summary.
func exportLines(t *testing.T, summary string) string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(summary, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "export ") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "export PATH=") {
		t.Fatalf("the summary prints no export lines (PATH first):\n%s", summary)
	}
	return strings.Join(lines, "\n")
}

// readmeBlocks are the sh blocks of README.md's by-hand section.
func readmeBlocks(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Running an agent by hand\n")
	if !ok {
		t.Fatal(`README.md has no "## Running an agent by hand" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, part := range strings.Split(section, "```sh\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if !ok {
			t.Fatal("an unclosed sh block in README's by-hand section")
		}
		blocks = append(blocks, block)
	}
	if len(blocks) < 3 {
		t.Fatalf("README's by-hand section has %d sh blocks", len(blocks))
	}
	return blocks
}

// shell runs script after the export lines in bash (-e, -u, pipefail),
// with a clean environment but for what a person has, bounded in time.
func shell(t *testing.T, exports, script string, limit time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", exports+"\n"+script)
	cmd.Dir = t.TempDir()
	cmd.Env = personEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// personEnv is the environment of a person at a terminal: no test or
// branchml variables, a git identity of their own.
func personEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BRANCHML_") || strings.HasPrefix(k, "GIT_") || strings.HasPrefix(k, "QUICKSTART_") || k == "PWD" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GIT_AUTHOR_NAME=Ana Data", "GIT_AUTHOR_EMAIL=ana@example.com", "GIT_COMMITTER_NAME=Ana Data", "GIT_COMMITTER_EMAIL=ana@example.com",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
}

// operatorsNight is step 4 of the end-to-end test.
func operatorsNight(t *testing.T, work, exports string, pred *Prediction) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serving := make(chan string, 1)
	out := &syncWriter{onLine: func(line string) {
		if _, rest, ok := strings.Cut(line, "Serving djia30 at "); ok {
			url, _, _ := strings.Cut(rest, "/v1/models/")
			select {
			case serving <- url:
			default:
			}
		}
	}}
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{Workdir: work, Out: out, Serve: true})
		done <- err
	}()
	var url string
	select {
	case url = <-serving:
	case err := <-done:
		t.Fatalf("quickstart --serve ended: %v\n%s", err, out)
	case <-time.After(5 * time.Minute):
		t.Fatalf("quickstart --serve did not serve:\n%s", out)
	}
	stopQuickstart := func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("quickstart --serve: %v", err)
		}
	}
	defer func() {
		if cancel != nil {
			stopQuickstart()
		}
	}()
	// A second quickstart on the workdir is refused, naming the one that runs.
	if _, err := Run(context.Background(), Options{Workdir: work, Out: &syncWriter{}}); err == nil ||
		!strings.Contains(err.Error(), fmt.Sprintf("a quickstart is already running on %s: pid %d (branchml quickstart, since ", work, os.Getpid())) {
		t.Errorf("a second quickstart: %v", err)
	}
	stopFile := filepath.Join(t.TempDir(), "stop")
	load := exec.Command(os.Args[0], url+"/v1/models/djia30:predict", "150", "600", stopFile, string(pred.Request))
	load.Env = append(os.Environ(), "QUICKSTART_TEST_LOAD=1")
	var loadOut, loadErr bytes.Buffer
	load.Stdout, load.Stderr = &loadOut, &loadErr
	load.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := time.Now()
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(work, "jenkins", "workspace", "deploy-model")
	agentCmd := func(args string) *exec.Cmd {
		c := exec.Command("bash", "-euo", "pipefail", "-c", exports+"\ncd "+ws+"\n"+args)
		c.Env = personEnv()
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return c
	}
	run := func(what, args string, code int) string {
		t.Helper()
		c := agentCmd(args)
		b, err := c.CombinedOutput()
		got := 0
		if ee, ok := err.(*exec.ExitError); ok {
			got = ee.ExitCode()
		} else if err != nil {
			got = -1
		}
		if got != code {
			t.Errorf("%s: exit %d, want %d\n%s", what, got, code, b)
		}
		return string(b)
	}
	stateDir := filepath.Join(work, "state")
	waitCanary := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); ; {
			if st, _ := slocal.ReadState(context.Background(), stateDir, "djia30"); st.CanaryWeight > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no canary took traffic", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(time.Second)
	run("by-hand rollback", "branchml-deploy rollback", 0)
	run("by-hand deploy", "branchml-deploy run", 0)
	run("rollback before the next rollout", "branchml-deploy rollback", 0)
	rollout := agentCmd("branchml-deploy run")
	var rolloutOut bytes.Buffer
	rollout.Stdout, rollout.Stderr = &rolloutOut, &rolloutOut
	if err := rollout.Start(); err != nil {
		t.Fatal(err)
	}
	waitCanary("the rollout")
	run("rollback during the rollout", "branchml-deploy rollback", 0)
	if err := rollout.Wait(); err == nil || err.(*exec.ExitError).ExitCode() != 3 || !strings.Contains(rolloutOut.String(), "preempted by pid ") {
		t.Errorf("the preempted rollout: %v\n%s", err, rolloutOut.String())
	}
	a, b := agentCmd("branchml-deploy run"), agentCmd("branchml-deploy run")
	var aOut, bOut bytes.Buffer
	a.Stdout, a.Stderr, b.Stdout, b.Stderr = &aOut, &aOut, &bOut, &bOut
	a.Start()
	b.Start()
	if errA, errB := a.Wait(), b.Wait(); errA != nil || errB != nil {
		t.Errorf("two deploys at once: %v, %v\n%s\n---\n%s", errA, errB, aOut.String(), bOut.String())
	}
	if !strings.Contains(aOut.String()+bOut.String(), "rollout in progress by pid ") {
		t.Errorf("neither deploy waited for the other:\n%s\n---\n%s", aOut.String(), bOut.String())
	}
	os.WriteFile(stopFile, nil, 0o644)
	if err := load.Wait(); err != nil {
		t.Fatalf("load generator: %v: %s", err, loadErr.String())
	}
	var rep loadgen.Report
	if err := json.Unmarshal(loadOut.Bytes(), &rep); err != nil {
		t.Fatalf("load report %q: %v", loadOut.String(), err)
	}
	secs := time.Since(started).Seconds()
	t.Logf("load through the quickstart's gateway: %d sent in %.1fs (%.0f/s), %d failed, by variant %v", rep.Sent, secs, float64(rep.Sent)/secs, rep.Failed, rep.ByVariant)
	if rep.Failed != 0 || float64(rep.Sent)/secs < 100 {
		t.Errorf("load: %d of %d failed (%q) at %.0f/s; want 0 failed at ≥100/s", rep.Failed, rep.Sent, rep.Errors, float64(rep.Sent)/secs)
	}
	// Every model server that runs is one status knows.
	st, err := slocal.ReadState(context.Background(), stateDir, "djia30")
	if err != nil {
		t.Fatal(err)
	}
	var known []string
	for _, v := range st.Variants {
		known = append(known, fmt.Sprint(v.PID))
	}
	var running []string
	for _, p := range processesUnder(work) {
		pid, _, _ := strings.Cut(p, ":")
		running = append(running, pid)
	}
	sort.Strings(known)
	sort.Strings(running)
	if strings.Join(known, ",") != strings.Join(running, ",") || len(st.Orphans) != 0 || st.Get("stable") == nil || st.Get("stable").Model.Version != 3 {
		t.Errorf("servers running %v, status knows %v (%+v)", running, known, st)
	}
	stopQuickstart()
	cancel = nil
	if ps := processesUnder(work); len(ps) > 0 {
		t.Errorf("processes left after quickstart --serve ended:\n%s", strings.Join(ps, "\n"))
	}
}

func TestFindDataExplainsHowToGetIt(t *testing.T) {
	if _, err := findData(filepath.Join(t.TempDir(), "missing"), "."); err == nil || !strings.Contains(err.Error(), "--data") {
		t.Errorf("err = %v", err)
	}
	start := t.TempDir()
	// findData looks beside every ancestor: a shared/data/djia30 next to one
	// of the temporary directory's (a clone in /tmp with the data at
	// /tmp/shared, as the README's layout gives) is found, rightly.
	for dir := start; ; dir = filepath.Dir(dir) {
		if cand := filepath.Join(dir, "..", "shared", "data", "djia30"); dirExists(cand) {
			t.Skipf("%s exists: the not-found case cannot be seen from %s", filepath.Clean(cand), start)
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	_, err := findData("", start)
	if !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "szrlee/stock-time-series-20050101-to-20171231") {
		t.Errorf("err = %v", err)
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
