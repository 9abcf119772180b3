package github

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	gh "github.com/google/go-github/v62/github"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/internal/secrets"
)

// Error is a failed GitHub API call: the method, the redacted URL, the
// HTTP status (0 when no answer came) and GitHub's message. Error masks
// every registered secret. It matches forge.ErrNotFound on a 404.
type Error struct {
	Method string
	// URL is the request URL without user info.
	URL string
	// Status is the HTTP status code, 0 for a transport failure.
	Status int
	// Message is GitHub's error message plus the messages of its "errors".
	Message string
	// RateLimited is set for 403/429 answers of a primary or secondary rate limit.
	RateLimited bool
	Err         error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "GitHub %s %s", e.Method, e.URL)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	switch {
	case e.Status == http.StatusUnauthorized:
		b.WriteString(" (the token was refused: check GITHUB_TOKEN or GITHUB_TOKEN_FILE)")
	case e.RateLimited:
		b.WriteString(" (rate limited: wait for the reset or use a token with a higher limit)")
	case e.Status == http.StatusForbidden || e.Status == http.StatusNotFound && strings.Contains(e.Method, "POST"):
		b.WriteString(" (check that GITHUB_TOKEN may read and write this repository)")
	}
	return secrets.Redact(b.String())
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches forge.ErrNotFound for a 404.
func (e *Error) Is(target error) bool {
	return target == forge.ErrNotFound && e.Status == http.StatusNotFound
}

// Temporary reports whether the call may succeed later: rate limits, 5xx
// answers and network timeouts.
func (e *Error) Temporary() bool {
	if e.RateLimited || e.Status == http.StatusTooManyRequests || e.Status >= 500 {
		return true
	}
	var ne net.Error
	return e.Status == 0 && errors.As(e.Err, &ne) && ne.Timeout()
}

// wrap turns what go-github returned into an *Error (context errors pass
// through, wrapped with op).
func wrap(op string, resp *gh.Response, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Err: err}
	var hr *http.Response
	var er *gh.ErrorResponse
	var rl *gh.RateLimitError
	var ab *gh.AbuseRateLimitError
	switch {
	case errors.As(err, &rl):
		rl.Message = secrets.Redact(rl.Message)
		hr, e.Message, e.RateLimited = rl.Response, rl.Message, true
	case errors.As(err, &ab):
		ab.Message = secrets.Redact(ab.Message)
		hr, e.Message, e.RateLimited = ab.Response, ab.Message, true
	case errors.As(err, &er):
		// Mask secrets echoed by the server inside go-github's own error too,
		// so that no error in the chain prints them.
		er.Message = secrets.Redact(er.Message)
		for i := range er.Errors {
			er.Errors[i].Message = secrets.Redact(er.Errors[i].Message)
		}
		hr, e.Message = er.Response, er.Message
		for _, d := range er.Errors {
			if d.Message != "" {
				e.Message += "; " + d.Message
			} else if d.Field != "" {
				e.Message += fmt.Sprintf("; %s %s is %s", d.Resource, d.Field, d.Code)
			}
		}
	default:
		if resp != nil {
			hr = resp.Response
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("github %s: %w", op, err)
		}
		e.Message = err.Error()
	}
	if hr != nil {
		e.Status = hr.StatusCode
		if hr.Request != nil {
			e.Method, e.URL = hr.Request.Method, hr.Request.URL.Redacted()
		}
		if hr.StatusCode == http.StatusTooManyRequests {
			e.RateLimited = true
		}
	}
	if e.Method == "" {
		e.Method = op
	}
	return e
}

// status is the HTTP status of err if it is an *Error, else 0.
func status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}
