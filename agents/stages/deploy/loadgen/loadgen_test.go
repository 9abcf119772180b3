package loadgen_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
)

// A load whose context has ended before it starts sends nothing (the
// deploy tests start one before a first deploy and cancel it at once).
func TestEndedContextSendsNothing(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 200 {
		rep, err := loadgen.Run(ctx, loadgen.Options{URL: srv.URL, Body: []byte(`{}`), Concurrency: 2})
		if err != nil || rep.Sent != 0 {
			t.Fatalf("sent %d (%v) with an ended context", rep.Sent, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server got %d requests", n)
	}
}
