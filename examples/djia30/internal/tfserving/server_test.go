package tfserving

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/branchml/djia30/internal/model"
)

const nf = 10

// writeTestModel writes version v of a hand-built model to base: with zero
// normalization mean and unit std, P(up) = sigmoid(sum(x) + v - 1), so an
// all-zero instance gives 0.5 for version 1 and sigmoid(1) for version 2.
func writeTestModel(t testing.TB, base string, v int64) {
	t.Helper()
	names := make([]string, nf)
	f := model.File{Format: model.Format, FormatVersion: model.FormatVersion, ModelName: "djia30", ModelVersion: v}
	l1 := model.Layer{Activation: "relu", Inputs: nf, Outputs: 2, Bias: []float64{0, 0}}
	for i := range names {
		names[i] = fmt.Sprintf("f%d", i)
		f.Normalization.Mean = append(f.Normalization.Mean, 0)
		f.Normalization.Std = append(f.Normalization.Std, 1)
		l1.Weights = append(l1.Weights, []float64{1, -1})
	}
	f.Features = names
	l2 := model.Layer{Activation: "sigmoid", Inputs: 2, Outputs: 1, Weights: [][]float64{{1}, {-1}}, Bias: []float64{float64(v - 1)}}
	f.Layers = []model.Layer{l1, l2}
	mj, _ := json.Marshal(f)
	sig, _ := model.Signature(names)
	if _, err := model.WriteVersion(base, v, map[string][]byte{model.ModelFile: mj, model.SignatureFile: sig}); err != nil {
		t.Fatal(err)
	}
}

func do(t testing.TB, srv http.Handler, method, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func compact(s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

var zeros = "[" + strings.TrimSuffix(strings.Repeat("0,", nf), ",") + "]"

func TestStatusMetadataPredict(t *testing.T) {
	base := t.TempDir()
	writeTestModel(t, base, 1)
	os.MkdirAll(filepath.Join(base, ".tmp-5-123"), 0o755) // half-written version: ignored
	s, err := New(Options{Models: []ModelConfig{{Name: "djia30", BasePath: base}}})
	if err != nil {
		t.Fatal(err)
	}
	code, body := do(t, s, "GET", "/v1/models/djia30", "")
	if code != 200 || compact(body) != `{"model_version_status":[{"state":"AVAILABLE","status":{"error_code":"OK","error_message":""},"version":"1"}]}` {
		t.Errorf("status: %d %s", code, body)
	}
	code, body = do(t, s, "GET", "/v1/models/djia30/versions/1", "")
	if code != 200 || !strings.Contains(body, `"version": "1"`) {
		t.Errorf("version status: %d %s", code, body)
	}
	code, body = do(t, s, "GET", "/v1/models/djia30/metadata", "")
	var md struct {
		ModelSpec map[string]string `json:"model_spec"`
		Metadata  struct {
			SignatureDef struct {
				SignatureDef map[string]struct {
					Inputs     map[string]struct{ Dtype string }
					Outputs    map[string]struct{ Dtype string }
					MethodName string `json:"method_name"`
				} `json:"signature_def"`
			} `json:"signature_def"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(body), &md); err != nil || code != 200 {
		t.Fatalf("metadata: %d %s %v", code, body, err)
	}
	sigs := md.Metadata.SignatureDef.SignatureDef
	sd, sl := sigs["serving_default"], sigs["predict_label"]
	if md.ModelSpec["name"] != "djia30" || md.ModelSpec["version"] != "1" || md.ModelSpec["signature_name"] != "" || len(sigs) != 2 ||
		len(sd.Inputs) != 1 || sd.Inputs["features"].Dtype != "DT_FLOAT" || len(sd.Outputs) != 1 || sd.Outputs["probability"].Dtype != "DT_FLOAT" ||
		sd.MethodName != "tensorflow/serving/predict" ||
		len(sl.Inputs) != 1 || sl.Inputs["features"].Dtype != "DT_FLOAT" || len(sl.Outputs) != 2 || sl.Outputs["probability"].Dtype != "DT_FLOAT" ||
		sl.Outputs["label"].Dtype != "DT_INT64" || sl.MethodName != "tensorflow/serving/predict" {
		t.Errorf("metadata %+v", md)
	}
	one := "[" + strings.TrimSuffix(strings.Repeat("0.1,", nf), ",") + "]" // sum 1 → sigmoid(1)
	for body, want := range map[string]string{
		`{"instances":[` + zeros + `,` + one + `]}`:                        `{"predictions":[[0.5],[0.7310586]]}`,
		`{"signature_name":"serving_default","instances":[` + zeros + `]}`: `{"predictions":[[0.5]]}`,
		`{"instances":[{"features":` + one + `}]}`:                         `{"predictions":[[0.7310586]]}`,
		`{"inputs":{"features":[` + zeros + `]}}`:                          `{"outputs":[[0.5]]}`,
		`{"inputs":[` + one + `]}`:                                         `{"outputs":[[0.7310586]]}`,
		// the two-output signature: objects keyed by output name
		`{"signature_name":"predict_label","instances":[` + zeros + `,` + one + `]}`:           `{"predictions":[{"label":0,"probability":[0.5]},{"label":1,"probability":[0.7310586]}]}`,
		`{"signature_name":"predict_label","instances":[{"features":` + one + `}]}`:            `{"predictions":[{"label":1,"probability":[0.7310586]}]}`,
		`{"signature_name":"predict_label","inputs":{"features":[` + zeros + `,` + one + `]}}`: `{"outputs":{"label":[0,1],"probability":[[0.5],[0.7310586]]}}`,
		`{"signature_name":"predict_label","inputs":[` + one + `]}`:                            `{"outputs":{"label":[1],"probability":[[0.7310586]]}}`,
	} {
		for _, path := range []string{"/v1/models/djia30:predict", "/v1/models/djia30/versions/1:predict"} {
			code, got := do(t, s, "POST", path, body)
			if code != 200 || strings.TrimSpace(got) != want {
				t.Errorf("POST %s %s: %d %s, want %s", path, body, code, got, want)
			}
		}
	}
}

// A model whose signature.json lacks predict_label (it declares only
// serving_default) does not answer that signature.
func TestSignatureNotInModel(t *testing.T) {
	base := t.TempDir()
	writeTestModel(t, base, 1)
	sig := `{"signature_def":{"serving_default":{"inputs":{},"outputs":{},"method_name":"tensorflow/serving/predict"}}}`
	if err := os.WriteFile(filepath.Join(base, "1", model.SignatureFile), []byte(sig), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Models: []ModelConfig{{Name: "djia30", BasePath: base}}})
	if err != nil {
		t.Fatal(err)
	}
	code, got := do(t, s, "POST", "/v1/models/djia30:predict", `{"signature_name":"predict_label","instances":[`+zeros+`]}`)
	if code != 400 || !strings.Contains(got, `Serving signature name: \"predict_label\" not found in signature def`) {
		t.Errorf("predict_label: %d %s", code, got)
	}
	if code, got := do(t, s, "POST", "/v1/models/djia30:predict", `{"instances":[`+zeros+`]}`); code != 200 || strings.TrimSpace(got) != `{"predictions":[[0.5]]}` {
		t.Errorf("serving_default: %d %s", code, got)
	}
}

func TestErrors(t *testing.T) {
	base := t.TempDir()
	writeTestModel(t, base, 1)
	s, err := New(Options{Models: []ModelConfig{{Name: "djia30", BasePath: base, Labels: map[string]int64{"old": 7}}}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"POST", "/v1/models/djia30:predict", `{"instances":[[1,2,3]]}`, 400, "expecting shape [-1, 10] but got an instance of 3 values"},
		{"POST", "/v1/models/djia30:predict", `{"instances":[["a",0,0,0,0,0,0,0,0,0]]}`, 400, `JSON Value: \"a\" Type: String is not of expected type: float`},
		{"POST", "/v1/models/djia30:predict", `{"instances":`, 400, "JSON Parse error"},
		{"POST", "/v1/models/djia30:predict", `{"signature_name":"nope","instances":[` + zeros + `]}`, 400, `Serving signature name: \"nope\" not found in signature def`},
		{"POST", "/v1/models/nope:predict", `{"instances":[` + zeros + `]}`, 404, "Servable not found for request: Latest(nope)"},
		{"POST", "/v1/models/djia30/versions/9:predict", `{"instances":[` + zeros + `]}`, 404, "Servable not found for request: Specific(djia30, 9)"},
		{"POST", "/v1/models/djia30/labels/canary:predict", `{"instances":[` + zeros + `]}`, 404, "Unrecognized servable version label: canary"},
		{"GET", "/v1/models/djia30/labels/old", "", 404, "Servable not found for request: Label(djia30, old)"},
		{"GET", "/v1/models/nope", "", 404, "Could not find any versions of model nope"},
		{"GET", "/v1/models/djia30/versions/x", "", 404, "Malformed request"},
		{"GET", "/v2/whatever", "", 404, "Malformed request"},
		{"POST", "/v1/models/djia30:classify", `{}`, 400, "classify is not supported"},
	}
	for _, c := range cases {
		code, body := do(t, s, c.method, c.path, c.body)
		var e map[string]string
		if code != c.code || json.Unmarshal([]byte(body), &e) != nil || len(e) != 1 || !strings.Contains(body, c.msg) {
			t.Errorf("%s %s %s: %d %s; want %d with error %q", c.method, c.path, c.body, code, body, c.code, c.msg)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestVersionHotLoadAndUnload(t *testing.T) {
	base := t.TempDir()
	writeTestModel(t, base, 1)
	var mu sync.Mutex
	var logs []string
	s, err := New(Options{Models: []ModelConfig{{Name: "djia30", BasePath: base, NumVersions: 1}}, FSPollWait: 20 * time.Millisecond,
		Logf: func(f string, a ...any) { mu.Lock(); logs = append(logs, fmt.Sprintf(f, a...)); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	predict := func() string {
		_, b := do(t, s, "POST", "/v1/models/djia30:predict", `{"instances":[`+zeros+`]}`)
		return strings.TrimSpace(b)
	}
	if got := predict(); got != `{"predictions":[[0.5]]}` {
		t.Fatalf("v1 predict %s", got)
	}
	writeTestModel(t, base, 2) // appears while the server runs
	waitFor(t, "version 2", func() bool {
		_, b := do(t, s, "GET", "/v1/models/djia30", "")
		return strings.Contains(b, `"version": "2"`) && !strings.Contains(b, `"version": "1"`)
	})
	if got := predict(); got != `{"predictions":[[0.7310586]]}` {
		t.Errorf("v2 predict %s", got)
	}
	os.RemoveAll(filepath.Join(base, "2")) // removed: back to version 1
	waitFor(t, "version 1 again", func() bool {
		_, b := do(t, s, "GET", "/v1/models/djia30", "")
		return strings.Contains(b, `"version": "1"`) && !strings.Contains(b, `"version": "2"`)
	})
	waitFor(t, "unload log", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(strings.Join(logs, "\n"), "unloaded model djia30 version 2")
	})
}

// TF Serving checks a config's labels before its versions load
// (ServerCore::UpdateModelVersionLabelMap): at start-up nothing is loaded,
// so a label is refused without --allow_version_labels_for_unavailable_models;
// with it a new label may name an unloaded version, but an existing label
// never moves to one.
func TestLabelsOnUnavailableVersions(t *testing.T) {
	base := t.TempDir()
	writeTestModel(t, base, 1)
	cfg := filepath.Join(t.TempDir(), "models.config")
	write := func(labels string) {
		text := fmt.Sprintf("model_config_list { config { name: \"djia30\" base_path: %q model_platform: \"tensorflow\"\n"+
			"model_version_policy { specific { versions: 1 versions: 3 } }\n%s } }\n", base, labels)
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`version_labels { key: "stable" value: 1 }`)
	_, err := New(Options{ConfigFile: cfg})
	if err == nil || !strings.HasSuffix(err.Error(), "Request to assign label to version 1 of model djia30, which is not currently available for inference") {
		t.Fatalf("start-up with a label and no flag: %v", err)
	}
	s, err := New(Options{ConfigFile: cfg, ConfigPollWait: 10 * time.Millisecond, AllowLabelsForUnavailable: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	if code, body := do(t, s, "GET", "/v1/models/djia30/labels/stable/metadata", ""); code != 200 || !strings.Contains(body, `"version": "1"`) {
		t.Fatalf("stable after start: %d %s", code, body)
	}
	// Moving stable to version 3 (not on disk, not loaded) is refused even
	// with the flag: the previous config stays.
	write(`version_labels { key: "stable" value: 3 }`)
	time.Sleep(80 * time.Millisecond)
	if _, body := do(t, s, "GET", "/v1/models/djia30/labels/stable", ""); !strings.Contains(body, `"version": "1"`) {
		t.Fatalf("stable moved to an unloaded version: %s", body)
	}
	// A new label on an unloaded version is accepted with the flag; it
	// answers 404 until the version loads.
	write(`version_labels { key: "stable" value: 1 }
version_labels { key: "canary" value: 3 }`)
	waitFor(t, "canary label known", func() bool {
		_, b := do(t, s, "GET", "/v1/models/djia30/labels/canary/metadata", "")
		return strings.Contains(b, "Servable not found for request: Label(djia30, canary)")
	})
	writeTestModel(t, base, 3)
	s.Sync()
	if code, body := do(t, s, "GET", "/v1/models/djia30/labels/canary/metadata", ""); code != 200 || !strings.Contains(body, `"version": "3"`) {
		t.Fatalf("canary once version 3 loaded: %d %s", code, body)
	}
}

func TestLabelsAndConfigReload(t *testing.T) {
	base := t.TempDir()
	writeTestModel(t, base, 1)
	writeTestModel(t, base, 2)
	cfg := filepath.Join(t.TempDir(), "models.config")
	write := func(stable int) {
		text := fmt.Sprintf(`model_config_list {
  config {
    name: "djia30"
    base_path: %q
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: %d }
    version_labels { key: "canary" value: 2 }
  }
}
`, base, stable)
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	s, err := New(Options{ConfigFile: cfg, ConfigPollWait: 20 * time.Millisecond, AllowLabelsForUnavailable: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	_, body := do(t, s, "GET", "/v1/models/djia30", "")
	if !strings.Contains(body, `"version": "2"`) || !strings.Contains(body, `"version": "1"`) {
		t.Errorf("both versions should be served: %s", body)
	}
	for label, want := range map[string]string{"stable": "[[0.5]]", "canary": "[[0.7310586]]"} {
		_, got := do(t, s, "POST", "/v1/models/djia30/labels/"+label+":predict", `{"instances":[`+zeros+`]}`)
		if !strings.Contains(got, want) {
			t.Errorf("label %s: %s, want %s", label, got, want)
		}
	}
	_, got := do(t, s, "GET", "/v1/models/djia30/labels/stable/metadata", "")
	if !strings.Contains(got, `"version": "1"`) {
		t.Errorf("label metadata %s", got)
	}
	write(2) // promote: stable now points at version 2
	waitFor(t, "label stable → 2", func() bool {
		_, b := do(t, s, "GET", "/v1/models/djia30/labels/stable", "")
		return strings.Contains(b, `"version": "2"`)
	})
	os.WriteFile(cfg, []byte("model_config_list { config { name: "), 0o644) // broken: previous config stays
	time.Sleep(60 * time.Millisecond)
	if code, _ := do(t, s, "GET", "/v1/models/djia30/labels/stable", ""); code != 200 {
		t.Errorf("broken config reload dropped the model: %d", code)
	}
	if _, err := New(Options{ConfigFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("missing config file accepted")
	}
}

func TestPrometheusMetrics(t *testing.T) {
	base := t.TempDir()
	writeTestModel(t, base, 1)
	s, err := New(Options{Models: []ModelConfig{{Name: "djia30", BasePath: base}}, MetricsPath: "/monitoring/prometheus/metrics"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		do(t, s, "POST", "/v1/models/djia30:predict", `{"instances":[`+zeros+`]}`)
	}
	do(t, s, "POST", "/v1/models/djia30:predict", `{"instances":[[1]]}`)
	do(t, s, "POST", "/v1/models/nope:predict", `{"instances":[[1]]}`)
	code, text := do(t, s, "GET", "/monitoring/prometheus/metrics", "")
	if code != 200 {
		t.Fatal(code)
	}
	for _, want := range []string{
		"# TYPE :tensorflow:serving:request_count counter",
		`:tensorflow:serving:request_count{model_name="djia30",model_version="1",status="OK"} 3`,
		`:tensorflow:serving:request_count{model_name="djia30",model_version="1",status="INVALID_ARGUMENT"} 1`,
		`:tensorflow:serving:request_count{model_name="nope",model_version="",status="NOT_FOUND"} 1`,
		"# TYPE :tensorflow:serving:request_latency histogram",
		`:tensorflow:serving:request_latency_bucket{model_name="djia30",API="predict",entrypoint="REST",model_version="1",le="+Inf"} 4`,
		`:tensorflow:serving:request_latency_count{model_name="djia30",API="predict",entrypoint="REST",model_version="1"} 4`,
		`:tensorflow:serving:request_latency_bucket{model_name="djia30",API="predict",entrypoint="REST",model_version="1",le="10"} `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	// cumulative buckets never decrease
	var prev int
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, `:tensorflow:serving:request_latency_bucket{model_name="djia30"`) {
			var n int
			fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &n)
			if n < prev {
				t.Errorf("bucket decreases: %s", l)
			}
			prev = n
		}
	}
}

// loadClient is an HTTP client for the load benchmarks (keep-alive pool).
func loadClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
}

func startLoopback(b *testing.B) (*httptest.Server, []byte) {
	base := b.TempDir()
	writeTestModel(b, base, 1)
	s, err := New(Options{Models: []ModelConfig{{Name: "djia30", BasePath: base}}})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(s)
	b.Cleanup(ts.Close)
	body := []byte(`{"instances":[[0.0012,-0.01,0.02,0.031,0.012,55.1,0.004,0.02,0.3,0.015]]}`)
	return ts, body
}

func post(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// BenchmarkPredictThroughput drives the server over loopback HTTP with
// 16 concurrent clients, one instance per request, and reports predictions/s.
func BenchmarkPredictThroughput(b *testing.B) {
	ts, body := startLoopback(b)
	c := loadClient()
	url := ts.URL + "/v1/models/djia30:predict"
	b.SetParallelism(8) // 8×GOMAXPROCS clients
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := post(c, url, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "predictions/s")
}

// BenchmarkPredictLatencyAt1000RPS sends requests at a fixed 1,000 requests/s
// (open loop: each request starts on schedule in its own goroutine) for
// b.N×2000 requests and reports p50 and p99 latency in milliseconds.
func BenchmarkPredictLatencyAt1000RPS(b *testing.B) {
	ts, body := startLoopback(b)
	c := loadClient()
	url := ts.URL + "/v1/models/djia30:predict"
	for i := 0; i < 200; i++ { // warm the connection pool
		post(c, url, body)
	}
	n := 2000 * b.N
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * time.Millisecond)
		time.Sleep(time.Until(due))
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			if err := post(c, url, body); err != nil {
				b.Error(err)
			}
			lat[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(n)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99_ms")
}

// A version that cannot load is reported as TF Serving's GetModelStatus
// reports it: state END with the load error, for the model and for the
// version (the deploy stage stops waiting at once on it).
func TestFailedLoadReportedAsEnd(t *testing.T) {
	base := t.TempDir()
	writeTestModel(t, base, 1)
	if err := os.MkdirAll(filepath.Join(base, "3"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "3", "model.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Models: []ModelConfig{{Name: "djia30", BasePath: base, Policy: PolicySpecific, Versions: []int64{1, 3}}}, Logf: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	s.Sync()
	code, body := do(t, s, "GET", "/v1/models/djia30/versions/3", "")
	if code != 200 || !strings.Contains(body, `"state": "END"`) || !strings.Contains(body, `"error_code": "INVALID_ARGUMENT"`) {
		t.Fatalf("status of v3 = %d %s", code, body)
	}
	code, body = do(t, s, "GET", "/v1/models/djia30", "")
	if code != 200 || !strings.Contains(body, `"version": "3"`) || !strings.Contains(body, `"version": "1"`) || strings.Count(body, `"END"`) != 1 {
		t.Fatalf("status of the model = %d %s", code, body)
	}
	if code, _ := do(t, s, "GET", "/v1/models/djia30/versions/2", ""); code != 404 {
		t.Fatalf("unknown v2: %d", code)
	}
}
