package tfserving

import (
	"net/http"
	"strings"
	"time"

	"github.com/branchml/branchml/agents/internal/fake/fakehttp"
)

// Match selects the requests a fault applies to; nil matches every request.
type Match func(*http.Request) bool

// PathContains matches requests whose path contains s (e.g. ":predict",
// "/monitoring/").
func PathContains(s string) Match {
	return func(r *http.Request) bool { return strings.Contains(r.URL.Path, s) }
}

// when applies f to the first n requests m matches (n < 0: all; n = 0:
// none).
func when(h http.Handler, m Match, n int, f fakehttp.Fault) http.Handler {
	if n == 0 {
		return h
	}
	return fakehttp.When(m, max(n, 0), f)(h)
}

// Fail answers the first n matching requests (n < 0: all) with status and
// TF Serving's error body {"error": "..."}, then passes through to h.
func Fail(h http.Handler, m Match, status, n int) http.Handler {
	return when(h, m, n, fakehttp.Answer(func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, status, "injected %d", status)
	}))
}

// Delay holds matching requests for d (or until the client gives up) before h.
func Delay(h http.Handler, m Match, d time.Duration) http.Handler {
	return when(h, m, -1, fakehttp.Delay(d))
}

// Malformed answers matching requests with 200 and a body that is not JSON
// nor Prometheus text.
func Malformed(h http.Handler, m Match) http.Handler {
	return when(h, m, -1, fakehttp.Malformed("application/json", `{"model_version_status": [{"version": 1, "state"`))
}
