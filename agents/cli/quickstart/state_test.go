package quickstart

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
)

// A quickstart killed after it pushed its change to ds1 and before it
// noted the new tip: the rerun still takes ds1 for its own (so it goes on
// with the scripted passes instead of one pass of "ds1 as you left it").
// commitChange hands over the SHA before the push; a tip that is neither
// the noted nor the pending commit stays a person's.
func TestOwnsDS1AfterAKillBetweenPushAndNote(t *testing.T) {
	ctx := context.Background()
	work := t.TempDir()
	remote, clone := filepath.Join(work, "remote.git"), filepath.Join(work, "clone")
	example, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "djia30", "branchml.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := gitremote.Init(ctx, remote, map[string][]byte{"branchml.yaml": example}, []string{"ds1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := git(ctx, work, "clone", "--quiet", remote, clone); err != nil {
		t.Fatal(err)
	}
	r := &run{opt: Options{Workdir: work}, repo: &mlRepo{Remote: remote, Clone: clone}, state: &qsState{Ran: map[string]string{}}}
	if err := r.noteDS1(ctx); err != nil {
		t.Fatal(err)
	}
	before := r.state.DS1
	var tipAtPending string
	err = r.repo.commitChange(ctx, "ds1", "branchml.yaml", 1, dsChanges[0].message, func(sha string) error {
		tipAtPending, _ = r.repo.tip(ctx, "ds1")
		return r.pendingDS1(sha) // what flow and the example sync pass
	})
	if err != nil {
		t.Fatal(err)
	}
	// Killed here: noteDS1 never ran. The rerun reads the state from disk.
	tip, _ := r.repo.tip(ctx, "ds1")
	if tipAtPending != before || tip == before {
		t.Fatalf("the pending commit was recorded with ds1 at %s (want the old tip %s, before the push); tip after the push %s", tipAtPending, before, tip)
	}
	st, err := readState(work)
	if err != nil {
		t.Fatal(err)
	}
	rerun := &run{opt: r.opt, repo: r.repo, state: st}
	if owns, got, err := rerun.ownsDS1(ctx); err != nil || !owns || got != tip {
		t.Fatalf("after a kill between push and note: owns %v (tip %s), %v; want the pushed commit %s taken as the quickstart's", owns, got, err, tip)
	}
	if err := rerun.noteDS1(ctx); err != nil || rerun.state.DS1 != tip || rerun.state.DS1Pending != "" {
		t.Fatalf("noteDS1: %+v, %v", rerun.state, err)
	}
	// A person's commit on top is not the quickstart's.
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Message: "a person's change", Files: map[string][]byte{"notes.txt": []byte("mine\n")}}); err != nil {
		t.Fatal(err)
	}
	if owns, _, err := rerun.ownsDS1(ctx); err != nil || owns {
		t.Fatalf("a person's commit on ds1: owns %v, %v; want false", owns, err)
	}
}
