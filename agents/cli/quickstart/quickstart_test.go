package quickstart

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge/gitremote"
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

// The main job end to end on the real DJIA 30 data: interrupted during
// training, then run to the end, then run again (nothing new).
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
		"KPI gate passed; pull request #1 branchml/promote-djia30-v1 → deploy-model",
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
		"KPI gate passed; pull request #2 branchml/promote-djia30-v3 → deploy-model",
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
	out = &syncWriter{}
	sum, err = Run(context.Background(), Options{Workdir: work, Out: out})
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	text = out.String()
	for _, want := range []string{"ds1 already has examples/djia30", "built 0 of 3 components, 3 unchanged", "unchanged", "SUCCEEDED (reused)"} {
		if !strings.Contains(text, want) {
			t.Errorf("rerun output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "pass 1") || strings.Contains(text, " created") || strings.Contains(text, "pull request #3") {
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
	if len(prs) != 2 || prs[0].Head != "branchml/promote-djia30-v1" || prs[1].Head != "branchml/promote-djia30-v3" {
		t.Errorf("pull requests = %+v, want v1's and v3's (none for v2)", prs)
	}
}

func TestFindDataExplainsHowToGetIt(t *testing.T) {
	_, err := findData("", t.TempDir())
	if !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "szrlee/stock-time-series-20050101-to-20171231") {
		t.Errorf("err = %v", err)
	}
	if _, err := findData(filepath.Join(t.TempDir(), "missing"), "."); err == nil || !strings.Contains(err.Error(), "--data") {
		t.Errorf("err = %v", err)
	}
}
