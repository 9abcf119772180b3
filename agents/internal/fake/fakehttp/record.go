package fakehttp

import (
	"bytes"
	"io"
	"net/http"
	"sync"
)

// Request is one request a fake received.
type Request struct {
	Method string
	// Path is the unescaped URL path; EscapedPath the path as sent.
	Path, EscapedPath string
	// RawQuery is the query string as sent, without "?".
	RawQuery string
	// Header is the request's header.
	Header http.Header
	// Body is the request body as sent.
	Body []byte
	// Status is the status code answered (0 while the request is being
	// handled, or when the handler wrote nothing).
	Status int
}

// String is "METHOD /path" (with "?query" when there is one).
func (r Request) String() string {
	if r.RawQuery != "" {
		return r.Method + " " + r.Path + "?" + r.RawQuery
	}
	return r.Method + " " + r.Path
}

// Recorder keeps the requests a handler receives, in the order they
// arrive. Its methods are safe for concurrent use; the zero Recorder is
// ready.
type Recorder struct {
	mu   sync.Mutex
	reqs []*Request
}

// Wrap returns next recording every request into r: it reads the body
// (and gives next an unread copy), and fills in the status when next
// returns.
func (r *Recorder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body []byte
		if req.Body != nil {
			body, _ = io.ReadAll(req.Body)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		rec := &Request{Method: req.Method, Path: req.URL.Path, EscapedPath: req.URL.EscapedPath(),
			RawQuery: req.URL.RawQuery, Header: req.Header.Clone(), Body: body}
		r.mu.Lock()
		r.reqs = append(r.reqs, rec)
		r.mu.Unlock()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, req)
		r.mu.Lock()
		rec.Status = sw.status
		r.mu.Unlock()
	})
}

// Requests returns a copy of every request received, in order.
func (r *Recorder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Request, len(r.reqs))
	for i, q := range r.reqs {
		out[i] = *q
	}
	return out
}

// Reset forgets the recorded requests.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

// Convert maps reqs with f (nil for none): a fake's own request type
// from Requests.
func Convert[T any](reqs []Request, f func(Request) T) []T {
	var out []T
	for _, r := range reqs {
		out = append(out, f(r))
	}
	return out
}

// Strings returns String of every element of v.
func Strings[T interface{ String() string }](v []T) []string {
	var out []string
	for _, x := range v {
		out = append(out, x.String())
	}
	return out
}

// statusWriter remembers the first status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets slow handlers push headers early.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Fake is the request recording and fault injection of a fake server whose
// own request type is T; embed it (as a pointer, from NewFake) to give the
// server Inject, ClearFaults, Requests, Calls and ResetRequests.
type Fake[T interface{ String() string }] struct {
	rec     Recorder
	inj     Injector
	convert func(Request) T
}

// NewFake returns a Fake whose Requests are made with convert.
func NewFake[T interface{ String() string }](convert func(Request) T) *Fake[T] {
	return &Fake[T]{convert: convert}
}

// Handler returns h recording every request, with the injected faults
// inside the recording.
func (f *Fake[T]) Handler(h http.Handler) http.Handler { return f.rec.Wrap(f.inj.Wrap(h)) }

// Inject adds faults; each wraps the handler (the last added is
// outermost), inside request recording.
func (f *Fake[T]) Inject(faults ...Fault) { f.inj.Inject(faults...) }

// ClearFaults removes every injected fault.
func (f *Fake[T]) ClearFaults() { f.inj.Clear() }

// Requests returns every request received so far, in order.
func (f *Fake[T]) Requests() []T { return Convert(f.rec.Requests(), f.convert) }

// Calls returns the String of every request received, in order.
func (f *Fake[T]) Calls() []string { return Strings(f.Requests()) }

// ResetRequests forgets the recorded requests.
func (f *Fake[T]) ResetRequests() { f.rec.Reset() }
