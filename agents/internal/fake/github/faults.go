package github

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/branchml/branchml/agents/internal/fake/fakehttp"
)

// Fault wraps the fake's handler to inject an error or a delay; see
// fakehttp.Fault.
type Fault = fakehttp.Fault

// On applies f only to requests whose method is method ("" = any) and whose
// path matches the regular expression path, and only to the first times of
// them (times <= 0: to all). Other requests go straight to the handler.
func On(method, path string, times int, f Fault) Fault { return fakehttp.On(method, path, times, f) }

// Fail answers code with GitHub's error document {"message": message}.
func Fail(code int, message string) Fault {
	return fakehttp.Answer(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, code, message, docs)
	})
}

// RateLimited answers 403 with X-RateLimit-Remaining: 0 and
// X-RateLimit-Reset resetIn from now (whole seconds, rounded up), as
// GitHub's primary rate limit does.
func RateLimited(resetIn time.Duration) Fault {
	return fakehttp.Answer(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-RateLimit-Limit", "5000")
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Used", "5000")
		h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(resetIn+time.Second-1).Unix(), 10))
		h.Set("X-RateLimit-Resource", "core")
		writeError(w, http.StatusForbidden, "API rate limit exceeded for user ID 1.", docs+"/overview/rate-limits-for-the-rest-api")
	})
}

// SecondaryRateLimit answers code (403 or 429) with Retry-After: seconds,
// as GitHub's secondary rate limit does.
func SecondaryRateLimit(code, seconds int) Fault {
	return fakehttp.Answer(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", strconv.Itoa(seconds))
		writeError(w, code, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
			docs+"/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits")
	})
}

// Delay waits d (or until the client goes away) before handling.
func Delay(d time.Duration) Fault { return fakehttp.Delay(d) }

// Malformed answers 200 with a truncated JSON body.
func Malformed() Fault {
	return fakehttp.Malformed("application/json; charset=utf-8", `{"ref": "refs/heads/`)
}

// EchoAuthorization answers code with an error message quoting the
// request's Authorization header: a server that leaks the token back.
func EchoAuthorization(code int) Fault {
	return fakehttp.Answer(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, code, "rejected request with Authorization: "+r.Header.Get("Authorization"), docs)
	})
}

// ConcurrentPush commits path=content onto branch (as someone else pushing)
// just before the request is handled, so that a ref update built on the old
// tip is answered 422 "Update is not a fast forward" by the real handler.
// Each call commits different content (content + "\n#<n>") when content is
// reused, so the branch moves every time.
func (s *Server) ConcurrentPush(branch, path string, content []byte) Fault {
	var mu sync.Mutex
	n := 0
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			c := content
			if n > 1 {
				c = append(append([]byte(nil), content...), []byte("\n#"+strconv.Itoa(n))...)
			}
			mu.Unlock()
			s.Commit(branch, map[string][]byte{path: c}, "concurrent push to "+branch)
			next.ServeHTTP(w, r)
		})
	}
}

// RefUpdate is the path pattern of a ref update of branch, for On.
func RefUpdate(branch string) string {
	return `/git/refs/heads/` + regexp.QuoteMeta(strings.TrimPrefix(branch, "refs/heads/")) + `$`
}
