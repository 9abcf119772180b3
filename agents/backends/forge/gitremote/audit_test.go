package gitremote

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge"
)

// The audit trail of the local forge: who opened, who approved (not the
// author), who merged; the merge commit is the merger's; a commit arrives
// through the merged pull request, also under branchml's write-backs;
// requireApproval's check on top of it.
func TestReviewMergeAndAuditTrail(t *testing.T) {
	ctx := context.Background()
	f, _ := newRemote(t)
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Message: "ds1: a change", Files: map[string][]byte{"params.yaml": []byte("lr: 0.01\n")}}); err != nil {
		t.Fatal(err)
	}
	pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "training", Title: "Lower the learning rate", Author: "ds1"})
	if err != nil || pr.Author != "ds1" {
		t.Fatalf("open = %+v, %v", pr, err)
	}
	if _, err := f.Review(ctx, pr.Number, "ds1", "APPROVED", ""); err == nil || !strings.Contains(err.Error(), "cannot approve or request changes on their own pull request") {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := f.Review(ctx, pr.Number, "alice", "CHANGES_REQUESTED", "why?"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Review(ctx, pr.Number, "bob", "APPROVED", "lgtm"); err != nil {
		t.Fatal(err)
	}
	rec, err := f.Review(ctx, pr.Number, "alice", "APPROVED", "ok")
	if err != nil || !reflect.DeepEqual(rec.Approvers(), []string{"alice", "bob"}) {
		t.Fatalf("approvals = %+v, %v", rec, err)
	}
	head, _ := f.remoteTip(ctx, "ds1")
	if rec.Approvals[0].Commit != head {
		t.Fatalf("approval on %s, head %s", rec.Approvals[0].Commit, head)
	}
	merge, err := f.MergeAs(ctx, pr.Number, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if who, _ := f.git.run(ctx, f.local, nil, nil, "log", "-1", "--format=%an <%ae>", merge); who != "carol <carol@localhost>" {
		t.Fatalf("merge commit by %q", who)
	}
	got, err := f.PullRequest(ctx, pr.Number)
	if err != nil || got.State != "merged" || got.MergedBy != "carol" || got.MergeCommit != merge || got.MergedAt == nil || len(got.Approvals) != 2 {
		t.Fatalf("merged record = %+v, %v", got, err)
	}
	// The merge commit and a write-back on top of it arrived through #1;
	// another commit did not.
	wb, err := f.WriteBack(ctx, forge.WriteBack{Branch: "training", Message: "branchml train: run r1", Files: map[string][]byte{".branchml/runs/r1.json": []byte("{}\n")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{merge, wb} {
		via, err := f.MergedPullRequest(ctx, "training", c)
		if err != nil || via == nil || via.Number != pr.Number || via.MergedBy != "carol" || !reflect.DeepEqual(via.Approvers(), []string{"alice", "bob"}) {
			t.Fatalf("MergedPullRequest(%s) = %+v, %v", c, via, err)
		}
		if _, err := forge.RequireApproval(ctx, f, "training", c); err != nil {
			t.Fatalf("RequireApproval(%s) = %v", c, err)
		}
	}
	direct, err := f.git.run(ctx, f.local, nil, nil, "rev-parse", "refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	via, err := f.MergedPullRequest(ctx, "training", direct)
	if err != nil || via != nil {
		t.Fatalf("a commit that came otherwise = %+v, %v", via, err)
	}
	var ae *forge.ApprovalError
	if _, err := forge.RequireApproval(ctx, f, "main", direct); !errors.As(err, &ae) || !strings.HasSuffix(err.Error(), "on main did not arrive through a merged pull request") {
		t.Fatalf("RequireApproval of a pushed commit = %v", err)
	}
	// Merged without approval: refused by RequireApproval, naming the PR.
	f.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Message: "ds1: another", Files: map[string][]byte{"params.yaml": []byte("lr: 0.02\n")}})
	pr2, _ := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "Unreviewed", Author: "ds1"})
	m2, err := f.MergeAs(ctx, pr2.Number, "ds1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := forge.RequireApproval(ctx, f, "main", m2); !errors.As(err, &ae) || !strings.Contains(err.Error(), "arrived through pull request #2, which no reviewer approved") {
		t.Fatalf("RequireApproval of an unapproved merge = %v", err)
	}
	// Closing: open → closed; a merged one cannot be closed.
	pr3, _ := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "Stale"})
	if c, err := f.ClosePullRequest(ctx, pr3.Number, "alice"); err != nil || c.State != "closed" || c.ClosedBy != "alice" {
		t.Fatalf("close = %+v, %v", c, err)
	}
	if _, err := f.MergeAs(ctx, pr3.Number, "alice"); err == nil || !strings.Contains(err.Error(), "it is closed") {
		t.Fatalf("merge of a closed PR = %v", err)
	}
	if _, err := f.ClosePullRequest(ctx, pr.Number, "alice"); err == nil || !strings.Contains(err.Error(), "it is merged") {
		t.Fatalf("close of a merged PR = %v", err)
	}
}

func TestListDir(t *testing.T) {
	ctx := context.Background()
	f, _ := newRemote(t)
	f.WriteBack(ctx, forge.WriteBack{Branch: "training", Message: "runs", Files: map[string][]byte{
		".branchml/runs/r2.json": []byte("{}"), ".branchml/runs/r1.json": []byte("{}"), ".branchml/runs/sub/x.json": []byte("{}")}})
	names, err := f.ListDir(ctx, "training", ".branchml/runs")
	if err != nil || !reflect.DeepEqual(names, []string{"r1.json", "r2.json"}) {
		t.Fatalf("ListDir = %v, %v", names, err)
	}
	if names, err := f.ListDir(ctx, "training", ".branchml/lineage"); err != nil || len(names) != 0 {
		t.Fatalf("ListDir of a missing dir = %v, %v", names, err)
	}
}
