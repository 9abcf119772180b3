package tfserving_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
	fake "github.com/branchml/branchml/agents/internal/fake/tfserving"
)

func newClient(t *testing.T, h http.Handler) *tfs.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := tfs.New(srv.URL, tfs.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStatusAvailableMetadataPredict(t *testing.T) {
	f := fake.New("djia30")
	f.SetState(1, tfs.StateAvailable)
	f.SetState(2, tfs.StateLoading)
	c := newClient(t, f)
	ctx := context.Background()

	st, err := c.Status(ctx, "djia30", tfs.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Version != 2 || st[0].State != "LOADING" || st[1].Version != 1 || !st[1].Available() {
		t.Fatalf("status = %+v", st)
	}
	if ok, err := c.Available(ctx, "djia30", 2); ok || err != nil {
		t.Fatalf("v2 available = %v, %v; want false, nil", ok, err)
	}
	if ok, err := c.Available(ctx, "djia30", 7); ok || err != nil {
		t.Fatalf("v7 (absent) available = %v, %v; want false, nil", ok, err)
	}
	f.SetState(2, tfs.StateAvailable)
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := c.WaitAvailable(wctx, "djia30", 2, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := f.SetLabel("canary", 2); err != nil {
		t.Fatal(err)
	}
	md, err := c.Metadata(ctx, "djia30", tfs.Selector{Label: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `"version":"2"`; !contains(string(md), want) {
		t.Fatalf("metadata %s lacks %s", md, want)
	}
	p, err := c.Predict(ctx, "djia30", tfs.Selector{Version: 1}, []byte(`{"instances":[[1,2],[3,4]]}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Predictions) != "[[1],[1]]" {
		t.Fatalf("predictions = %s, want [[1],[1]]", p.Predictions)
	}
	calls := f.Calls()
	last := calls[len(calls)-1]
	if last.Method != "POST" || last.Path != "/v1/models/djia30/versions/1:predict" || last.Body != `{"instances":[[1,2],[3,4]]}` {
		t.Fatalf("last call = %+v", last)
	}
	m, err := c.Metrics(ctx, "djia30")
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests != 1 || m.Codes[200] != 1 || m.Latency.Count != 1 {
		t.Fatalf("metrics = %+v", m)
	}
}

func TestLabelRefusedBeforeAvailable(t *testing.T) {
	f := fake.New("m")
	f.SetState(3, tfs.StateLoading)
	if err := f.SetLabel("canary", 3); err == nil {
		t.Fatal("label on a LOADING version was accepted")
	}
}

func TestErrors(t *testing.T) {
	f := fake.New("m")
	f.SetState(1, tfs.StateAvailable)
	ctx := context.Background()
	cases := []struct {
		name      string
		h         http.Handler
		status    int
		temporary bool
		msg       string
	}{
		{"404 unknown model", f, 404, false, "Servable not found for request: Latest(nope)"},
		{"503", fake.Fail(f, nil, 503, -1), 503, true, "injected 503"},
		{"429", fake.Fail(f, nil, 429, -1), 429, true, "injected 429"},
		{"400", fake.Fail(f, nil, 400, -1), 400, false, "injected 400"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, tc.h)
			model := "m"
			if tc.status == 404 {
				model = "nope"
			}
			_, err := c.Predict(ctx, model, tfs.Selector{}, []byte(`{"instances":[1]}`))
			var e *tfs.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *tfserving.Error", err)
			}
			if e.StatusCode != tc.status || e.Temporary() != tc.temporary || e.Message != tc.msg || e.Method != "POST" {
				t.Fatalf("err = %+v (temporary %v)", e, e.Temporary())
			}
		})
	}
	t.Run("malformed status", func(t *testing.T) {
		c := newClient(t, fake.Malformed(f, nil))
		_, err := c.Status(ctx, "m", tfs.Selector{})
		var e *tfs.Error
		if !errors.As(err, &e) || e.StatusCode != 200 || e.Temporary() {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		srv := httptest.NewServer(fake.Delay(f, nil, time.Second))
		defer srv.Close()
		c, _ := tfs.New(srv.URL, tfs.WithTimeout(50*time.Millisecond))
		_, err := c.Status(ctx, "m", tfs.Selector{})
		var e *tfs.Error
		if !errors.As(err, &e) || e.StatusCode != 0 || !e.Temporary() {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad base URL", func(t *testing.T) {
		if _, err := tfs.New("localhost:8501"); err == nil {
			t.Fatal("want an error for a URL without scheme")
		}
	})
}

func contains(s, sub string) bool { return len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0) }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// A version TF Serving gave up loading (state END, an error code) ends the
// wait at once with a *LoadError, however long the deadline.
func TestWaitAvailableStopsAtAFailedLoad(t *testing.T) {
	f := fake.New("djia30")
	f.SetError(3, "INVALID_ARGUMENT", "Could not parse saved_model.pb")
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, _ := tfs.New(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	err := c.WaitAvailable(ctx, "djia30", 3, 10*time.Millisecond)
	var le *tfs.LoadError
	if !errors.As(err, &le) || le.Code != "INVALID_ARGUMENT" || err.Error() != "model djia30 version 3 failed to load: INVALID_ARGUMENT: Could not parse saved_model.pb" {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}
