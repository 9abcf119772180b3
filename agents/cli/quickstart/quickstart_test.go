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
	// then the tuning change flows through every stage.
	if got := strings.Join(names, ","); got != "repository,build,pipeline,train,deploy,build,pipeline,train,deploy" {
		t.Errorf("stages = %s", got)
	}
	for _, want := range []string{
		"build      ", "built 0 of 3 components, 3 unchanged", // pass 2 rebuilds nothing
		"pipeline djia30-sentiment version", "unchanged",
		"KPI gate passed; pull request #2 branchml/promote-djia30-v2 → deploy-model",
		"djia30: Succeeded; stable v2 (v2 promoted after 4 steps)",
		"canary v2 at 10%", "canary v2 at 25%", "canary v2 at 50%", "canary v2 at 100%",
		"→ data snapshot   djia30-data-lin-", "→ model snapshot  djia30-model-lin-", "→ model version   djia30 version 2 at djia30",
		"| **model** | validation | 0.5141 | 0.5163 | 0.6923 |",
		"| always_bullish | validation | 0.5219 | 0.5000 | 0.6925 |",
		`response: {"predictions":[[`,
		"→ P(AAPL closes higher the trading day after 2017-12-28) = ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if p := sum.Prediction; p == nil || p.Probability <= 0 || p.Probability >= 1 || p.Date != "2017-12-28" || p.Actual != 0 {
		t.Errorf("prediction = %+v", sum.Prediction)
	}
	report, err := os.ReadFile(sum.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"![training curves](training_curves.png)", "```mermaid", "## Lineage", "## Prediction"} {
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
	if snapsBefore != 4 {
		t.Errorf("snapshots = %d, want 4 (data and model of two runs)", snapsBefore)
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
	if len(prs) != 2 {
		t.Errorf("pull requests = %d, want 2", len(prs))
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
