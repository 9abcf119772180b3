package jenkins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/bndr/gojenkins"

	"github.com/branchml/branchml/agents/internal/retry"
)

// Defaults of the client options.
var (
	// DefaultPollInterval is how often queue items and console text are polled.
	DefaultPollInterval = 2 * time.Second
	// DefaultHTTPTimeout bounds each HTTP request.
	DefaultHTTPTimeout = 30 * time.Second
)

type options struct {
	hc          *http.Client
	user, token string
	poll        time.Duration
}

// Option configures New.
type Option func(*options)

// WithHTTPClient sets the HTTP client (its Jar is replaced by a cookie jar
// when nil: crumbs are bound to the session cookie).
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithAuth sets the user and API token sent as HTTP Basic credentials.
func WithAuth(user, token string) Option {
	return func(o *options) { o.user, o.token = user, token }
}

// WithPollInterval sets how often queue items and console text are polled.
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// Client talks to one Jenkins controller.
type Client struct {
	base string
	req  *Requester
	jk   *gojenkins.Jenkins
	poll time.Duration
}

// New makes a client for the Jenkins at baseURL (http or https, optionally
// with a path prefix such as https://ci.example.com/jenkins). It sends no
// request; Ping checks the connection and the credentials.
func New(baseURL string, opts ...Option) (*Client, error) {
	o := options{poll: DefaultPollInterval}
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("jenkins URL %q: want http(s)://host[/prefix]", baseURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("jenkins URL %q: put no credentials in the URL; use JENKINS_USER and JENKINS_API_TOKEN", u.Redacted())
	}
	if o.user == "" && o.token != "" {
		return nil, errors.New("jenkins: an API token without a user; set JENKINS_USER")
	}
	if o.poll <= 0 {
		return nil, fmt.Errorf("jenkins: poll interval %s must be positive", o.poll)
	}
	hc := o.hc
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if hc.Jar == nil {
		c := *hc
		c.Jar, _ = cookiejar.New(nil)
		hc = &c
	}
	base := u.String()
	r := &Requester{base: base, hc: hc, user: o.user, token: o.token}
	return &Client{base: base, req: r, jk: &gojenkins.Jenkins{Server: base, Requester: r}, poll: o.poll}, nil
}

// Ping checks the connection and credentials (GET /api/json) and returns
// Jenkins' version (the X-Jenkins header).
func (c *Client) Ping(ctx context.Context) (string, error) {
	if _, err := c.jk.Init(ctx); err != nil {
		return "", fmt.Errorf("connect to Jenkins %s: %w", c.base, err)
	}
	return c.jk.Version, nil
}

// ItemPath is the escaped URL path of an item: full is the job path with
// folders separated by "/" ("ml/djia30"); branch, when not empty, is a branch
// of that multibranch job. ItemPath("ml/djia30", "feature/x") is
// "/job/ml/job/djia30/job/feature%252Fx".
func ItemPath(full, branch string) (string, error) {
	full = strings.Trim(full, "/")
	if full == "" {
		return "", errors.New("empty job path; give it as folder/job, e.g. ml/djia30")
	}
	var b strings.Builder
	for _, n := range strings.Split(full, "/") {
		if n == "" || n == "." || n == ".." {
			return "", fmt.Errorf("job path %q: empty or dot segment", full)
		}
		b.WriteString("/job/" + url.PathEscape(n))
	}
	if branch != "" {
		b.WriteString("/job/" + url.PathEscape(EncodeBranch(branch)))
	}
	return b.String(), nil
}

// QueueID parses the queue item id from the Location header Jenkins answers a
// build request with ("https://ci/queue/item/123/" -> 123).
func QueueID(location string) (int64, error) {
	u, err := url.Parse(location)
	if err != nil {
		return 0, fmt.Errorf("queue location %q: %w", location, err)
	}
	p := strings.TrimRight(u.Path, "/")
	if path.Base(path.Dir(p)) != "item" || path.Base(path.Dir(path.Dir(p))) != "queue" {
		return 0, fmt.Errorf("queue location %q: not a /queue/item/<id>/ URL", location)
	}
	id, err := strconv.ParseInt(path.Base(p), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("queue location %q: bad item id", location)
	}
	return id, nil
}

// Action says what EnsureJob did.
type Action string

// EnsureJob's actions.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
)

// EnsureJob creates the job full ("folder/name"; the folders must exist)
// with configXML, or updates its config.xml when Jenkins' copy lacks one of
// its settings (SameConfig: Jenkins' own re-serialization is no change).
// With dryRun it only reads and says what it would do.
func (c *Client) EnsureJob(ctx context.Context, full, configXML string, dryRun bool) (Action, error) {
	p, err := ItemPath(full, "")
	if err != nil {
		return "", err
	}
	job := &gojenkins.Job{Jenkins: c.jk, Raw: new(gojenkins.JobResponse), Base: p}
	current, err := job.GetConfig(ctx)
	switch {
	case IsNotFound(err):
		if dryRun {
			return Created, nil
		}
		name := full[strings.LastIndex(full, "/")+1:]
		if _, err := job.Create(ctx, configXML, map[string]string{"name": name}); err != nil {
			return "", fmt.Errorf("create job %s: %w", full, err)
		}
		return Created, nil
	case err != nil:
		return "", fmt.Errorf("read job %s: %w", full, err)
	}
	same, err := SameConfig(current, configXML)
	if err != nil {
		return "", fmt.Errorf("compare job %s: %w", full, err)
	}
	if same {
		return Unchanged, nil
	}
	if dryRun {
		return Updated, nil
	}
	if err := job.UpdateConfig(ctx, configXML); err != nil {
		return "", fmt.Errorf("update job %s: %w", full, err)
	}
	return Updated, nil
}

// Trigger queues a build of job full (or of its branch, for a multibranch
// job) with params (none: /build; some: /buildWithParameters) and returns the
// queue item id from the Location header. On a Multibranch Pipeline job
// itself (branch "") Jenkins schedules a branch indexing, which has no
// queue item to follow: Trigger then returns 0 and no error.
func (c *Client) Trigger(ctx context.Context, full, branch string, params map[string]string) (int64, error) {
	p, err := ItemPath(full, branch)
	if err != nil {
		return 0, err
	}
	endpoint := p + "/build"
	form := url.Values{}
	if len(params) > 0 {
		endpoint = p + "/buildWithParameters"
		for k, v := range params {
			form.Set(k, v)
		}
	}
	resp, err := c.req.Post(ctx, endpoint, strings.NewReader(form.Encode()), nil, nil)
	if err != nil {
		return 0, fmt.Errorf("trigger %s: %w", describe(full, branch), err)
	}
	if branch == "" && resp.Request != nil && !strings.HasSuffix(resp.Request.URL.EscapedPath(), endpoint) {
		// A Multibranch Pipeline job (a computed folder) schedules a branch
		// indexing and redirects to the previous page
		// (ComputedFolder.doBuild): there is no queue item to follow.
		return 0, nil
	}
	id, err := QueueID(resp.Header.Get("Location"))
	if err != nil {
		return 0, fmt.Errorf("trigger %s: %w", describe(full, branch), err)
	}
	return id, nil
}

func describe(full, branch string) string {
	if branch == "" {
		return full
	}
	return full + " branch " + branch
}

// queueItem is /queue/item/<id>/api/json (hudson.model.Queue$Item and
// Queue$LeftItem): executable is set once the item started a build.
type queueItem struct {
	ID         int64  `json:"id"`
	Why        string `json:"why"`
	Cancelled  bool   `json:"cancelled"`
	Executable *struct {
		Number int64  `json:"number"`
		URL    string `json:"url"`
	} `json:"executable"`
}

// WaitForBuild polls queue item id until it has started a build and returns
// the build number; a cancelled item is a *CancelledError. waiting, when not
// nil, gets Jenkins' reason each time the item is still waiting.
func (c *Client) WaitForBuild(ctx context.Context, id int64, waiting func(why string)) (int64, error) {
	for {
		var q queueItem
		if _, err := c.req.GetJSON(ctx, fmt.Sprintf("/queue/item/%d", id), &q, nil); err != nil {
			return 0, fmt.Errorf("queue item %d: %w", id, err)
		}
		if q.Cancelled {
			return 0, &CancelledError{QueueID: id}
		}
		if q.Executable != nil && q.Executable.Number > 0 {
			return q.Executable.Number, nil
		}
		if waiting != nil {
			waiting(q.Why)
		}
		if err := retry.Sleep(ctx, c.poll); err != nil {
			return 0, fmt.Errorf("queue item %d: %w", id, err)
		}
	}
}

// BuildStatus is what Status reports of one build (Jenkins' Run JSON).
type BuildStatus struct {
	Number int64  `json:"number"`
	URL    string `json:"url"`
	// Building is true while it runs; Result is "" until it ends, then
	// SUCCESS, UNSTABLE, FAILURE, NOT_BUILT or ABORTED.
	Building bool   `json:"building"`
	Result   string `json:"result,omitempty"`
	// Duration of the finished build.
	Duration time.Duration `json:"duration"`
}

func (c *Client) build(full, branch string, number int64) (*gojenkins.Build, error) {
	p, err := ItemPath(full, branch)
	if err != nil {
		return nil, err
	}
	n := "lastBuild"
	if number > 0 {
		n = strconv.FormatInt(number, 10)
	}
	return &gojenkins.Build{Jenkins: c.jk, Raw: new(gojenkins.BuildResponse), Depth: 1, Base: p + "/" + n}, nil
}

// Status reports build number (0: the last build) of a job or branch.
func (c *Client) Status(ctx context.Context, full, branch string, number int64) (*BuildStatus, error) {
	b, err := c.build(full, branch, number)
	if err != nil {
		return nil, err
	}
	if _, err := b.Poll(ctx); err != nil {
		return nil, fmt.Errorf("build %s #%s: %w", describe(full, branch), buildRef(number), err)
	}
	return &BuildStatus{Number: b.Raw.Number, URL: b.Raw.URL, Building: b.Raw.Building, Result: b.Raw.Result,
		Duration: time.Duration(b.Raw.Duration) * time.Millisecond}, nil
}

func buildRef(n int64) string {
	if n == 0 {
		return "lastBuild"
	}
	return strconv.FormatInt(n, 10)
}

// StreamLog copies the console of build number (0: the last build) to w as
// it grows (progressiveText from the last X-Text-Size while X-More-Data is
// set), then returns the build's final status.
func (c *Client) StreamLog(ctx context.Context, full, branch string, number int64, w io.Writer) (*BuildStatus, error) {
	if number == 0 {
		st, err := c.Status(ctx, full, branch, 0)
		if err != nil {
			return nil, err
		}
		number = st.Number
	}
	b, err := c.build(full, branch, number)
	if err != nil {
		return nil, err
	}
	var offset int64
	for {
		out, err := b.GetConsoleOutputFromIndex(ctx, offset)
		if err != nil {
			return nil, fmt.Errorf("console of %s #%d: %w", describe(full, branch), number, err)
		}
		if _, err := io.WriteString(w, out.Content); err != nil {
			return nil, err
		}
		offset = out.Offset
		if !out.HasMoreText {
			break
		}
		if err := retry.Sleep(ctx, c.poll); err != nil {
			return nil, fmt.Errorf("console of %s #%d: %w", describe(full, branch), number, err)
		}
	}
	// The console ends a moment before the build records its result.
	for {
		st, err := c.Status(ctx, full, branch, number)
		if err != nil || !st.Building {
			return st, err
		}
		if err := retry.Sleep(ctx, c.poll); err != nil {
			return nil, err
		}
	}
}
