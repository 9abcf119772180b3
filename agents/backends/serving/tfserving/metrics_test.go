package tfserving_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
)

const sample = `# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="djia30",status="OK"} 95
:tensorflow:serving:request_count{model_name="djia30",status="INTERNAL"} 5
:tensorflow:serving:request_count{model_name="other",status="OK"} 1000
# TYPE :tensorflow:serving:request_latency histogram
:tensorflow:serving:request_latency_bucket{model_name="djia30",API="predict",entrypoint="REST",le="1000"} 50
:tensorflow:serving:request_latency_bucket{model_name="djia30",API="predict",entrypoint="REST",le="2000"} 90
:tensorflow:serving:request_latency_bucket{model_name="djia30",API="predict",entrypoint="REST",le="4000"} 100
:tensorflow:serving:request_latency_bucket{model_name="djia30",API="predict",entrypoint="REST",le="+Inf"} 100
:tensorflow:serving:request_latency_sum{model_name="djia30",API="predict",entrypoint="REST"} 150000
:tensorflow:serving:request_latency_count{model_name="djia30",API="predict",entrypoint="REST"} 100
:tensorflow:serving:runtime_latency_bucket{model_name="djia30",API="Predict",runtime="TF1",le="10"} 0
`

func TestParseMetrics(t *testing.T) {
	c, err := tfs.ParseMetrics(strings.NewReader(sample), "djia30")
	if err != nil {
		t.Fatal(err)
	}
	if c.Requests != 100 || c.Codes[200] != 95 || c.Codes[500] != 5 || len(c.Codes) != 2 {
		t.Fatalf("counters = %+v", c)
	}
	if got := c.Latency.Bounds; len(got) != 3 || got[0] != 1000 || got[2] != 4000 {
		t.Fatalf("bounds = %v", got)
	}
	if c.Latency.Count != 100 || c.Latency.Sum != 150000 {
		t.Fatalf("latency = %+v", c.Latency)
	}
	// p50: rank 50 lies at the top of the first bucket -> 1000µs.
	if q := c.Latency.Quantile(0.5); q != time.Millisecond {
		t.Fatalf("p50 = %v, want 1ms", q)
	}
	// p99: rank 99 in (2000,4000] with 90..100 -> 2000 + 2000*9/10 = 3800µs.
	if q := c.Latency.Quantile(0.99); q != 3800*time.Microsecond {
		t.Fatalf("p99 = %v, want 3.8ms", q)
	}
}

func TestParseMetricsErrors(t *testing.T) {
	for _, in := range []string{
		`:tensorflow:serving:request_count{model_name="m",status="OK"}`,
		`:tensorflow:serving:request_count{model_name="m",status="OK} 1`,
		`:tensorflow:serving:request_count{model_name="m" 1`,
		`:tensorflow:serving:request_count{model_name="m"} -1`,
		`:tensorflow:serving:request_latency_bucket{model_name="m",le="x"} 1`,
	} {
		if _, err := tfs.ParseMetrics(strings.NewReader(in), "m"); err == nil {
			t.Errorf("ParseMetrics(%q) gave no error", in)
		}
	}
}

func TestWriteParseRoundTripAndSub(t *testing.T) {
	c := tfs.Counters{Latency: tfs.NewHistogram(tfs.LatencyBounds)}
	for i := 0; i < 10; i++ {
		code := 200
		if i < 2 {
			code = 500
		} else if i == 2 {
			code = 404
		}
		c.Count(code)
		c.Latency.Observe(time.Duration(i+1) * time.Millisecond)
	}
	var buf bytes.Buffer
	if err := tfs.WriteMetrics(&buf, "m", c); err != nil {
		t.Fatal(err)
	}
	got, err := tfs.ParseMetrics(&buf, "m")
	if err != nil {
		t.Fatal(err)
	}
	if got.Requests != 10 || got.Codes[500] != 2 || got.Codes[404] != 1 || got.Codes[200] != 7 || got.Latency.Count != 10 || len(got.Latency.Bounds) != 33 {
		t.Fatalf("round trip = %+v", got)
	}
	d := got.Sub(tfs.Counters{Requests: 4, Codes: map[int]uint64{500: 1, 200: 3}, Latency: tfs.NewHistogram(tfs.LatencyBounds)})
	if d.Requests != 6 || d.Codes[500] != 1 || d.Codes[200] != 4 || d.Codes[404] != 1 || d.Latency.Count != 10 {
		t.Fatalf("sub = %+v", d)
	}
	// A restart (counters went down) yields the new sample whole.
	if r := (tfs.Counters{Requests: 3}).Sub(tfs.Counters{Requests: 10}); r.Requests != 3 {
		t.Fatalf("restart sub = %+v", r)
	}
	if r := (tfs.Counters{Requests: 3, Codes: map[int]uint64{200: 3}}).Sub(tfs.Counters{Requests: 2, Codes: map[int]uint64{500: 2}}); r.Requests != 3 || r.Codes[200] != 3 {
		t.Fatalf("restart sub = %+v", r)
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add(sample)
	f.Add(`:tensorflow:serving:request_count{model_name="m",status="OK\"x"} 1 1700000000`)
	f.Fuzz(func(t *testing.T, in string) {
		c, err := tfs.ParseMetrics(strings.NewReader(in), "djia30")
		if err != nil {
			return
		}
		_ = c.Latency.Quantile(0.99)
	})
}

func BenchmarkParseMetrics(b *testing.B) {
	var buf bytes.Buffer
	c := tfs.Counters{Requests: 1e6, Codes: map[int]uint64{200: 1e6 - 10, 500: 10}, Latency: tfs.NewHistogram(tfs.LatencyBounds)}
	_ = tfs.WriteMetrics(&buf, "djia30", c)
	text := buf.String()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := tfs.ParseMetrics(strings.NewReader(text), "djia30"); err != nil {
			b.Fatal(err)
		}
	}
}

// Every canonical status code name maps to the HTTP status TF Serving's
// REST API answers with (http_server.cc, ToHTTPStatusCode), and StatusName
// inverts it.
func TestHTTPStatusFollowsTFServing(t *testing.T) {
	want := map[string]int{"OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
		"NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
		"ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401}
	for name, code := range want {
		if got := tfs.HTTPStatus(name); got != code {
			t.Errorf("HTTPStatus(%s) = %d, want %d", name, got, code)
		}
		if got := tfs.HTTPStatus(tfs.StatusName(code)); got != code {
			t.Errorf("HTTPStatus(StatusName(%d)) = %d", code, got)
		}
	}
}
