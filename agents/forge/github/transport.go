package github

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/secrets"
)

// retryTransport retries what GitHub asks to be retried: rate limits
// (403/429 with X-RateLimit-Remaining: 0 until X-RateLimit-Reset, or with
// Retry-After) and 5xx answers or network errors of requests that are safe
// to repeat. Waits honour the request's context.
type retryTransport struct {
	base     http.RoundTripper
	attempts int
	backoff  time.Duration
	maxWait  time.Duration
	log      logrus.FieldLogger
}

// repeatable reports whether sending r twice does no harm: everything but
// creating a comment (blobs, trees and commits are content-addressed, a ref
// update is a compare-and-swap, a status is the latest per context, a
// duplicate pull request is refused).
func repeatable(r *http.Request) bool {
	return !(r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/comments"))
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 && req.Body != nil {
			if req.GetBody == nil {
				return nil, errNoRewind
			}
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.base.RoundTrip(r)
		var wait time.Duration
		retry := false
		if err != nil {
			retry, wait = repeatable(req) && ctx.Err() == nil, t.backoffFor(attempt)
		} else {
			t.log.WithField("status", resp.StatusCode).Debugf("github: %s %s", req.Method, secrets.Redact(req.URL.Redacted()))
			wait, retry = t.classify(req, resp, attempt)
		}
		if !retry || attempt >= t.attempts || wait > t.maxWait {
			return resp, err
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
		}
		t.log.WithField("attempt", attempt).WithField("wait", wait.String()).Infof("github: %s %s will be retried", req.Method, secrets.Redact(req.URL.Redacted()))
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

type rewindError struct{}

func (rewindError) Error() string {
	return "github: cannot resend a request whose body cannot be rewound"
}

var errNoRewind error = rewindError{}

// classify returns how long to wait before retrying resp, and whether to.
func (t *retryTransport) classify(req *http.Request, resp *http.Response, attempt int) (time.Duration, bool) {
	h := resp.Header
	switch c := resp.StatusCode; {
	case (c == http.StatusForbidden || c == http.StatusTooManyRequests) && h.Get("Retry-After") != "":
		secs, err := strconv.Atoi(h.Get("Retry-After"))
		if err != nil {
			return t.backoffFor(attempt), true
		}
		return time.Duration(secs) * time.Second, true
	case (c == http.StatusForbidden || c == http.StatusTooManyRequests) && h.Get("X-RateLimit-Remaining") == "0":
		reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
		if err != nil {
			return t.backoffFor(attempt), true
		}
		d := time.Until(time.Unix(reset, 0))
		if d < t.backoff {
			d = t.backoff
		}
		return d, true
	case c == http.StatusTooManyRequests:
		return t.backoffFor(attempt), true
	case c == http.StatusInternalServerError || c == http.StatusBadGateway || c == http.StatusServiceUnavailable || c == http.StatusGatewayTimeout:
		return t.backoffFor(attempt), repeatable(req)
	}
	return 0, false
}

// backoffFor is backoff * 2^(attempt-1), jittered ±50 %.
func (t *retryTransport) backoffFor(attempt int) time.Duration {
	d := t.backoff << (attempt - 1)
	if d <= 0 || d > t.maxWait {
		d = t.maxWait
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
