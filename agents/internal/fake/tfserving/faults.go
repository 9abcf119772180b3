package tfserving

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Match selects the requests a fault applies to; nil matches every request.
type Match func(*http.Request) bool

// PathContains matches requests whose path contains s (e.g. ":predict",
// "/monitoring/").
func PathContains(s string) Match {
	return func(r *http.Request) bool { return strings.Contains(r.URL.Path, s) }
}

func matches(m Match, r *http.Request) bool { return m == nil || m(r) }

// Fail answers the first n matching requests (n < 0: all) with status and
// TF Serving's error body {"error": "..."}, then passes through to h.
func Fail(h http.Handler, m Match, status, n int) http.Handler {
	var seen atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if matches(m, r) && (n < 0 || seen.Add(1) <= int64(n)) {
			writeErr(w, status, "injected %d", status)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Delay holds matching requests for d (or until the client gives up) before h.
func Delay(h http.Handler, m Match, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if matches(m, r) {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// Malformed answers matching requests with 200 and a body that is not JSON
// nor Prometheus text.
func Malformed(h http.Handler, m Match) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if matches(m, r) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"model_version_status": [{"version": 1, "state"`))
			return
		}
		h.ServeHTTP(w, r)
	})
}
