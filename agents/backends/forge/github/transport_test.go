package github

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tr := &retryTransport{backoff: 10 * time.Millisecond, maxWait: time.Minute}
	get := &http.Request{Method: "GET", URL: &url.URL{Path: "/repos/a/b/contents/x"}}
	comment := &http.Request{Method: "POST", URL: &url.URL{Path: "/repos/a/b/issues/1/comments"}}
	reset := strconv.FormatInt(time.Now().Add(30*time.Second).Unix(), 10)
	for _, c := range []struct {
		name   string
		req    *http.Request
		code   int
		header map[string]string
		retry  bool
		min    time.Duration
		max    time.Duration
	}{
		{"primary", get, 403, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}, true, 28 * time.Second, 31 * time.Second},
		{"secondary", get, 403, map[string]string{"Retry-After": "7"}, true, 7 * time.Second, 7 * time.Second},
		{"429", comment, 429, map[string]string{"Retry-After": "2"}, true, 2 * time.Second, 2 * time.Second},
		{"forbidden", get, 403, nil, false, 0, 0},
		{"unauthorized", get, 401, nil, false, 0, 0},
		{"502 get", get, 502, nil, true, 5 * time.Millisecond, 10 * time.Millisecond},
		{"502 comment", comment, 502, nil, false, 0, time.Second},
		{"422", get, 422, nil, false, 0, 0},
	} {
		resp := &http.Response{StatusCode: c.code, Header: http.Header{}}
		for k, v := range c.header {
			resp.Header.Set(k, v)
		}
		wait, retry := tr.classify(c.req, resp, 1)
		if retry != c.retry || (retry && (wait < c.min || wait > c.max)) {
			t.Errorf("%s: wait %v retry %v", c.name, wait, retry)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(403, "0", "1700000000", "")
	f.Add(429, "", "", "12")
	f.Add(503, "x", "-1", "abc")
	tr := &retryTransport{backoff: time.Millisecond, maxWait: time.Second}
	req := &http.Request{Method: "GET", URL: &url.URL{Path: "/x"}}
	f.Fuzz(func(t *testing.T, code int, remaining, reset, retryAfter string) {
		h := http.Header{}
		h.Set("X-RateLimit-Remaining", remaining)
		h.Set("X-RateLimit-Reset", reset)
		h.Set("Retry-After", retryAfter)
		wait, retry := tr.classify(req, &http.Response{StatusCode: code, Header: h}, 3)
		if retry && wait < 0 && retryAfter == "" {
			t.Fatalf("negative wait %v", wait)
		}
	})
}
