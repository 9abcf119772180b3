package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Error is a failed registry operation. Status is the HTTP status the
// registry answered (0 when there was no answer: refused, timed out).
type Error struct {
	// Registry is the registry host[:port], Op the operation ("push",
	// "pull", "check"), Ref the image reference it concerned.
	Registry, Op, Ref string
	Status            int
	// Credentials names where the credentials came from
	// ("REGISTRY_USERNAME/REGISTRY_PASSWORD", "Docker config", "none").
	Credentials string
	// Attempts is how many times the operation was tried.
	Attempts int
	// TLS is set when the TLS handshake failed (Err is then TLS).
	TLS *TLSError
	// RetryAfter is the wait the registry last asked for (429/503 with
	// Retry-After); Window the retry window when it was spent.
	RetryAfter, Window time.Duration
	Err                error
}

func (e *Error) Error() string {
	var s string
	switch {
	case e.TLS != nil:
		return fmt.Sprintf("%s %s: registry %s: %v", e.Op, e.Ref, e.Registry, e.TLS)
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		s = fmt.Sprintf("%s %s: registry %s answered %d %s (credentials: %s)", e.Op, e.Ref, e.Registry, e.Status, http.StatusText(e.Status), e.Credentials)
	case e.Status != 0:
		s = fmt.Sprintf("%s %s: registry %s answered %d %s", e.Op, e.Ref, e.Registry, e.Status, http.StatusText(e.Status))
	default:
		s = fmt.Sprintf("%s %s: registry %s", e.Op, e.Ref, e.Registry)
	}
	switch {
	case e.Window > 0 && e.RetryAfter > 0:
		s += fmt.Sprintf(" (after %d attempts; it asked to retry after %s, past the retry window of %s)", e.Attempts, e.RetryAfter, e.Window)
	case e.Window > 0:
		s += fmt.Sprintf(" (after %d attempts in the retry window of %s)", e.Attempts, e.Window)
	case e.Attempts > 1:
		s += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Unauthorized reports a 401 or 403 answer: the credentials are wrong or missing.
func (e *Error) Unauthorized() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// Temporary reports whether retrying may help: 408, 429 and 5xx answers,
// timeouts, refused or reset connections. 4xx answers (401 included) are not.
func (e *Error) Temporary() bool { return temporary(e.Status, e.Err) }

var retriableStatus = map[int]bool{
	http.StatusRequestTimeout: true, http.StatusTooManyRequests: true,
	http.StatusInternalServerError: true, http.StatusBadGateway: true,
	http.StatusServiceUnavailable: true, http.StatusGatewayTimeout: true,
}

func temporary(status int, err error) bool {
	if status != 0 {
		return retriableStatus[status]
	}
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// statusOf returns the HTTP status of a go-containerregistry error (0 if none).
func statusOf(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}
