package fakehttp

import (
	"io"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// Fault wraps a fake's handler to inject an error or a delay. An Injector
// applies its faults afresh to every request, so a fault that counts keeps
// its count outside the handler it returns (as When does).
type Fault func(next http.Handler) http.Handler

// When applies f only to the requests match accepts (nil: every request),
// and only to the first times of them (times <= 0: to all). Other requests
// go straight to the handler.
func When(match func(*http.Request) bool, times int, f Fault) Fault {
	var mu sync.Mutex // the count spans every request
	n := 0
	return func(next http.Handler) http.Handler {
		faulty := f(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if match == nil || match(r) {
				mu.Lock()
				hit := times <= 0 || n < times
				n++
				mu.Unlock()
				if hit {
					faulty.ServeHTTP(w, r)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// On applies f only to requests whose method is method ("" = any) and whose
// unescaped path matches the regular expression path, and only to the first
// times of them (times <= 0: to all); see When.
func On(method, path string, times int, f Fault) Fault {
	re := regexp.MustCompile(path)
	return When(func(r *http.Request) bool {
		return (method == "" || r.Method == method) && re.MatchString(r.URL.Path)
	}, times, f)
}

// Answer answers every request with h instead of the handler.
func Answer(h http.HandlerFunc) Fault {
	return func(http.Handler) http.Handler { return h }
}

// Text answers code with a text/plain body, as proxies do.
func Text(code int, body string) Fault {
	return Answer(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		io.WriteString(w, body)
	})
}

// Malformed answers 200 with body (a document cut short) as contentType.
func Malformed(contentType, body string) Fault {
	return Answer(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		io.WriteString(w, body)
	})
}

// Delay waits d before handling; when the client goes away first, nothing
// is answered.
func Delay(d time.Duration) Fault {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				next.ServeHTTP(w, r)
			case <-r.Context().Done():
			}
		})
	}
}

// Injector holds the faults injected into a fake. Its methods are safe for
// concurrent use; the zero Injector injects nothing.
type Injector struct {
	mu     sync.Mutex
	faults []Fault
}

// Inject adds faults; each wraps the handler, the last added outermost.
func (i *Injector) Inject(faults ...Fault) {
	i.mu.Lock()
	i.faults = append(i.faults, faults...)
	i.mu.Unlock()
}

// Clear removes every injected fault.
func (i *Injector) Clear() {
	i.mu.Lock()
	i.faults = nil
	i.mu.Unlock()
}

// Wrap returns next wrapped, on each request, in the faults injected by
// then.
func (i *Injector) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.mu.Lock()
		faults := append([]Fault(nil), i.faults...)
		i.mu.Unlock()
		h := next
		for _, f := range faults {
			h = f(h)
		}
		h.ServeHTTP(w, r)
	})
}
