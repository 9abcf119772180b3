package github

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/internal/retry"
	"github.com/branchml/branchml/agents/internal/secrets"
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
	var resp *http.Response // of the last attempt, returned as is when retries end
	var rtErr error
	p := t.policy()
	p.OnRetry = func(attempt int, wait time.Duration, _ error) {
		drain(resp)
		t.log.WithField("attempt", attempt).WithField("wait", wait.String()).Infof("github: %s %s will be retried", req.Method, secrets.Redact(req.URL.Redacted()))
	}
	err := retry.Do(ctx, p, func(ctx context.Context, attempt int) error {
		r := req
		if attempt > 1 && req.Body != nil {
			resp, rtErr = nil, errNoRewind
			if req.GetBody == nil {
				return rtErr
			}
			body, err := req.GetBody()
			if err != nil {
				rtErr = err
				return err
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, rtErr = t.base.RoundTrip(r)
		if rtErr != nil {
			if repeatable(req) && ctx.Err() == nil {
				return retry.After(rtErr, t.backoffFor(attempt))
			}
			return rtErr
		}
		t.log.WithField("status", resp.StatusCode).Debugf("github: %s %s", req.Method, secrets.Redact(req.URL.Redacted()))
		if wait, ok := t.classify(req, resp, attempt); ok {
			return retry.After(errors.New(resp.Status), wait)
		}
		return nil
	})
	var re *retry.Error
	if errors.As(err, &re) && re.Context != nil {
		drain(resp)
		return nil, re.Context
	}
	return resp, rtErr
}

// policy is the transport's retry policy: only what classify (or a failed
// round trip of a repeatable request) marks with retry.After is retried,
// and a wait longer than maxWait is not waited.
func (t *retryTransport) policy() retry.Policy {
	return retry.Policy{Attempts: t.attempts, Initial: t.backoff, Max: t.maxWait, Jitter: 0.5,
		Retriable: func(err error) bool {
			var ae *retry.AfterError
			return errors.As(err, &ae)
		}}
}

// drain reads and closes the body of a response that will not be returned.
func drain(resp *http.Response) {
	if resp != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
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

// backoffFor is backoff * 2^(attempt-1), capped at maxWait, jittered
// between a half and the whole.
func (t *retryTransport) backoffFor(attempt int) time.Duration {
	return t.policy().Backoff(attempt)
}
