package fakehttp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/internal/fake/fakehttp"
)

// echo answers 200 with the body it read.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Write(b)
})

func start(t *testing.T, rec *fakehttp.Recorder, inj *fakehttp.Injector) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(rec.Wrap(inj.Wrap(echo)))
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRecorderKeepsRequestsAndStatus(t *testing.T) {
	var rec fakehttp.Recorder
	var inj fakehttp.Injector
	srv := start(t, &rec, &inj)
	inj.Inject(fakehttp.On("POST", "^/b$", 1, fakehttp.Text(503, "busy")))
	if code, body := do(t, "GET", srv.URL+"/a%2Fx?q=1", ""); code != 200 || body != "" {
		t.Fatalf("GET: %d %q", code, body)
	}
	if code, body := do(t, "POST", srv.URL+"/b", "payload"); code != 503 || body != "busy" {
		t.Fatalf("first POST: %d %q", code, body)
	}
	if code, body := do(t, "POST", srv.URL+"/b", "again"); code != 200 || body != "again" {
		t.Fatalf("second POST (the handler reads the body the recorder read): %d %q", code, body)
	}
	reqs := rec.Requests()
	if len(reqs) != 3 {
		t.Fatalf("requests %v", reqs)
	}
	r := reqs[0]
	if r.Method != "GET" || r.Path != "/a/x" || r.EscapedPath != "/a%2Fx" || r.RawQuery != "q=1" || r.Status != 200 ||
		r.Header.Get("Authorization") != "Bearer t" || r.String() != "GET /a/x?q=1" {
		t.Errorf("GET recorded as %+v", r)
	}
	if got := []int{reqs[1].Status, reqs[2].Status}; !reflect.DeepEqual(got, []int{503, 200}) || string(reqs[1].Body) != "payload" {
		t.Errorf("POSTs recorded as %+v", reqs[1:])
	}
	calls := fakehttp.Strings(reqs)
	if want := []string{"GET /a/x?q=1", "POST /b", "POST /b"}; !reflect.DeepEqual(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	methods := fakehttp.Convert(reqs, func(r fakehttp.Request) string { return r.Method })
	if !reflect.DeepEqual(methods, []string{"GET", "POST", "POST"}) {
		t.Errorf("converted %v", methods)
	}
	rec.Reset()
	if len(rec.Requests()) != 0 || fakehttp.Convert(rec.Requests(), func(r fakehttp.Request) string { return "" }) != nil {
		t.Error("Reset kept requests")
	}
}

func TestInjectorOrderAndClear(t *testing.T) {
	var rec fakehttp.Recorder
	var inj fakehttp.Injector
	srv := start(t, &rec, &inj)
	inj.Inject(fakehttp.Text(500, "inner"), fakehttp.On("", "/x", 0, fakehttp.Text(502, "outer")))
	if code, body := do(t, "GET", srv.URL+"/x", ""); code != 502 || body != "outer" {
		t.Fatalf("the last injected is outermost: %d %q", code, body)
	}
	if code, body := do(t, "GET", srv.URL+"/y", ""); code != 500 || body != "inner" {
		t.Fatalf("unmatched goes on to the inner fault: %d %q", code, body)
	}
	inj.Clear()
	if code, _ := do(t, "GET", srv.URL+"/x", ""); code != 200 {
		t.Fatalf("after Clear: %d", code)
	}
}

func TestWhenCountsOnlyMatches(t *testing.T) {
	var rec fakehttp.Recorder
	var inj fakehttp.Injector
	srv := start(t, &rec, &inj)
	inj.Inject(fakehttp.When(func(r *http.Request) bool { return r.Method == "PUT" }, 2,
		fakehttp.Malformed("application/json", `{"a":`)))
	var got []string
	for _, m := range []string{"GET", "PUT", "GET", "PUT", "PUT"} {
		_, body := do(t, m, srv.URL+"/", m)
		got = append(got, body)
	}
	if want := []string{"GET", `{"a":`, "GET", `{"a":`, "PUT"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("answers %q, want %q", got, want)
	}
}

func TestDelayHonoursTheClient(t *testing.T) {
	var rec fakehttp.Recorder
	var inj fakehttp.Injector
	srv := start(t, &rec, &inj)
	inj.Inject(fakehttp.Delay(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/", nil)
	start := time.Now()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("no error")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("delay outlived the client")
	}
	inj.Clear()
	inj.Inject(fakehttp.Delay(10 * time.Millisecond))
	if code, body := do(t, "POST", srv.URL+"/", "late"); code != 200 || body != "late" {
		t.Fatalf("delayed: %d %q", code, body)
	}
}
