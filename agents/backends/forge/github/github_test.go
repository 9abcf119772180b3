package github_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/github"
	fakegh "github.com/branchml/branchml/agents/internal/fake/github"
	"github.com/branchml/branchml/agents/internal/secrets"
)

const token = "ghp_testtoken0123456789abcdef"

func env(tok string) func(string) string {
	return func(k string) string {
		if k == "GITHUB_TOKEN" {
			return tok
		}
		return ""
	}
}

// setup starts a fake with main and training at one commit and a forge on it.
func setup(t *testing.T, opts ...github.Option) (*fakegh.Server, *github.Forge) {
	t.Helper()
	srv := fakegh.Start(t, fakegh.WithToken(token))
	root := srv.Commit("main", map[string][]byte{"branchml.yaml": []byte("project: ml\n"), "README.md": []byte("# ml\n")}, "initial")
	srv.Commit("training", nil, "x") // creates training as a root; reset below
	srv.ResetRequests()
	_ = root
	f, err := github.New("acme", "ml", append([]github.Option{github.WithBaseURL(srv.APIURL()), github.WithGetenv(env(token)), github.WithBackoff(time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return srv, f
}

func TestNewNeedsToken(t *testing.T) {
	_, err := github.New("acme", "ml", github.WithGetenv(env("")))
	if !errors.Is(err, secrets.ErrNotSet) || !strings.Contains(err.Error(), "GITHUB_TOKEN") {
		t.Fatalf("err = %v", err)
	}
	if _, err := github.New("acme", "", github.WithGetenv(env(token))); err == nil {
		t.Fatal("empty repo accepted")
	}
}

func TestReadFile(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	got, err := f.ReadFile(ctx, "main", "branchml.yaml")
	if err != nil || string(got) != "project: ml\n" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].String() != "GET /repos/acme/ml/contents/branchml.yaml?ref=main" || reqs[0].Authorization != "Bearer "+token {
		t.Fatalf("requests = %+v", reqs)
	}
	if _, err := f.ReadFile(ctx, "main", "nope.json"); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := f.ReadFile(ctx, "no-branch", "README.md"); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing ref: %v", err)
	}
	big := bytes.Repeat([]byte("0123456789"), 1000)
	sha := srv.Commit("main", map[string][]byte{"data/big.csv": big}, "big")
	if got, err := f.ReadFile(ctx, sha, "data/big.csv"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big file: %d bytes, %v", len(got), err)
	}
	if _, err := f.ReadFile(ctx, "main", "data"); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("directory: %v", err)
	}
}

func TestWriteBackCalls(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	tip := srv.Branch("main")
	tree := mustCommit(t, srv, tip).Tree
	sha, err := f.WriteBack(ctx, forge.WriteBack{
		Branch:  "main",
		Files:   map[string][]byte{".branchml/components.lock.json": []byte("{}\n"), "README.md": nil},
		Message: "branchml build: lock for abc123",
	})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Branch("main") != sha {
		t.Fatalf("main at %s, returned %s", srv.Branch("main"), sha)
	}
	c := mustCommit(t, srv, sha)
	if c.Message != "branchml build: lock for abc123" || c.AuthorName != "branchml" || c.AuthorEmail != "branchml@localhost" || len(c.Parents) != 1 || c.Parents[0] != tip {
		t.Fatalf("commit = %+v", c)
	}
	files := srv.Files("main")
	if len(files) != 2 || string(files[".branchml/components.lock.json"]) != "{}\n" || string(files["branchml.yaml"]) != "project: ml\n" {
		t.Fatalf("files = %v", files)
	}
	reqs := srv.Requests()
	want := []string{
		"GET /repos/acme/ml/git/ref/heads/main",
		"GET /repos/acme/ml/git/commits/" + tip,
		"POST /repos/acme/ml/git/blobs",
		"POST /repos/acme/ml/git/trees",
		"POST /repos/acme/ml/git/commits",
		"PATCH /repos/acme/ml/git/refs/heads/main",
	}
	if got := srv.Calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if reqs[2].Body != `{"content":"e30K","encoding":"base64"}`+"\n" {
		t.Fatalf("blob body = %q", reqs[2].Body)
	}
	blob := files[".branchml/components.lock.json"]
	_ = blob
	wantTree := fmt.Sprintf(`{"base_tree":"%s","tree":[{"sha":"%s","path":".branchml/components.lock.json","mode":"100644","type":"blob"},{"sha":null,"path":"README.md","mode":"100644","type":"blob"}]}`+"\n", tree, gitBlobSHA("{}\n"))
	if reqs[3].Body != wantTree {
		t.Fatalf("tree body = %s\nwant %s", reqs[3].Body, wantTree)
	}
	if !strings.Contains(reqs[4].Body, `"message":"branchml build: lock for abc123"`) || !strings.Contains(reqs[4].Body, `"parents":["`+tip+`"]`) || !strings.Contains(reqs[4].Body, `"name":"branchml","email":"branchml@localhost"`) {
		t.Fatalf("commit body = %s", reqs[4].Body)
	}
	if reqs[5].Body != `{"sha":"`+sha+`","force":false}`+"\n" {
		t.Fatalf("ref body = %s", reqs[5].Body)
	}

	// Nothing to change: no commit, the tip is returned.
	srv.ResetRequests()
	again, err := f.WriteBack(ctx, forge.WriteBack{Branch: "main", Files: map[string][]byte{".branchml/components.lock.json": []byte("{}\n")}, Message: "m"})
	if err != nil || again != sha {
		t.Fatalf("again = %s, %v", again, err)
	}
	for _, call := range srv.Calls() {
		if strings.Contains(call, "git/commits") && strings.HasPrefix(call, "POST") || strings.HasPrefix(call, "PATCH") {
			t.Fatalf("no-op write-back made %s", call)
		}
	}
}

func TestWriteBackCreatesBranchFrom(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "deploy-model", Files: map[string][]byte{"deploy.yaml": []byte("v: 1\n")}, Message: "m"}); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing branch: %v", err)
	}
	sha, err := f.WriteBack(ctx, forge.WriteBack{Branch: "deploy-model", From: "main", Files: map[string][]byte{"deploy.yaml": []byte("v: 1\n")}, Message: "branchml train: promote"})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Branch("deploy-model") != sha || mustCommit(t, srv, sha).Parents[0] != srv.Branch("main") {
		t.Fatal("deploy-model not created on main")
	}
	last := srv.Requests()[len(srv.Requests())-1]
	if last.String() != "POST /repos/acme/ml/git/refs" || last.Body != `{"ref":"refs/heads/deploy-model","sha":"`+sha+`"}`+"\n" {
		t.Fatalf("last = %s %s", last, last.Body)
	}
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "x", From: "nope", Message: "m"}); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("missing From: %v", err)
	}
}

// TestWriteBackConflictReapplies injects a concurrent push on the first ref
// update: the update is refused (422 not a fast forward) and the change is
// re-applied on the new tip; both files end up on the branch.
func TestWriteBackConflictReapplies(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	srv.Inject(fakegh.On("PATCH", fakegh.RefUpdate("main"), 1, srv.ConcurrentPush("main", "theirs.txt", []byte("theirs\n"))))
	sha, err := f.WriteBack(ctx, forge.WriteBack{Branch: "main", Files: map[string][]byte{"mine.txt": []byte("mine\n")}, Message: "branchml build: mine"})
	if err != nil {
		t.Fatal(err)
	}
	files := srv.Files("main")
	if string(files["mine.txt"]) != "mine\n" || string(files["theirs.txt"]) != "theirs\n" {
		t.Fatalf("files = %v", files)
	}
	hist := srv.History("main")
	if hist[0].SHA != sha || hist[0].Message != "branchml build: mine" || hist[1].Message != "concurrent push to main" || hist[2].Message != "initial" {
		t.Fatalf("history = %+v", hist)
	}
	var patches, blobs []fakegh.Request
	for _, r := range srv.Requests() {
		switch {
		case r.Method == "PATCH":
			patches = append(patches, r)
		case r.Method == "POST" && strings.HasSuffix(r.Path, "/git/blobs"):
			blobs = append(blobs, r)
		}
	}
	if len(patches) != 2 || patches[0].Status != 422 || patches[1].Status != 200 || len(blobs) != 1 {
		t.Fatalf("patches %+v, blobs %d", patches, len(blobs))
	}
}

func TestWriteBackConflictGivesUp(t *testing.T) {
	srv, f := setup(t, github.WithAttempts(3))
	srv.Inject(fakegh.On("PATCH", fakegh.RefUpdate("main"), 0, srv.ConcurrentPush("main", "theirs.txt", []byte("x"))))
	_, err := f.WriteBack(context.Background(), forge.WriteBack{Branch: "main", Files: map[string][]byte{"mine.txt": []byte("y")}, Message: "m"})
	var ce *forge.ConflictError
	if !errors.As(err, &ce) || ce.Branch != "main" || ce.Repo != "acme/ml" || ce.Attempts != 3 || !ce.Temporary() {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "Update is not a fast forward") {
		t.Fatalf("message = %s", err)
	}
}

func TestWriteBackConflict409(t *testing.T) {
	srv, f := setup(t)
	srv.Inject(fakegh.On("PATCH", fakegh.RefUpdate("main"), 1, fakegh.Fail(409, "Reference update failed")))
	if _, err := f.WriteBack(context.Background(), forge.WriteBack{Branch: "main", Files: map[string][]byte{"a": []byte("a")}, Message: "m"}); err != nil {
		t.Fatal(err)
	}
	if string(srv.Files("main")["a"]) != "a" {
		t.Fatal("not written")
	}
}

// TestWriteBackRace has two forges write different files to one branch at
// once, several rounds; every file lands and history stays linear.
func TestWriteBackRace(t *testing.T) {
	srv, _ := setup(t)
	srv.Inject(fakegh.On("PATCH", "", 0, fakegh.Delay(2*time.Millisecond)))
	ctx := context.Background()
	const rounds = 5
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			f, err := github.New("acme", "ml", github.WithBaseURL(srv.APIURL()), github.WithGetenv(env(token)), github.WithBackoff(time.Millisecond), github.WithAttempts(10))
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "training", Files: map[string][]byte{fmt.Sprintf("w%d-%d", i, round): []byte("x")}, Message: "m"}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	files := srv.Files("training")
	for round := 0; round < rounds; round++ {
		for i := 0; i < 2; i++ {
			if _, ok := files[fmt.Sprintf("w%d-%d", i, round)]; !ok {
				t.Fatalf("w%d-%d lost; files %v", i, round, files)
			}
		}
	}
	if n := len(srv.History("training")); n != 1+2*rounds {
		t.Fatalf("history has %d commits, want %d", n, 1+2*rounds)
	}
}

func TestEnsurePullRequestIdempotent(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "Promote r1", Body: "acc 0.61"})
	if err != nil {
		t.Fatal(err)
	}
	want := forge.PullRequest{Number: 1, Head: "training", Base: "main", Title: "Promote r1", Body: "acc 0.61", State: "open", URL: "https://github.com/acme/ml/pull/1", Author: "branchml-bot"}
	if !reflect.DeepEqual(*pr, want) {
		t.Fatalf("pr = %+v", *pr)
	}
	calls := srv.Calls()
	if len(calls) != 2 || calls[0] != "GET /repos/acme/ml/pulls?base=main&head=acme%3Atraining&state=open" || calls[1] != "POST /repos/acme/ml/pulls" {
		t.Fatalf("calls = %v", calls)
	}
	if body := srv.Requests()[1].Body; body != `{"title":"Promote r1","head":"training","base":"main","body":"acc 0.61"}`+"\n" {
		t.Fatalf("create body = %s", body)
	}
	srv.ResetRequests()
	pr2, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "Promote r2", Body: "acc 0.63"})
	if err != nil || pr2.Number != 1 || pr2.Title != "Promote r2" {
		t.Fatalf("pr2 = %+v, %v", pr2, err)
	}
	if calls := srv.Calls(); len(calls) != 2 || calls[1] != "PATCH /repos/acme/ml/pulls/1" || srv.Requests()[1].Body != `{"title":"Promote r2","body":"acc 0.63"}`+"\n" {
		t.Fatalf("calls = %v", calls)
	}
	// Unchanged: no edit.
	srv.ResetRequests()
	if _, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "Promote r2", Body: "acc 0.63"}); err != nil || len(srv.Calls()) != 1 {
		t.Fatalf("calls = %v, %v", srv.Calls(), err)
	}
	if ps := srv.Pulls(); len(ps) != 1 || ps[0].Title != "Promote r2" {
		t.Fatalf("pulls = %+v", ps)
	}
}

// TestEnsurePullRequestAlreadyExists hides the open pull request from the
// first list (a concurrent opener): create answers 422 "A pull request
// already exists", and the forge finds and updates it.
func TestEnsurePullRequestAlreadyExists(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	if _, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "one"}); err != nil {
		t.Fatal(err)
	}
	srv.ResetRequests()
	emptyList := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("[]\n"))
		})
	}
	srv.Inject(fakegh.On("GET", `/pulls$`, 1, emptyList))
	pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "two"})
	if err != nil || pr.Number != 1 || pr.Title != "two" {
		t.Fatalf("pr = %+v, %v", pr, err)
	}
	reqs := srv.Requests()
	var got []string
	for _, r := range reqs {
		got = append(got, fmt.Sprintf("%s %s %d", r.Method, r.Path, r.Status))
	}
	want := "GET /repos/acme/ml/pulls 200\nPOST /repos/acme/ml/pulls 422\nGET /repos/acme/ml/pulls 200\nPATCH /repos/acme/ml/pulls/1 200"
	if strings.Join(got, "\n") != want {
		t.Fatalf("calls:\n%s", strings.Join(got, "\n"))
	}
}

func TestStatusAndComment(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	sha := srv.Branch("main")
	if err := f.SetStatus(ctx, sha, forge.Status{State: "success", Context: "branchml/build", Description: "built 3", TargetURL: "http://jenkins/job/1"}); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	if r.String() != "POST /repos/acme/ml/statuses/"+sha || r.Body != `{"state":"success","target_url":"http://jenkins/job/1","description":"built 3","context":"branchml/build"}`+"\n" {
		t.Fatalf("status request = %s %s", r, r.Body)
	}
	if st := srv.Statuses(sha); len(st) != 1 || st[0].State != "success" || st[0].Context != "branchml/build" {
		t.Fatalf("statuses = %+v", st)
	}
	if err := f.SetStatus(ctx, strings.Repeat("0", 40), forge.Status{State: "success", Context: "c"}); err == nil || !strings.Contains(err.Error(), "422") {
		t.Fatalf("unknown sha: %v", err)
	}
	pr, _ := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "t"})
	if err := f.Comment(ctx, pr.Number, "KPIs met"); err != nil {
		t.Fatal(err)
	}
	if cs := srv.Comments(pr.Number); len(cs) != 1 || cs[0].Body != "KPIs met" {
		t.Fatalf("comments = %+v", cs)
	}
	if err := f.Comment(ctx, 42, "x"); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("comment on missing PR: %v", err)
	}
}

func TestRateLimitsAreWaitedOut(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	srv.Inject(
		fakegh.On("GET", `/contents/`, 1, fakegh.RateLimited(0)),
		fakegh.On("GET", `/git/ref/`, 1, fakegh.SecondaryRateLimit(429, 0)),
		fakegh.On("POST", `/statuses/`, 1, fakegh.SecondaryRateLimit(403, 0)),
	)
	if _, err := f.ReadFile(ctx, "main", "README.md"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "main", Files: map[string][]byte{"a": []byte("1")}, Message: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetStatus(ctx, srv.Branch("main"), forge.Status{State: "pending", Context: "c"}); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, r := range srv.Requests() {
		if r.Method != "POST" || !strings.Contains(r.Path, "/git/") {
			statuses = append(statuses, fmt.Sprintf("%s %d", r.Method, r.Status))
		}
	}
	if got := strings.Join(statuses, ","); got != "GET 403,GET 200,GET 429,GET 200,GET 200,PATCH 200,POST 403,POST 201" {
		t.Fatalf("statuses = %s", got)
	}
}

func TestRateLimitBeyondMaxWaitFails(t *testing.T) {
	srv, f := setup(t, github.WithMaxWait(time.Second))
	srv.Inject(fakegh.On("GET", "", 0, fakegh.RateLimited(time.Hour)))
	_, err := f.ReadFile(context.Background(), "main", "README.md")
	var ge *github.Error
	if !errors.As(err, &ge) || ge.Status != 403 || !ge.RateLimited || !ge.Temporary() {
		t.Fatalf("err = %#v", err)
	}
	if len(srv.Calls()) != 1 {
		t.Fatalf("calls = %v", srv.Calls())
	}
}

func TestUnauthorizedFailsAtOnce(t *testing.T) {
	srv := fakegh.Start(t, fakegh.WithToken("the-right-token"))
	f, err := github.New("acme", "ml", github.WithBaseURL(srv.APIURL()), github.WithGetenv(env("a-wrong-token")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadFile(context.Background(), "main", "README.md")
	var ge *github.Error
	if !errors.As(err, &ge) || ge.Status != 401 || ge.Temporary() {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "401 Unauthorized: Bad credentials (the token was refused: check GITHUB_TOKEN or GITHUB_TOKEN_FILE)") {
		t.Fatalf("message = %s", err)
	}
	if len(srv.Calls()) != 1 {
		t.Fatalf("calls = %v", srv.Calls())
	}
}

func TestServerErrors(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	srv.Inject(fakegh.On("GET", `/contents/`, 2, fakegh.Fail(502, "Server Error")))
	if _, err := f.ReadFile(ctx, "main", "README.md"); err != nil {
		t.Fatalf("GET after two 502s: %v", err)
	}
	srv.ClearFaults()
	srv.ResetRequests()
	pr, _ := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "training", Base: "main", Title: "t"})
	srv.Inject(fakegh.On("POST", `/comments$`, 0, fakegh.Fail(503, "Service Unavailable")))
	err := f.Comment(ctx, pr.Number, "once")
	var ge *github.Error
	if !errors.As(err, &ge) || ge.Status != 503 || !ge.Temporary() || ge.Method != "POST" || ge.URL != srv.URL+"/repos/acme/ml/issues/1/comments" {
		t.Fatalf("err = %#v", err)
	}
	n := 0
	for _, c := range srv.Calls() {
		if strings.HasSuffix(c, "/comments") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("comment POSTed %d times, want 1 (never repeated)", n)
	}
	srv.ClearFaults()
	srv.Inject(fakegh.On("GET", `/git/ref/`, 1, fakegh.Malformed()))
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "main", Files: map[string][]byte{"a": []byte("1")}, Message: "m"}); err == nil {
		t.Fatal("malformed body accepted")
	}
}

func TestSlowServerHonoursContext(t *testing.T) {
	srv, f := setup(t)
	srv.Inject(fakegh.Delay(5 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.ReadFile(ctx, "main", "README.md")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("did not stop at the deadline")
	}
}

// TestTokenNeverPrinted has the server echo the Authorization header into
// its error body; the token must show as *** in the error, in every error of
// its chain and in log output at every level.
func TestTokenNeverPrinted(t *testing.T) {
	const secret = "ghp_SuperSecretTokenValue42"
	t.Setenv("GITHUB_TOKEN", secret)
	var logs bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logs)
	log.SetLevel(logrus.TraceLevel)
	log.AddHook(secrets.Hook{})
	srv := fakegh.Start(t, fakegh.WithToken(secret))
	srv.Commit("main", map[string][]byte{"a": []byte("a")}, "init")
	f, err := github.New("acme", "ml", github.WithBaseURL(srv.APIURL()), github.WithLogger(log), github.WithBackoff(time.Millisecond), github.WithAttempts(2))
	if err != nil {
		t.Fatal(err)
	}
	srv.Inject(fakegh.On("", `/contents/|/git/ref/`, 0, fakegh.EchoAuthorization(500)))
	_, err1 := f.ReadFile(context.Background(), "main", "a")
	_, err2 := f.WriteBack(context.Background(), forge.WriteBack{Branch: "main", Files: map[string][]byte{"b": nil}, Message: "m"})
	for _, err := range []error{err1, err2} {
		if err == nil {
			t.Fatal("no error")
		}
		if !strings.Contains(err.Error(), "Authorization: Bearer ***") {
			t.Fatalf("error = %s", err)
		}
		for e := err; e != nil; e = errors.Unwrap(e) {
			if strings.Contains(e.Error(), secret) || strings.Contains(fmt.Sprintf("%+v %#v", e, e), secret) {
				t.Fatalf("token in %T: %s", e, e)
			}
		}
		for _, lvl := range logrus.AllLevels[2:] { // error .. trace (not panic/fatal)
			log.WithError(err).Log(lvl, "call failed: "+err.Error())
			log.WithField("detail", err).Logf(lvl, "%v", err)
		}
	}
	out := logs.String()
	if strings.Contains(out, secret) || !strings.Contains(out, "***") || !strings.Contains(out, "level=debug msg=\"github: GET") {
		t.Fatalf("logs:\n%s", out)
	}
}

func BenchmarkWriteBack(b *testing.B) {
	srv := fakegh.New(fakegh.WithToken(token))
	defer srv.Close()
	srv.Commit("main", map[string][]byte{"a": []byte("a")}, "init")
	f, err := github.New("acme", "ml", github.WithBaseURL(srv.APIURL()), github.WithGetenv(env(token)))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "main", Files: map[string][]byte{"run.json": []byte(fmt.Sprint(i))}, Message: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// The audit trail through GitHub's REST API: the pull request a merge
// commit (and a branchml write-back on top of it) arrived through, who
// opened and merged it, and the approvals as GitHub counts them (each
// reviewer's latest review); exactly these calls.
func TestMergedPullRequestAndApprovals(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	srv.Commit("ds1", map[string][]byte{"params.yaml": []byte("lr: 0.01\n")}, "tune")
	n := srv.OpenPull("ds1", "training", "Lower the learning rate", "ds-alice")
	srv.ReviewPull(n, "bob", "CHANGES_REQUESTED")
	srv.ReviewPull(n, "carol", "APPROVED")
	srv.ReviewPull(n, "bob", "APPROVED")
	srv.ReviewPull(n, "dave", "APPROVED")
	srv.ReviewPull(n, "dave", "COMMENTED") // a comment does not take an approval back
	merge := srv.MergePull(n, "carol")
	wb, err := f.WriteBack(ctx, forge.WriteBack{Branch: "training", Message: "branchml train: run r1 for x", Files: map[string][]byte{".branchml/runs/r1.json": []byte("{}\n")}})
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetRequests()
	pr, err := f.MergedPullRequest(ctx, "training", wb)
	if err != nil || pr == nil {
		t.Fatalf("MergedPullRequest = %+v, %v", pr, err)
	}
	if pr.Number != n || pr.Author != "ds-alice" || pr.MergedBy != "carol" || pr.MergeCommit != merge || pr.State != "merged" || pr.MergedAt == nil ||
		!reflect.DeepEqual(pr.Approvers(), []string{"bob", "carol", "dave"}) {
		t.Fatalf("pr = %+v (approvers %v)", pr, pr.Approvers())
	}
	want := []string{
		"GET /repos/acme/ml/commits/" + wb + "/pulls?per_page=100",
		"GET /repos/acme/ml/git/commits/" + wb,
		"GET /repos/acme/ml/commits/" + merge + "/pulls?per_page=100",
		"GET /repos/acme/ml/pulls/1",
		"GET /repos/acme/ml/pulls/1/reviews?per_page=100",
	}
	if got := srv.Calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls = %q\nwant %q", got, want)
	}
	// A commit pushed by someone: no pull request, and requireApproval refuses.
	pushed := srv.Commit("training", map[string][]byte{"x": []byte("y")}, "a direct push")
	if pr, err := f.MergedPullRequest(ctx, "training", pushed); err != nil || pr != nil {
		t.Fatalf("pushed commit = %+v, %v", pr, err)
	}
	var ae *forge.ApprovalError
	if _, err := forge.RequireApproval(ctx, f, "training", pushed); !errors.As(err, &ae) {
		t.Fatalf("RequireApproval = %v", err)
	}
	// ListDir of the runs directory.
	names, err := f.ListDir(ctx, "training", ".branchml/runs")
	if err != nil || !reflect.DeepEqual(names, []string{"r1.json"}) {
		t.Fatalf("ListDir = %v, %v", names, err)
	}
	if names, err := f.ListDir(ctx, "training", ".branchml/none"); err != nil || len(names) != 0 {
		t.Fatalf("ListDir of nothing = %v, %v", names, err)
	}
}

// TestEnsurePullRequestWithNoCommitsIsANoOp: a head whose commits are all
// in base (merged already) makes GitHub answer 422 "No commits between";
// nothing is to be proposed, which is no error.
func TestEnsurePullRequestWithNoCommitsIsANoOp(t *testing.T) {
	srv, f := setup(t)
	ctx := context.Background()
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "branchml/promote-djia30-v1", From: "main",
		Files: map[string][]byte{"README.md": []byte("# ml\n")}, Message: "branchml promote: nothing new"}); err != nil {
		t.Fatal(err)
	}
	if srv.Branch("branchml/promote-djia30-v1") != srv.Branch("main") {
		t.Fatal("set-up: the head should point at main's tip")
	}
	pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "branchml/promote-djia30-v1", Base: "main", Title: "Promote djia30 v1"})
	if err != nil {
		t.Fatalf("want no error, got %v", err)
	}
	want := forge.PullRequest{Head: "branchml/promote-djia30-v1", Base: "main", Title: "Promote djia30 v1", State: "merged"}
	if !reflect.DeepEqual(*pr, want) {
		t.Fatalf("pr = %+v, want %+v", *pr, want)
	}
	if ps := srv.Pulls(); len(ps) != 0 {
		t.Fatalf("pulls opened: %+v", ps)
	}
}
