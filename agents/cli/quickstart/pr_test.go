package quickstart

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	slocal "github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/procid"
	"github.com/branchml/branchml/agents/records"
)

// Only the promotion of the training branch's latest model is merged (as
// the reviewer, after approving it); an older one left open is stale and
// stays open (a rerun used to merge it, deploying an old model).
func TestMergePromotionLeavesStalePullRequests(t *testing.T) {
	ctx := context.Background()
	work := t.TempDir()
	remote := filepath.Join(work, "remote.git")
	lock, _ := json.Marshal(records.RunRecord{RunID: "r2", State: "SUCCEEDED", Model: &records.ModelRef{Name: "djia30", Version: 2}})
	f, err := gitremote.Init(ctx, remote, map[string][]byte{"README.md": []byte("ml\n")}, []string{"main", "training", "deploy-model"})
	if err != nil {
		t.Fatal(err)
	}
	f.WriteBack(ctx, forge.WriteBack{Branch: "training", Message: "lock", Files: map[string][]byte{records.TrainingLockPath: lock}})
	for _, v := range []string{"1", "2"} {
		if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "branchml/promote-djia30-v" + v, From: "deploy-model", Message: "promote", Files: map[string][]byte{"deploy.yaml": []byte("v" + v + "\n")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "branchml/promote-djia30-v" + v, Base: "deploy-model", Title: "Promote djia30 v" + v}); err != nil {
			t.Fatal(err)
		}
	}
	out := &syncWriter{}
	r := &run{opt: Options{Workdir: work, Out: out}, started: time.Now(), repo: &mlRepo{Remote: remote}, state: &qsState{Ran: map[string]string{}}}
	merged, err := r.mergePromotion(ctx)
	if err != nil || merged != "pull request #2 (Promote djia30 v2), approved and merged by reviewer" {
		t.Fatalf("mergePromotion = %q, %v", merged, err)
	}
	if !strings.Contains(out.String(), "deploy-model: pull request #1 (Promote djia30 v1) left open: stale, the training branch's latest model is promoted by branchml/promote-djia30-v2") {
		t.Fatalf("output:\n%s", out)
	}
	prs, _ := f.ListPullRequests(ctx, "all")
	if prs[0].State != "open" || prs[1].State != "merged" || prs[1].MergedBy != "reviewer" || len(prs[1].Approvals) != 1 {
		t.Fatalf("pull requests = %+v", prs)
	}
}

// One quickstart per workdir: a second one is refused at once (exit 2),
// naming the PID that runs, and told how to wait instead of deleting
// anything; the fix texts of the quickstart never say to remove state.
func TestWorkdirLockAndFixTexts(t *testing.T) {
	work := t.TempDir()
	release, err := procid.Lock(context.Background(), filepath.Join(work, ".quickstart.lock"), procid.LockOptions{What: "branchml quickstart"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockWorkdir(context.Background(), work)
	var ae *agent.Error
	if err == nil || !strings.Contains(err.Error(), "a quickstart is already running on "+work+": pid ") || !strings.Contains(err.Error(), "(branchml quickstart, since ") {
		t.Fatalf("second lock = %v", err)
	}
	if !asAgent(err, &ae) || ae.Code != agent.ExitUsage || !strings.HasPrefix(ae.Fix, "wait for it to finish (or stop it: kill -INT ") {
		t.Fatalf("error = %#v", err)
	}
	release()
	rel, err := lockWorkdir(context.Background(), work)
	if err != nil {
		t.Fatal(err)
	}
	rel()
	// No fix text of the quickstart tells to delete the workdir or state.
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, _ := os.ReadFile(f)
		for _, bad := range []string{`"remove "+`, "rm -rf", "delete the workdir", "remove WORKDIR"} {
			if strings.Contains(string(src), bad) {
				t.Errorf("%s has a fix text that destroys state: %q", f, bad)
			}
		}
	}
}

func asAgent(err error, target **agent.Error) bool {
	e, ok := err.(*agent.Error)
	if ok {
		*target = e
	}
	return ok
}

// A quickstart uses the serving plane another process runs (a by-hand
// deploy's, a 'branchml serve') and, at its end, leaves it running: it
// stops only a plane it hosts itself (its Ctrl-C used to delete the state
// of a server a by-hand deploy had started).
func TestQuickstartLeavesAnotherPlaneRunning(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	other, err := slocal.New("djia30", nil, slocal.WithStateDir(state), slocal.WithHost(), slocal.WithOwner("branchml serve"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	r := &run{opt: Options{Out: &syncWriter{}}, started: time.Now(), env: map[string]string{"BRANCHML_BACKENDS_STATE_DIR": state}, state: &qsState{Ran: map[string]string{}}}
	cfg := &config.Config{}
	cfg.Deploy.Model = "djia30"
	b, url, err := r.serving(ctx, cfg)
	if err != nil || url != other.URL() || b.Hosted() {
		t.Fatalf("serving = %v %q hosted %v; want the running plane %s", err, url, b.Hosted(), other.URL())
	}
	r.stopServing()
	if _, u, ok := slocal.PlaneOwner(state, "djia30"); !ok || u != other.URL() {
		t.Fatal("the quickstart stopped a plane it did not start")
	}
}
