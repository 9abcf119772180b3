package kfp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
	fake "github.com/branchml/branchml/agents/internal/fake/kfp"
)

const testHash = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

var testSpec = []byte("pipelineInfo:\n  name: p\nroot:\n  dag:\n    tasks:\n      prepare-data: {componentRef: {name: c1}}\n      train: {componentRef: {name: c2}}\n")

func newClient(t *testing.T, s *fake.Server, opts ...Option) *Client {
	t.Helper()
	c, err := New(s.URL, append([]Option{WithRetry(RetryPolicy{Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond}), WithRequestTimeout(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// faulty is the KFP fake with the faults injected, closed when the test
// ends.
func faulty(t *testing.T, faults ...fake.Fault) *fake.Server {
	s := fake.New()
	t.Cleanup(s.Close)
	s.Inject(faults...)
	return s
}

// uploaded is a client of the KFP fake (started with opts, closed when the
// test ends) that uploaded upload()'s version v.
func uploaded(t *testing.T, opts ...fake.Option) (*fake.Server, *Client, *pipelines.Version) {
	t.Helper()
	s := fake.New(opts...)
	t.Cleanup(s.Close)
	c := newClient(t, s)
	v, err := c.UploadVersion(context.Background(), upload())
	if err != nil {
		t.Fatal(err)
	}
	return s, c, v
}

func upload() pipelines.Upload {
	return pipelines.Upload{PipelineName: "djia30-sentiment", Description: "DJIA", VersionName: "abc123-aaaaaaaaaaaa", Spec: testSpec, SpecHash: testHash}
}

func filterOf(r fake.Request) string { return r.Query.Get("filter") }

func TestUploadTwiceCreatesOnce(t *testing.T) {
	s := fake.New(fake.WithToken("s3cret-token"))
	defer s.Close()
	c := newClient(t, s, WithToken("s3cret-token"), WithNamespace("team-a"))
	ctx := context.Background()
	v1, err := c.UploadVersion(ctx, upload())
	if err != nil {
		t.Fatal(err)
	}
	if !v1.Created || v1.VersionName != "abc123-aaaaaaaaaaaa" || v1.SpecHash != testHash || v1.PipelineName != "djia30-sentiment" {
		t.Errorf("first upload = %+v", v1)
	}
	v2, err := c.UploadVersion(ctx, upload())
	if err != nil {
		t.Fatal(err)
	}
	if v2.Created || v2.VersionID != v1.VersionID || v2.PipelineID != v1.PipelineID {
		t.Errorf("second upload = %+v, want the first version unchanged", v2)
	}
	if n := len(s.Pipelines()); n != 1 {
		t.Errorf("%d pipelines", n)
	}
	vs := s.Versions("")
	if len(vs) != 1 || string(vs[0].Spec) != string(testSpec) || vs[0].Description != "DJIA\nbranchml-spec-hash: "+testHash {
		t.Fatalf("versions = %+v", vs)
	}
	if p := s.Pipelines()[0]; p.Namespace != "team-a" || p.Description != "DJIA" {
		t.Errorf("pipeline = %+v", p)
	}
	filter := `{"predicates":[{"key":"display_name","operation":"EQUALS","string_value":"djia30-sentiment"}]}`
	want := []string{
		"GET /apis/v2beta1/pipelines?filter=" + url.QueryEscape(filter) + "&namespace=team-a",
		"POST /apis/v2beta1/pipelines",
		"GET /apis/v2beta1/pipelines/" + v1.PipelineID + "/versions?page_size=100",
		"POST /apis/v2beta1/pipelines/upload_version?description=" + url.QueryEscape("DJIA\nbranchml-spec-hash: "+testHash) + "&name=abc123-aaaaaaaaaaaa&pipelineid=" + v1.PipelineID,
		"GET /apis/v2beta1/pipelines?filter=" + url.QueryEscape(filter) + "&namespace=team-a",
		"GET /apis/v2beta1/pipelines/" + v1.PipelineID + "/versions?page_size=100",
	}
	got := s.Calls()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	reqs := s.Requests()
	if string(reqs[1].Body) != `{"created_at":"0001-01-01T00:00:00.000Z","description":"DJIA","display_name":"djia30-sentiment","namespace":"team-a"}`+"\n" {
		t.Errorf("create body = %q", reqs[1].Body)
	}
	if string(reqs[3].File) != string(testSpec) {
		t.Errorf("uploaded file = %q", reqs[3].File)
	}
	for _, r := range reqs {
		if r.Authorization != "Bearer s3cret-token" {
			t.Errorf("%s: Authorization %q", r, r.Authorization)
		}
	}
}

func TestUploadDuplicatePipelineName(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []fake.Option
	}{
		{"409", nil},
		{"500 text/plain", []fake.Option{fake.WithLegacyConflicts()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fake.New(tc.opts...)
			defer s.Close()
			// Someone creates the pipeline between our lookup and our create.
			id := ""
			s.Inject(fake.On("GET", "^/apis/v2beta1/pipelines$", 1, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					next.ServeHTTP(w, r)
					id = s.AddPipeline("djia30-sentiment", "")
				})
			}))
			c := newClient(t, s)
			v, err := c.UploadVersion(context.Background(), upload())
			if err != nil {
				t.Fatal(err)
			}
			if v.PipelineID != id || !v.Created {
				t.Errorf("version = %+v, want pipeline %s", v, id)
			}
			var creates []int
			for _, r := range s.Requests() {
				if r.Method == "POST" && r.Path == "/apis/v2beta1/pipelines" {
					creates = append(creates, r.Status)
				}
			}
			want := 409
			if tc.name != "409" {
				want = 500
			}
			if len(creates) != 1 || creates[0] != want {
				t.Errorf("create answers = %v, want one %d (never retried)", creates, want)
			}
			if len(s.Pipelines()) != 1 || len(s.Versions("")) != 1 {
				t.Errorf("pipelines %d versions %d", len(s.Pipelines()), len(s.Versions("")))
			}
		})
	}
}

func TestUploadDuplicateVersionName(t *testing.T) {
	s := fake.New(fake.WithLegacyConflicts())
	defer s.Close()
	pid := s.AddPipeline("djia30-sentiment", "")
	// The version exists but the list before the upload missed it (a race).
	s.Inject(fake.On("GET", "/versions$", 1, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"pipeline_versions":[],"total_size":0}`))
			s.AddVersion(pid, "abc123-aaaaaaaaaaaa", "branchml-spec-hash: "+testHash, testSpec)
		})
	}))
	c := newClient(t, s)
	v, err := c.UploadVersion(context.Background(), upload())
	if err != nil {
		t.Fatal(err)
	}
	if v.Created || v.VersionName != "abc123-aaaaaaaaaaaa" || v.SpecHash != testHash {
		t.Errorf("version = %+v", v)
	}
	// Same name, other hash: an error naming both.
	u := upload()
	u.SpecHash = "sha256:bbbb"
	_, err = c.UploadVersion(context.Background(), u)
	if err == nil || !strings.Contains(err.Error(), `version "abc123-aaaaaaaaaaaa" exists with spec hash "`+testHash+`", not sha256:bbbb`) {
		t.Errorf("err = %v", err)
	}
}

func TestRetries5xxThenSucceeds(t *testing.T) {
	s := faulty(t, fake.On("POST", "upload_version$", 2, fake.Unavailable()))
	c := newClient(t, s)
	v, err := c.UploadVersion(context.Background(), upload())
	if err != nil {
		t.Fatal(err)
	}
	var statuses []int
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, "upload_version") {
			statuses = append(statuses, r.Status)
		}
	}
	if len(statuses) != 3 || statuses[0] != 503 || statuses[1] != 503 || statuses[2] != 200 || !v.Created {
		t.Errorf("upload answers %v, version %+v", statuses, v)
	}
	if len(s.Versions("")) != 1 {
		t.Errorf("%d versions", len(s.Versions("")))
	}
}

func TestGivesUpAfterAttempts(t *testing.T) {
	s := faulty(t, fake.On("GET", "^/apis/v2beta1/pipelines$", 0, fake.Text(502, "Bad Gateway from the proxy")))
	c := newClient(t, s)
	_, err := c.UploadVersion(context.Background(), upload())
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 502 || ae.Message != "Bad Gateway from the proxy" || !ae.Temporary() {
		t.Fatalf("err = %#v", err)
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("%d requests, want 3 attempts", n)
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	s := faulty(t, fake.On("GET", "^/apis/v2beta1/pipelines$", 1, fake.Delay(2*time.Second)))
	c := newClient(t, s, WithRequestTimeout(100*time.Millisecond))
	v, err := c.UploadVersion(context.Background(), upload())
	if err != nil {
		t.Fatal(err)
	}
	if !v.Created || len(s.Pipelines()) != 1 {
		t.Errorf("version %+v, pipelines %d", v, len(s.Pipelines()))
	}
}

func TestNotRetried(t *testing.T) {
	s := faulty(t, fake.On("GET", "^/apis/v2beta1/pipelines$", 0, fake.Fail(400, 3, "Invalid input error: bad filter")))
	c := newClient(t, s)
	_, err := c.FindPipeline(context.Background(), "x")
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Code != 3 || ae.Temporary() {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "KFP GET "+s.URL+"/apis/v2beta1/pipelines: 400 Bad Request: Invalid input error: bad filter") {
		t.Errorf("message = %v", err)
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("%d requests", n)
	}
}

func TestMalformedResponse(t *testing.T) {
	s := faulty(t, fake.On("GET", "^/apis/v2beta1/pipelines$", 0, fake.Malformed()))
	c := newClient(t, s)
	_, err := c.FindPipeline(context.Background(), "x")
	var re *ResponseError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "KFP list pipelines: malformed response") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnauthorized(t *testing.T) {
	s := fake.New(fake.WithToken("right-token"))
	defer s.Close()
	c := newClient(t, s, WithToken("wrong-token"))
	_, err := c.FindPipeline(context.Background(), "x")
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Code != 16 {
		t.Fatalf("err = %v", err)
	}
}

func TestLongNamesAreShortened(t *testing.T) {
	long := strings.Repeat("p", 120)
	if got := pipelines.ShortName(long); len(got) != 100 || !strings.HasPrefix(got, strings.Repeat("p", 87)+"-") {
		t.Errorf("ShortName = %q (%d)", got, len(got))
	}
	if pipelines.ShortName(long) == pipelines.ShortName(long+"x") {
		t.Error("distinct long names collide")
	}
	if pipelines.ShortName("short") != "short" {
		t.Error("short name changed")
	}
	s := fake.New()
	defer s.Close()
	c := newClient(t, s)
	u := upload()
	u.PipelineName = long
	v, err := c.UploadVersion(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	if v.PipelineName != pipelines.ShortName(long) || s.Pipelines()[0].Name != pipelines.ShortName(long) {
		t.Errorf("pipeline name %q", v.PipelineName)
	}
}

func TestUploadRejectsPipelineNameAsVersionName(t *testing.T) {
	s := fake.New()
	defer s.Close()
	u := upload()
	u.VersionName = u.PipelineName
	_, err := newClient(t, s).UploadVersion(context.Background(), u)
	if err == nil || !strings.Contains(err.Error(), "must differ from the pipeline's name") {
		t.Fatalf("err = %v", err)
	}
	if len(s.Requests()) != 0 {
		t.Error("calls made")
	}
}

func TestRunLifecycle(t *testing.T) {
	s, c, v := uploaded(t)
	ctx := context.Background()
	req := pipelines.RunRequest{Experiment: "djia30", DisplayName: "train-abc123", PipelineID: v.PipelineID, VersionID: v.VersionID, Parameters: map[string]any{"epochs": 3, "data_path": "/data"}}
	run, err := c.CreateRun(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if run.State != pipelines.StatePending || run.DisplayName != "train-abc123" || run.URL != s.URL+"/#/runs/details/"+run.ID {
		t.Errorf("run = %+v", run)
	}
	again, err := c.CreateRun(ctx, req)
	if err != nil || again.ID != run.ID {
		t.Fatalf("second create = %+v, %v; want the same run", again, err)
	}
	if exps := s.Experiments(); len(exps) != 1 || exps[0].Name != "djia30" {
		t.Errorf("experiments = %+v", exps)
	}
	var body string
	for _, r := range s.Requests() {
		if r.Method == "POST" && r.Path == "/apis/v2beta1/runs" {
			body = string(r.Body)
		}
	}
	// The generated client sends the output-only time fields as zero times.
	wantBody := `{"created_at":"0001-01-01T00:00:00.000Z","display_name":"train-abc123","experiment_id":"` + s.Experiments()[0].ID + `","finished_at":"0001-01-01T00:00:00.000Z","pipeline_version_reference":{"pipeline_id":"` + v.PipelineID + `","pipeline_version_id":"` + v.VersionID + `"},"runtime_config":{"parameters":{"data_path":"/data","epochs":3}},"scheduled_at":"0001-01-01T00:00:00.000Z","state_history":null}` + "\n"
	if body != wantBody {
		t.Errorf("create run body\n%s\nwant\n%s", body, wantBody)
	}
	var states []string
	for i := 0; i < 3; i++ {
		r, err := c.GetRun(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, r.State)
		if i == 2 && (len(r.Tasks) != 2 || r.Tasks[0].Name != "prepare-data" || r.Tasks[1].State != "SUCCEEDED" || r.FinishedAt.IsZero()) {
			t.Errorf("final run = %+v", r)
		}
	}
	if strings.Join(states, ",") != "RUNNING,SUCCEEDED,SUCCEEDED" {
		t.Errorf("states = %v", states)
	}
	_, err = c.GetRun(ctx, "nope")
	if !errors.Is(err, pipelines.ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
}

func TestCancelAndFailure(t *testing.T) {
	s, c, v := uploaded(t, fake.WithRunStates("PENDING", "RUNNING", "RUNNING", "RUNNING"))
	ctx := context.Background()
	run, err := c.CreateRun(ctx, pipelines.RunRequest{Experiment: "e", DisplayName: "r1", PipelineID: v.PipelineID, VersionID: v.VersionID})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CancelRun(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	r, _ := c.GetRun(ctx, run.ID)
	if r.State != pipelines.StateCanceled {
		t.Errorf("after cancel: %s", r.State)
	}
	run2, err := c.CreateRun(ctx, pipelines.RunRequest{Experiment: "e", DisplayName: "r2", PipelineID: v.PipelineID, VersionID: v.VersionID})
	if err != nil {
		t.Fatal(err)
	}
	s.SetRunStates(run2.ID, "RUNNING", "FAILED")
	s.SetTaskError(run2.ID, "train", "OOMKilled")
	r, err = c.GetRun(ctx, run2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != "FAILED" || r.Error != "task train failed: OOMKilled" || r.Tasks[1].Error != "OOMKilled" {
		t.Errorf("failed run = %+v", r)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New("kfp.example.com"); err == nil || !strings.Contains(err.Error(), "want an http(s) URL") {
		t.Errorf("err = %v", err)
	}
	if _, err := New("https://kfp", WithTLS("", true), WithHTTPClient(http.DefaultClient)); err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Errorf("err = %v", err)
	}
	if _, err := New("https://kfp", WithTLS("/nonexistent/ca.pem", false)); err == nil || !strings.Contains(err.Error(), "KFP CA file") {
		t.Errorf("err = %v", err)
	}
}
