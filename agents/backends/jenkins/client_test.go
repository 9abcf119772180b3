package jenkins_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/jenkins"
	fake "github.com/branchml/branchml/agents/internal/fake/jenkins"
)

const (
	user  = "ci-bot"
	token = "11aa22bb33cc44dd55ee66ff77889900aa"
)

func newClient(t *testing.T, s *fake.Server) *jenkins.Client {
	t.Helper()
	c, err := jenkins.New(s.URL(), jenkins.WithAuth(user, token), jenkins.WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func secured(wrap func(http.Handler) http.Handler) *fake.Server {
	s := fake.NewWith(wrap)
	s.User, s.Token, s.CrumbRequired = user, token, true
	return s
}

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

func TestEnsureJobCreatesThenUpdatesThenKeeps(t *testing.T) {
	s := secured(nil)
	defer s.Close()
	c := newClient(t, s)
	ctx := context.Background()

	a, err := c.EnsureJob(ctx, "branchml-seed", "<flow-definition>v1</flow-definition>", false)
	equal(t, "first", a, jenkins.Created)
	if err != nil {
		t.Fatal(err)
	}
	a, err = c.EnsureJob(ctx, "branchml-seed", "<flow-definition>v1</flow-definition>", false)
	equal(t, "same config", a, jenkins.Unchanged)
	if err != nil {
		t.Fatal(err)
	}
	a, err = c.EnsureJob(ctx, "branchml-seed", "<flow-definition>v2</flow-definition>", true)
	equal(t, "dry run", a, jenkins.Updated)
	if cfg, _ := s.Config("branchml-seed"); cfg != "<flow-definition>v1</flow-definition>" {
		t.Fatalf("dry run changed the config: %q", cfg)
	}
	a, err = c.EnsureJob(ctx, "branchml-seed", "<flow-definition>v2</flow-definition>", false)
	equal(t, "changed config", a, jenkins.Updated)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := s.Config("branchml-seed")
	equal(t, "config", cfg, "<flow-definition>v2</flow-definition>")
	equal(t, "calls", s.Calls(), []string{
		"GET /job/branchml-seed/config.xml",
		"GET /crumbIssuer/api/json",
		"POST /createItem?name=branchml-seed",
		"GET /job/branchml-seed/api/json",
		"GET /job/branchml-seed/config.xml",
		"GET /job/branchml-seed/config.xml",
		"GET /job/branchml-seed/config.xml",
		"POST /job/branchml-seed/config.xml",
		"GET /job/branchml-seed/api/json",
	})
	for _, r := range s.Requests() {
		if r.Method == http.MethodPost {
			equal(t, "crumb", r.Crumb, "crumb-0001")
			equal(t, "session cookie", r.Cookie, "JSESSIONID.4f5e6d7c=node0session0001")
			equal(t, "content type", r.ContentType, "application/xml;charset=utf-8")
		}
	}
}

func TestEnsureJobInFolder(t *testing.T) {
	s := secured(nil)
	defer s.Close()
	s.AddFolder("ops")
	c := newClient(t, s)
	if _, err := c.EnsureJob(context.Background(), "ops/branchml-seed", "<x/>", false); err != nil {
		t.Fatal(err)
	}
	equal(t, "create call", s.Calls()[2], "POST /job/ops/createItem?name=branchml-seed")
	if _, ok := s.Config("ops/branchml-seed"); !ok {
		t.Fatal("job not created in the folder")
	}
}

func TestTriggerBranchFollowQueueAndStreamConsole(t *testing.T) {
	s := secured(nil)
	defer s.Close()
	s.AddFolder("ml")
	s.AddFolder("ml/djia30")
	s.AddJob("ml/djia30/feature%2Fx", fake.Script{QueuePolls: 2, Result: "SUCCESS",
		Log: []string{"Started by user ci-bot\n", "[Pipeline] stage\nbranchml: branch feature/x runs no stage\n", "Finished: SUCCESS\n"}})
	c := newClient(t, s)
	ctx := context.Background()

	id, err := c.Trigger(ctx, "ml/djia30", "feature/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "queue id", id, int64(101))
	var whys []string
	n, err := c.WaitForBuild(ctx, id, func(why string) { whys = append(whys, why) })
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "build number", n, int64(1))
	equal(t, "waiting reasons", whys, []string{"In the quiet period. Expires in 4.9 sec", "In the quiet period. Expires in 4.9 sec"})

	var console bytes.Buffer
	st, err := c.StreamLog(ctx, "ml/djia30", "feature/x", n, &console)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "console", console.String(), "Started by user ci-bot\n[Pipeline] stage\nbranchml: branch feature/x runs no stage\nFinished: SUCCESS\n")
	equal(t, "status", *st, jenkins.BuildStatus{Number: 1, URL: s.URL() + "/job/ml/job/djia30/job/feature%252Fx/1/",
		Result: "SUCCESS", Duration: 4 * time.Second})
	equal(t, "calls", s.Calls(), []string{
		"GET /crumbIssuer/api/json",
		"POST /job/ml/job/djia30/job/feature%252Fx/build",
		"GET /queue/item/101/api/json",
		"GET /queue/item/101/api/json",
		"GET /queue/item/101/api/json",
		"GET /job/ml/job/djia30/job/feature%252Fx/1/logText/progressiveText?start=0",
		"GET /job/ml/job/djia30/job/feature%252Fx/1/logText/progressiveText?start=23",
		"GET /job/ml/job/djia30/job/feature%252Fx/1/logText/progressiveText?start=81",
		"GET /job/ml/job/djia30/job/feature%252Fx/1/api/json?depth=1",
	})
}

func TestTriggerWithParametersUsesBuildWithParameters(t *testing.T) {
	s := secured(nil)
	defer s.Close()
	s.AddJob("djia30/training", fake.Script{Result: "SUCCESS"})
	c := newClient(t, s)
	if _, err := c.Trigger(context.Background(), "djia30", "training", map[string]string{"REASON": "retrain & check"}); err != nil {
		t.Fatal(err)
	}
	r := s.Requests()[1]
	equal(t, "path", r.Path, "/job/djia30/job/training/buildWithParameters")
	equal(t, "form", r.Body, "REASON=retrain+%26+check")
	equal(t, "content type", r.ContentType, "application/x-www-form-urlencoded")
}

func TestTriggerBranchWithHashAndScanOfMultibranchJob(t *testing.T) {
	s := secured(nil)
	defer s.Close()
	s.AddMultibranch("ml/djia30")
	s.AddJob("ml/djia30/fix%2312", fake.Script{Result: "SUCCESS"})
	c := newClient(t, s)
	ctx := context.Background()
	id, err := c.Trigger(ctx, "ml/djia30", "fix#12", nil)
	if err != nil || id != 101 {
		t.Fatalf("trigger fix#12: %d, %v", id, err)
	}
	// The multibranch job itself: a branch indexing, no queue item.
	id, err = c.Trigger(ctx, "ml/djia30", "", nil)
	if err != nil || id != 0 {
		t.Fatalf("trigger the multibranch job: %d, %v; want 0 (a scan), no error", id, err)
	}
	equal(t, "scans", s.Scans("ml/djia30"), 1)
	equal(t, "calls", s.Calls()[1:], []string{
		"POST /job/ml/job/djia30/job/fix%252312/build",
		"POST /job/ml/job/djia30/build",
		"GET /job/ml/job/djia30/",
	})
}

func TestCancelledQueueItem(t *testing.T) {
	s := secured(nil)
	defer s.Close()
	s.AddJob("djia30/training", fake.Script{QueuePolls: 1, Cancel: true})
	c := newClient(t, s)
	id, err := c.Trigger(context.Background(), "djia30", "training", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.WaitForBuild(context.Background(), id, nil)
	var ce *jenkins.CancelledError
	if !errors.As(err, &ce) || ce.QueueID != 101 {
		t.Fatalf("want CancelledError for 101, got %v", err)
	}
}

func TestUnauthorizedIsAnAPIErrorWithoutTheToken(t *testing.T) {
	s := secured(nil)
	defer s.Close()
	c, err := jenkins.New(s.URL(), jenkins.WithAuth(user, "wrong-token-value"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Ping(context.Background())
	var ae *jenkins.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want APIError, got %v", err)
	}
	equal(t, "status", ae.Status, 401)
	equal(t, "temporary", ae.Temporary(), false)
	equal(t, "url", ae.URL, s.URL()+"/api/json")
	if strings.Contains(err.Error(), "wrong-token-value") {
		t.Fatalf("token in error: %v", err)
	}
	if !strings.Contains(ae.Fix(), "JENKINS_API_TOKEN") {
		t.Fatalf("fix: %q", ae.Fix())
	}
}

func TestExpiredCrumbIsFetchedAgainOnce(t *testing.T) {
	s := secured(nil)
	defer s.Close()
	s.AddJob("djia30/training", fake.Script{Result: "SUCCESS"})
	c := newClient(t, s)
	ctx := context.Background()
	if _, err := c.Trigger(ctx, "djia30", "training", nil); err != nil {
		t.Fatal(err)
	}
	s.ExpireCrumb()
	id, err := c.Trigger(ctx, "djia30", "training", nil)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "queue id", id, int64(102))
	equal(t, "crumb fetches", s.CrumbFetches(), 2)
	reqs := s.Requests()
	equal(t, "calls", s.Calls(), []string{
		"GET /crumbIssuer/api/json",
		"POST /job/djia30/job/training/build",
		"POST /job/djia30/job/training/build", // 403: old crumb
		"GET /crumbIssuer/api/json",
		"POST /job/djia30/job/training/build",
	})
	equal(t, "retried crumb", reqs[4].Crumb, "crumb-0002")
	equal(t, "retried cookie", reqs[4].Cookie, "JSESSIONID.4f5e6d7c=node0session0002")
}

func TestPermanent403IsNotRetriedForever(t *testing.T) {
	denied := &fake.Fault{Method: "POST", PathContains: "/build", Status: 403, Body: "ci-bot is missing the Job/Build permission"}
	s := secured(fake.Inject(denied))
	defer s.Close()
	s.AddJob("djia30/training", fake.Script{})
	c := newClient(t, s)
	_, err := c.Trigger(context.Background(), "djia30", "training", nil)
	var ae *jenkins.APIError
	if !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("want 403, got %v", err)
	}
	equal(t, "message", ae.Message, "ci-bot is missing the Job/Build permission")
	equal(t, "POSTs", denied.Hits(), 2) // the first, and one retry with a fresh crumb
	equal(t, "crumb fetches", s.CrumbFetches(), 2)
}

func TestServerErrorsAreTemporaryAndMalformedJSONFails(t *testing.T) {
	s := secured(fake.Inject(
		&fake.Fault{PathContains: "/queue/item/101", Status: 503, Body: "<html>Jenkins is restarting</html>", Times: 1},
		&fake.Fault{PathContains: "/queue/item/101", Status: 200, Body: `{"id": 101, "executable": {"number": "one"`},
	))
	defer s.Close()
	s.AddJob("djia30/training", fake.Script{})
	c := newClient(t, s)
	id, err := c.Trigger(context.Background(), "djia30", "training", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.WaitForBuild(context.Background(), id, nil)
	var ae *jenkins.APIError
	if !errors.As(err, &ae) || !ae.Temporary() || ae.Message != "" {
		t.Fatalf("want a temporary 503 without the HTML page, got %v", err)
	}
	_, err = c.WaitForBuild(context.Background(), id, nil)
	if err == nil || !strings.Contains(err.Error(), "malformed JSON from Jenkins") {
		t.Fatalf("want malformed JSON error, got %v", err)
	}
}

func TestTimeoutWhileWaiting(t *testing.T) {
	s := secured(fake.Inject(&fake.Fault{PathContains: "/queue/item/", Delay: time.Minute}))
	defer s.Close()
	s.AddJob("djia30/training", fake.Script{})
	c := newClient(t, s)
	id, err := c.Trigger(context.Background(), "djia30", "training", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.WaitForBuild(ctx, id, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
}

func TestNoCrumbIssuerMeansNoCrumb(t *testing.T) {
	s := fake.New()
	defer s.Close()
	s.AddJob("seed", fake.Script{})
	c, err := jenkins.New(s.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Trigger(context.Background(), "seed", "", nil); err != nil {
		t.Fatal(err)
	}
	equal(t, "calls", s.Calls(), []string{"GET /crumbIssuer/api/json", "POST /job/seed/build"})
	equal(t, "no crumb header", s.Requests()[1].Crumb, "")
}

func TestStatusOfLastBuildAndMissingJob(t *testing.T) {
	s := secured(nil)
	defer s.Close()
	s.AddJob("djia30/training", fake.Script{Result: "FAILURE", Log: []string{"boom\n"}})
	c := newClient(t, s)
	ctx := context.Background()
	id, _ := c.Trigger(ctx, "djia30", "training", nil)
	if _, err := c.WaitForBuild(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, "djia30", "training", 0)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "running", *st, jenkins.BuildStatus{Number: 1, URL: s.URL() + "/job/djia30/job/training/1/", Building: true})
	_, err = c.Status(ctx, "djia30", "nope", 0)
	if !jenkins.IsNotFound(err) {
		t.Fatalf("want 404, got %v", err)
	}
}

func TestNewRejectsBadURLsAndTokenWithoutUser(t *testing.T) {
	for _, u := range []string{"", "ci.example.com", "ftp://ci", "https://bob:pw@ci.example.com"} {
		if _, err := jenkins.New(u); err == nil {
			t.Errorf("New(%q): want error", u)
		}
	}
	if _, err := jenkins.New("https://ci", jenkins.WithAuth("", "tok")); err == nil {
		t.Error("token without user: want error")
	}
}

func TestItemPathAndQueueID(t *testing.T) {
	for _, c := range []struct{ job, branch, want string }{
		{"ml/djia30", "training", "/job/ml/job/djia30/job/training"},
		{"ml/djia30", "feature/x", "/job/ml/job/djia30/job/feature%252Fx"},
		{"/seed/", "", "/job/seed"},
		{"team space/djia30", "ds1%", "/job/team%20space/job/djia30/job/ds1%2525"},
		// branch-api's NameEncoder: # ? [ ] \ are encoded in the item name,
		// which the URL escapes again.
		{"ml/djia30", "fix#12", "/job/ml/job/djia30/job/fix%2523" + "12"},
		{"ml/djia30", "a?b[1]\\c", "/job/ml/job/djia30/job/a%253Fb%255B1%255D%255Cc"},
		{"ml/djia30", ".", "/job/ml/job/djia30/job/%252E"},
		{"ml/djia30", "..", "/job/ml/job/djia30/job/%252E."},
	} {
		got, err := jenkins.ItemPath(c.job, c.branch)
		if err != nil || got != c.want {
			t.Errorf("ItemPath(%q, %q) = %q, %v; want %q", c.job, c.branch, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "a//b", "a/../b"} {
		if _, err := jenkins.ItemPath(bad, ""); err == nil {
			t.Errorf("ItemPath(%q): want error", bad)
		}
	}
	id, err := jenkins.QueueID("https://ci.example.com/jenkins/queue/item/123/")
	equal(t, "id", id, int64(123))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "https://ci/queue/item/", "https://ci/job/x/123/", "https://ci/queue/item/-4/", "https://ci/queue/item/x/"} {
		if _, err := jenkins.QueueID(bad); err == nil {
			t.Errorf("QueueID(%q): want error", bad)
		}
	}
}

func FuzzQueueID(f *testing.F) {
	for _, s := range []string{"https://ci/queue/item/1/", "http://x/queue/item/99", "/queue/item/0/", "%zz", "queue/item/9223372036854775808/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, loc string) {
		id, err := jenkins.QueueID(loc)
		if err == nil && id <= 0 {
			t.Fatalf("QueueID(%q) = %d without error", loc, id)
		}
	})
}

func FuzzItemPath(f *testing.F) {
	f.Add("ml/djia30", "feature/x")
	f.Add("a", "%2F")
	f.Fuzz(func(t *testing.T, job, branch string) {
		p, err := jenkins.ItemPath(job, branch)
		if err != nil {
			return
		}
		if strings.Contains(p, "//") || !strings.HasPrefix(p, "/job/") {
			t.Fatalf("ItemPath(%q, %q) = %q", job, branch, p)
		}
		if branch != "" && strings.Count(p, "/job/") != strings.Count(strings.Trim(job, "/"), "/")+2 {
			t.Fatalf("branch %q leaked a path segment: %q", branch, p)
		}
	})
}

func BenchmarkItemPath(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := jenkins.ItemPath("ml/team/djia30", "feature/canary-rollout/v2"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStreamLog(b *testing.B) {
	s := fake.New()
	defer s.Close()
	log := make([]string, 50)
	for i := range log {
		log[i] = strings.Repeat("x", 1023) + "\n"
	}
	s.AddJob("djia30/training", fake.Script{Result: "SUCCESS", Log: log})
	c, _ := jenkins.New(s.URL(), jenkins.WithPollInterval(time.Nanosecond))
	ctx := context.Background()
	id, _ := c.Trigger(ctx, "djia30", "training", nil)
	n, _ := c.WaitForBuild(ctx, id, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var w bytes.Buffer
		if _, err := c.StreamLog(ctx, "djia30", "training", n, &w); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(w.Len()))
	}
}
