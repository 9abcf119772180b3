package gitremote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/forge"
)

// gitOut runs git in the bare repository dir and returns trimmed stdout.
func gitOut(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"--git-dir=" + dir}, args...)...)
	cmd.Env = gitEnv(nil)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func newRemote(t testing.TB, opts ...Option) (*Forge, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ml.git")
	f, err := Init(context.Background(), dir, map[string][]byte{
		"README.md":     []byte("# ml\n"),
		"branchml.yaml": []byte("project: ml\n"),
	}, []string{"main", "training", "ds1"}, append([]Option{WithTempDir(t.TempDir())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return f, dir
}

func TestInitReadFileAndBranches(t *testing.T) {
	ctx := context.Background()
	f, dir := newRemote(t)
	bs, err := f.Branches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 3 || bs[0].Name != "ds1" || bs[1].Name != "main" || bs[2].Name != "training" {
		t.Fatalf("branches = %+v", bs)
	}
	root := bs[0].Commit
	for _, b := range bs {
		if b.Commit != root {
			t.Fatalf("branch %s at %s, want %s", b.Name, b.Commit, root)
		}
	}
	if got := gitOut(t, dir, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s|%P", root); got != "branchml <branchml@localhost>|branchml <branchml@localhost>|branchml: initial content|" {
		t.Fatalf("root commit = %q", got)
	}
	if got := gitOut(t, dir, "symbolic-ref", "HEAD"); got != "refs/heads/main" {
		t.Fatalf("HEAD = %q", got)
	}
	for _, ref := range []string{"main", "training", root} {
		got, err := f.ReadFile(ctx, ref, "branchml.yaml")
		if err != nil || string(got) != "project: ml\n" {
			t.Fatalf("ReadFile(%s) = %q, %v", ref, got, err)
		}
	}
	if _, err := f.ReadFile(ctx, "main", "missing.json"); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing file: err = %v, want ErrNotFound", err)
	}
	if _, err := f.ReadFile(ctx, "no-such-branch", "README.md"); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing ref: err = %v, want ErrNotFound", err)
	}
	if _, err := f.ReadFile(ctx, "main", "../etc/passwd"); err == nil || !strings.Contains(err.Error(), "bad repository path") {
		t.Fatalf("bad path: err = %v", err)
	}

	// A second Init creates only what is missing and keeps content.
	f2, err := Init(ctx, dir, map[string][]byte{"other": []byte("x")}, []string{"main", "deploy-model"})
	if err != nil {
		t.Fatal(err)
	}
	bs2, _ := f2.Branches(ctx)
	if len(bs2) != 4 || bs2[0].Name != "deploy-model" || bs2[0].Commit != root {
		t.Fatalf("after second Init: %+v", bs2)
	}
	if _, err := f2.ReadFile(ctx, "main", "other"); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("second Init changed content: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(t.TempDir()); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("New(empty dir) = %v, want ErrNotFound", err)
	}
	if _, err := New("git@example.com:acme/ml.git"); err == nil || !strings.Contains(err.Error(), "WithMetaDir") {
		t.Fatalf("New(scp url) = %v", err)
	}
	if _, err := New(""); err == nil {
		t.Fatal("New(\"\") succeeded")
	}
}

func TestWriteBack(t *testing.T) {
	ctx := context.Background()
	f, dir := newRemote(t)
	before := gitOut(t, dir, "rev-parse", "training")

	sha, err := f.WriteBack(ctx, forge.WriteBack{
		Branch:  "training",
		Files:   map[string][]byte{".branchml/runs/r1.json": []byte("{\"run\":1}\n"), "README.md": nil},
		Message: "branchml train: run r1 for abc123",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := gitOut(t, dir, "rev-parse", "training"); got != sha {
		t.Fatalf("training at %s, WriteBack returned %s", got, sha)
	}
	if got := gitOut(t, dir, "log", "-1", "--format=%an <%ae>|%s|%P", sha); got != "branchml <branchml@localhost>|branchml train: run r1 for abc123|"+before {
		t.Fatalf("commit = %q", got)
	}
	if got := gitOut(t, dir, "ls-tree", "-r", "--name-only", sha); got != ".branchml/runs/r1.json\nbranchml.yaml" {
		t.Fatalf("tree = %q", got)
	}
	if got, _ := f.ReadFile(ctx, "training", ".branchml/runs/r1.json"); string(got) != "{\"run\":1}\n" {
		t.Fatalf("content = %q", got)
	}
	if got := gitOut(t, dir, "rev-parse", "main"); got != before {
		t.Fatal("main moved")
	}

	// The same files again: no commit, the tip is returned.
	again, err := f.WriteBack(ctx, forge.WriteBack{Branch: "training", Files: map[string][]byte{".branchml/runs/r1.json": []byte("{\"run\":1}\n"), "README.md": nil}, Message: "branchml train: run r1 for abc123"})
	if err != nil || again != sha {
		t.Fatalf("second WriteBack = %s, %v; want %s", again, err, sha)
	}
	if n := gitOut(t, dir, "rev-list", "--count", "training"); n != "2" {
		t.Fatalf("commits on training = %s, want 2", n)
	}

	// A missing branch needs From.
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "deploy-model", Files: map[string][]byte{"deploy.yaml": []byte("v: 1\n")}, Message: "m"}); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing branch: %v", err)
	}
	created, err := f.WriteBack(ctx, forge.WriteBack{Branch: "deploy-model", From: "training", Files: map[string][]byte{"deploy.yaml": []byte("v: 1\n")}, Message: "branchml train: promote r1 for abc123"})
	if err != nil {
		t.Fatal(err)
	}
	if got := gitOut(t, dir, "log", "-1", "--format=%P", created); got != sha {
		t.Fatalf("deploy-model parent = %s, want %s", got, sha)
	}
	// From a commit SHA, no change: the branch points at that commit.
	fromSHA, err := f.WriteBack(ctx, forge.WriteBack{Branch: "kf-pipeline", From: before, Message: "m"})
	if err != nil || fromSHA != before || gitOut(t, dir, "rev-parse", "kf-pipeline") != before {
		t.Fatalf("branch from SHA = %s, %v", fromSHA, err)
	}
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "x", From: "nope", Message: "m"}); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing From: %v", err)
	}
	for _, bad := range []forge.WriteBack{
		{Branch: "training", Files: map[string][]byte{"/abs": nil}, Message: "m"},
		{Branch: "training", Files: map[string][]byte{"a/../b": nil}, Message: "m"},
		{Branch: "training", Files: map[string][]byte{".git/config": nil}, Message: "m"},
		{Branch: "bad branch", Message: "m"},
		{Branch: "training", Message: " "},
	} {
		if _, err := f.WriteBack(ctx, bad); err == nil {
			t.Errorf("WriteBack(%+v) succeeded", bad)
		}
	}
}

func TestWriteBackKeepsExecutableMode(t *testing.T) {
	ctx := context.Background()
	f, dir := newRemote(t)
	// Make run.sh executable through plumbing, as a user commit would.
	w, err := f.newWorkArea(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if err := w.fetch(ctx); err != nil {
		t.Fatal(err)
	}
	tip, _ := w.resolve(ctx, "refs/remotes/origin/main")
	w.git(ctx, nil, "read-tree", tip)
	blob, _ := w.git(ctx, []byte("#!/bin/sh\n"), "hash-object", "-w", "--stdin")
	w.git(ctx, []byte("100755 "+blob+"\trun.sh\n"), "update-index", "--index-info")
	tree, _ := w.git(ctx, nil, "write-tree")
	c, _ := w.git(ctx, []byte("exec\n"), "commit-tree", tree, "-p", tip, "-F", "-")
	if err := f.push(ctx, w, c, "main", tip); err != nil {
		t.Fatal(err)
	}
	sha, err := f.WriteBack(ctx, forge.WriteBack{Branch: "main", Files: map[string][]byte{"run.sh": []byte("#!/bin/sh\necho hi\n")}, Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if got := gitOut(t, dir, "ls-tree", sha, "run.sh"); !strings.HasPrefix(got, "100755 blob ") {
		t.Fatalf("run.sh = %q, want mode 100755", got)
	}
}

// TestWriteBackRace has two writers (separate Forge values, as two agents
// would be) write different files to the same branch at the same moment,
// round after round: both files land, no commit is lost, one of each pair
// is re-applied on the other's tip.
func TestWriteBackRace(t *testing.T) {
	ctx := context.Background()
	_, dir := newRemote(t)
	const rounds = 4
	start := gitOut(t, dir, "rev-list", "--count", "training")
	for round := 0; round < rounds; round++ {
		var ready sync.WaitGroup
		ready.Add(2)
		var mu sync.Mutex
		pushes := map[string]int{}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := 0; i < 2; i++ {
			name := fmt.Sprintf("w%d", i)
			f, err := New(dir, WithTempDir(t.TempDir()), WithBackoff(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			f.beforePush = func(attempt int) {
				mu.Lock()
				pushes[name]++
				mu.Unlock()
				if attempt == 1 {
					// Both writers have built on the same tip: race.
					ready.Done()
					ready.Wait()
				}
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, errs[i] = f.WriteBack(ctx, forge.WriteBack{
					Branch:  "training",
					Files:   map[string][]byte{fmt.Sprintf(".branchml/runs/%s-%d.json", name, round): []byte(name + "\n")},
					Message: fmt.Sprintf("branchml train: %s round %d for abc", name, round),
				})
			}(i)
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d writer %d: %v", round, i, err)
			}
		}
		if pushes["w0"]+pushes["w1"] != 3 {
			t.Fatalf("round %d: pushes %v, want one writer to push once and the other twice", round, pushes)
		}
	}
	var want []string
	for round := 0; round < rounds; round++ {
		for i := 0; i < 2; i++ {
			want = append(want, fmt.Sprintf(".branchml/runs/w%d-%d.json", i, round))
		}
	}
	sort.Strings(want)
	got := gitOut(t, dir, "ls-tree", "-r", "--name-only", "training", ".branchml/runs/")
	if got != strings.Join(want, "\n") {
		t.Fatalf("files on training:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	var n int
	fmt.Sscan(start, &n)
	if c := gitOut(t, dir, "rev-list", "--count", "training"); c != fmt.Sprint(n+2*rounds) {
		t.Fatalf("commits = %s, want %d", c, n+2*rounds)
	}
	if merges := gitOut(t, dir, "rev-list", "--merges", "--count", "training"); merges != "0" {
		t.Fatalf("merge commits = %s, want a linear history", merges)
	}
}

func TestWriteBackGivesUpAfterAttempts(t *testing.T) {
	ctx := context.Background()
	f, dir := newRemote(t, WithAttempts(3), WithBackoff(time.Millisecond))
	other, err := New(dir, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	f.beforePush = func(int) {
		n++
		if _, err := other.WriteBack(ctx, forge.WriteBack{Branch: "training", Files: map[string][]byte{fmt.Sprintf("other-%d", n): []byte("x")}, Message: "other"}); err != nil {
			t.Error(err)
		}
	}
	_, err = f.WriteBack(ctx, forge.WriteBack{Branch: "training", Files: map[string][]byte{"mine": []byte("y")}, Message: "mine"})
	var ce *forge.ConflictError
	if !errors.As(err, &ce) || ce.Branch != "training" || ce.Attempts != 3 || !ce.Temporary() {
		t.Fatalf("err = %#v", err)
	}
	if !strings.Contains(err.Error(), "push to branch training of "+dir+": the branch moved on each of 3 attempts") {
		t.Fatalf("message = %q", err.Error())
	}
	if got := gitOut(t, dir, "ls-tree", "--name-only", "training"); got != "README.md\nbranchml.yaml\nother-1\nother-2\nother-3" {
		t.Fatalf("training tree = %q", got)
	}
}

func TestPullRequestsIdempotent(t *testing.T) {
	ctx := context.Background()
	f, dir := newRemote(t)
	pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "Promote r1", Body: "accuracy 0.61"})
	if err != nil {
		t.Fatal(err)
	}
	want := forge.PullRequest{Number: 1, Head: "training", Base: "main", Title: "Promote r1", Body: "accuracy 0.61", State: "open", URL: "file://" + dir + ".branchml/pulls/1.json", Author: "branchml"}
	if !reflect.DeepEqual(*pr, want) {
		t.Fatalf("pr = %+v, want %+v", *pr, want)
	}
	pr2, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "Promote r2", Body: "accuracy 0.63"})
	if err != nil || pr2.Number != 1 || pr2.Title != "Promote r2" || pr2.Body != "accuracy 0.63" {
		t.Fatalf("second = %+v, %v", pr2, err)
	}
	var rec PullRecord
	raw, err := os.ReadFile(dir + ".branchml/pulls/1.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Title != "Promote r2" || rec.CreatedAt.IsZero() || rec.UpdatedAt.Before(rec.CreatedAt) || rec.State != "open" {
		t.Fatalf("record = %s", raw)
	}
	other, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "ds1"})
	if err != nil || other.Number != 2 {
		t.Fatalf("other = %+v, %v", other, err)
	}
	if _, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "nope", Base: "main", Title: "t"}); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing head: %v", err)
	}
	list, err := f.ListPullRequests(ctx, "open")
	if err != nil || len(list) != 2 || list[0].Number != 1 || list[1].Number != 2 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := f.ListPullRequests(ctx, "weird"); err == nil {
		t.Fatal("bad state accepted")
	}

	if err := f.Comment(ctx, 1, "KPIs met: accuracy 0.63 >= 0.55"); err != nil {
		t.Fatal(err)
	}
	if err := f.Comment(ctx, 1, "second"); err != nil {
		t.Fatal(err)
	}
	cs, err := f.Comments(ctx, 1)
	if err != nil || len(cs) != 2 || cs[0].ID != 1 || cs[0].Body != "KPIs met: accuracy 0.63 >= 0.55" || cs[1].ID != 2 || cs[1].Author != "branchml" {
		t.Fatalf("comments = %+v, %v", cs, err)
	}
	if err := f.Comment(ctx, 9, "x"); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("comment on missing PR: %v", err)
	}
}

func TestEnsurePullRequestConcurrent(t *testing.T) {
	ctx := context.Background()
	_, dir := newRemote(t)
	heads := []string{"training", "ds1", "training", "ds1", "training", "ds1"}
	var wg sync.WaitGroup
	got := make([]int, len(heads))
	for i, h := range heads {
		f, err := New(dir)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: h, Base: "main", Title: "from " + h})
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = pr.Number
		}()
	}
	wg.Wait()
	byHead := map[string]int{}
	for i, h := range heads {
		if n, ok := byHead[h]; ok && n != got[i] {
			t.Fatalf("head %s got numbers %d and %d", h, n, got[i])
		}
		byHead[h] = got[i]
	}
	if byHead["training"] == byHead["ds1"] || byHead["training"]+byHead["ds1"] != 3 {
		t.Fatalf("numbers = %v, want 1 and 2", byHead)
	}
}

// TestEnsurePullRequestProcesses runs EnsurePullRequest in separate
// processes (this test binary re-executed) racing on one remote.
func TestEnsurePullRequestProcesses(t *testing.T) {
	_, dir := newRemote(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	heads := []string{"training", "ds1", "training", "ds1"}
	var wg sync.WaitGroup
	outs := make([]string, len(heads))
	for i, h := range heads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(exe, "-test.run=^TestHelperEnsure$")
			cmd.Env = append(os.Environ(), "GITREMOTE_HELPER=1", "GITREMOTE_DIR="+dir, "GITREMOTE_HEAD="+h)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("helper %s: %v\n%s", h, err, out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if n, ok := strings.CutPrefix(line, "NUMBER="); ok {
					outs[i] = h + "=" + n
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, o := range outs {
		seen[o] = true
	}
	if len(seen) != 2 || !(seen["training=1"] && seen["ds1=2"] || seen["training=2"] && seen["ds1=1"]) {
		t.Fatalf("numbers = %v", outs)
	}
	f, _ := New(dir)
	list, _ := f.ListPullRequests(context.Background(), "all")
	if len(list) != 2 {
		t.Fatalf("records = %+v", list)
	}
}

func TestHelperEnsure(t *testing.T) {
	if os.Getenv("GITREMOTE_HELPER") != "1" {
		t.Skip("helper process")
	}
	f, err := New(os.Getenv("GITREMOTE_DIR"))
	if err != nil {
		t.Fatal(err)
	}
	h := os.Getenv("GITREMOTE_HEAD")
	pr, err := f.EnsurePullRequest(context.Background(), forge.PullRequest{Head: h, Base: "main", Title: "from " + h})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("NUMBER=%d\n", pr.Number)
}

func TestMergePullRequest(t *testing.T) {
	ctx := context.Background()
	f, dir := newRemote(t)
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Files: map[string][]byte{"model.py": []byte("v2\n")}, Message: "ds1 work"}); err != nil {
		t.Fatal(err)
	}
	mainTip, err := f.WriteBack(ctx, forge.WriteBack{Branch: "main", Files: map[string][]byte{"NOTES": []byte("n\n")}, Message: "main work"})
	if err != nil {
		t.Fatal(err)
	}
	headTip := gitOut(t, dir, "rev-parse", "ds1")
	pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "New model"})
	if err != nil {
		t.Fatal(err)
	}
	merge, err := f.MergePullRequest(ctx, pr.Number)
	if err != nil {
		t.Fatal(err)
	}
	if got := gitOut(t, dir, "rev-parse", "main"); got != merge {
		t.Fatalf("main at %s, merge %s", got, merge)
	}
	if got := gitOut(t, dir, "log", "-1", "--format=%P|%B", merge); got != mainTip+" "+headTip+"|Merge pull request #1 from ds1\n\nNew model" {
		t.Fatalf("merge commit = %q", got)
	}
	if got := gitOut(t, dir, "ls-tree", "--name-only", "main"); got != "NOTES\nREADME.md\nbranchml.yaml\nmodel.py" {
		t.Fatalf("main tree = %q", got)
	}
	list, _ := f.ListPullRequests(ctx, "merged")
	if len(list) != 1 || list[0].MergeCommit != merge || list[0].MergedAt == nil {
		t.Fatalf("merged = %+v", list)
	}
	if again, err := f.MergePullRequest(ctx, 1); err != nil || again != merge {
		t.Fatalf("merge again = %s, %v", again, err)
	}
	// A new PR from the same head opens a new number once the first is merged.
	pr2, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "again"})
	if err != nil || pr2.Number != 2 {
		t.Fatalf("pr2 = %+v, %v", pr2, err)
	}
	if _, err := f.MergePullRequest(ctx, 7); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing PR: %v", err)
	}
}

// A merge interrupted between its push and its record (a killed agent):
// the pull request's own merge commit is on base while the record says
// open. The next EnsurePullRequest of the same head and base records it
// merged (that commit, its author, its time) and opens a new number, as
// GitHub shows a pull request merged once its merge commit is on base;
// an open one without its merge commit on base is still reused.
func TestEnsurePullRequestAfterAnInterruptedMerge(t *testing.T) {
	ctx := context.Background()
	f, dir := newRemote(t)
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Files: map[string][]byte{"model.py": []byte("v2\n")}, Message: "ds1 work"}); err != nil {
		t.Fatal(err)
	}
	pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "New model"})
	if err != nil {
		t.Fatal(err)
	}
	opened, err := os.ReadFile(f.pullPath(pr.Number))
	if err != nil {
		t.Fatal(err)
	}
	merge, err := f.MergeAs(ctx, pr.Number, "reviewer")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.pullPath(pr.Number), opened, 0o644); err != nil { // the record as before the merge
		t.Fatal(err)
	}
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Files: map[string][]byte{"model.py": []byte("v3\n")}, Message: "more ds1 work"}); err != nil {
		t.Fatal(err)
	}
	pr2, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "Next model"})
	if err != nil || pr2.Number != 2 || pr2.State != "open" {
		t.Fatalf("after the interrupted merge: %+v, %v; want a new pull request #2", pr2, err)
	}
	merged, _ := f.ListPullRequests(ctx, "merged")
	when := gitOut(t, dir, "log", "-1", "--format=%ct", merge)
	if len(merged) != 1 || merged[0].Number != 1 || merged[0].MergeCommit != merge || merged[0].MergedBy != "reviewer" || merged[0].MergedAt == nil || strconv.FormatInt(merged[0].MergedAt.Unix(), 10) != when {
		t.Fatalf("merged = %+v; want #1 merged by reviewer as %s at %s", merged, merge, when)
	}
	// #2 is open and unmerged: it is reused.
	again, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "Next model"})
	if err != nil || again.Number != 2 {
		t.Fatalf("ensure again = %+v, %v; want #2", again, err)
	}
	// MergeAs of a record left open by an interrupted merge is that
	// merge, not a second one.
	opened2, _ := os.ReadFile(f.pullPath(2))
	merge2, err := f.MergeAs(ctx, 2, "reviewer")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(f.pullPath(2), opened2, 0o644)
	if got, err := f.MergeAs(ctx, 2, "someone-else"); err != nil || got != merge2 {
		t.Fatalf("merge of #2 again after the interrupted record: %s, %v; want its merge %s", got, err, merge2)
	}
	if n := gitOut(t, dir, "rev-list", "--count", "--grep=Merge pull request #2 from ds1", "main"); n != "1" {
		t.Fatalf("%s merge commits of #2 on main, want 1", n)
	}
	// Records made anew over the same remote (numbers start at 1 again):
	// the old #1's merge commit on main is not the new #1's.
	time.Sleep(1100 * time.Millisecond) // the new #1 is created a second after the old merges
	fresh, err := New(dir, WithMetaDir(t.TempDir()), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Files: map[string][]byte{"model.py": []byte("v4\n")}, Message: "new work"}); err != nil {
		t.Fatal(err)
	}
	n1, err := fresh.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "After the records were lost"})
	if err != nil || n1.Number != 1 {
		t.Fatalf("fresh records: %+v, %v; want #1", n1, err)
	}
	if again, err := fresh.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "After the records were lost"}); err != nil || again.Number != 1 || again.State != "open" {
		t.Fatalf("fresh #1 ensured again: %+v, %v; want the open #1 (the old #1's merge is not its)", again, err)
	}
}

func TestMergePullRequestConflict(t *testing.T) {
	ctx := context.Background()
	f, dir := newRemote(t)
	f.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Files: map[string][]byte{"branchml.yaml": []byte("project: a\n")}, Message: "a"})
	mainTip, _ := f.WriteBack(ctx, forge.WriteBack{Branch: "main", Files: map[string][]byte{"branchml.yaml": []byte("project: b\n")}, Message: "b"})
	pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "ds1", Base: "main", Title: "conflict"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.MergePullRequest(ctx, pr.Number)
	var mc *MergeConflictError
	if !errors.As(err, &mc) || len(mc.Files) != 1 || mc.Files[0] != "branchml.yaml" {
		t.Fatalf("err = %v", err)
	}
	if err.Error() != "merge pull request #1 (ds1 into main): conflicts in branchml.yaml; merge main into ds1 by hand, resolve them and push" {
		t.Fatalf("message = %q", err)
	}
	if got := gitOut(t, dir, "rev-parse", "main"); got != mainTip {
		t.Fatal("main moved on a conflict")
	}
	list, _ := f.ListPullRequests(ctx, "open")
	if len(list) != 1 {
		t.Fatalf("open = %+v", list)
	}
}

func TestStatuses(t *testing.T) {
	ctx := context.Background()
	f, dir := newRemote(t)
	sha := gitOut(t, dir, "rev-parse", "main")
	for _, st := range []forge.Status{
		{State: "pending", Context: "branchml/build", Description: "building"},
		{State: "success", Context: "branchml/plan", Description: "plan ok"},
		{State: "failure", Context: "branchml/build", Description: "test failed", TargetURL: "http://jenkins/job/1"},
	} {
		if err := f.SetStatus(ctx, "main", st); err != nil {
			t.Fatal(err)
		}
	}
	list, err := f.Statuses(ctx, sha)
	if err != nil || len(list) != 2 {
		t.Fatalf("statuses = %+v, %v", list, err)
	}
	if list[0].Status != (forge.Status{State: "failure", Context: "branchml/build", Description: "test failed", TargetURL: "http://jenkins/job/1"}) || list[1].State != "success" {
		t.Fatalf("statuses = %+v", list)
	}
	if _, err := os.Stat(filepath.Join(dir+".branchml", "statuses", sha+".json")); err != nil {
		t.Fatal(err)
	}
	if err := f.SetStatus(ctx, sha, forge.Status{State: "done", Context: "x"}); err == nil {
		t.Fatal("bad state accepted")
	}
	if err := f.SetStatus(ctx, strings.Repeat("a", 40), forge.Status{State: "success", Context: "x"}); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("unknown commit: %v", err)
	}
}

func TestGitErrorRedactsURLPasswords(t *testing.T) {
	e := &GitError{Args: []string{"push", "https://bob:hunter22@git.example.com/ml.git"}, Code: 128, Stderr: "fatal: unable to access 'https://bob:hunter22@git.example.com/ml.git/'"}
	if got := e.Error(); strings.Contains(got, "hunter22") || !strings.Contains(got, "https://bob:***@git.example.com/ml.git") {
		t.Fatalf("Error() = %q", got)
	}
}

func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"a/b.json", "../x", "/abs", ".git/config", "a//b", "ok.txt", "a/./b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkPath(p) != nil {
			return
		}
		if strings.HasPrefix(p, "/") || strings.Contains(p, "\n") || strings.Contains(p, "\x00") {
			t.Fatalf("accepted %q", p)
		}
		for _, part := range strings.Split(p, "/") {
			if part == ".." || part == "" || part == ".git" {
				t.Fatalf("accepted %q", p)
			}
		}
	})
}

func FuzzRedactURLs(f *testing.F) {
	f.Add("https://user:secretpw@host/x")
	f.Add("a://b:c@d e://f@g")
	f.Fuzz(func(t *testing.T, s string) {
		out := redactURLs(s)
		if !strings.Contains(s, "://") && out != s {
			t.Fatalf("changed %q to %q", s, out)
		}
	})
}

func BenchmarkWriteBack(b *testing.B) {
	ctx := context.Background()
	f, _ := newRemote(b)
	for i := 0; b.Loop(); i++ {
		if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "training", Files: map[string][]byte{"run.json": []byte(fmt.Sprint(i))}, Message: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}
