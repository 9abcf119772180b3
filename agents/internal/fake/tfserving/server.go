package tfserving

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/internal/fake/fakehttp"
)

// Behavior is how one model version answers predict requests.
type Behavior struct {
	// Delay is added to every predict.
	Delay time.Duration `json:"delay,omitempty"`
	// FailEvery makes every n-th predict answer 500 (1: all of them).
	FailEvery int `json:"failEvery,omitempty"`
	// Output is the value every instance predicts; 0 means the version number.
	Output float64 `json:"output,omitempty"`
	// Status, when set, is the HTTP status every predict answers with (with
	// TF Serving's {"error": …} body), e.g. 400 for a version that rejects
	// its inputs.
	Status int `json:"status,omitempty"`
	// LoadError, when set, makes the version fail to load: its status is
	// END with error_code INVALID_ARGUMENT and this message, as TF Serving
	// reports a SavedModel it cannot read.
	LoadError string `json:"loadError,omitempty"`
}

// UnmarshalJSON accepts "delay" as a Go duration string.
func (b *Behavior) UnmarshalJSON(raw []byte) error {
	var v struct {
		Delay     string  `json:"delay"`
		FailEvery int     `json:"failEvery"`
		Output    float64 `json:"output"`
		Status    int     `json:"status"`
		LoadError string  `json:"loadError"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	b.FailEvery, b.Output, b.Status, b.LoadError = v.FailEvery, v.Output, v.Status, v.LoadError
	if v.Delay != "" {
		d, err := time.ParseDuration(v.Delay)
		if err != nil {
			return fmt.Errorf("delay: %w", err)
		}
		b.Delay = d
	}
	return nil
}

type version struct {
	state    string
	errCode  string
	errMsg   string
	behavior Behavior
	calls    int
}

// Call is one request the fake received.
type Call struct {
	Method, Path string
	Body         string
}

// Server is a fake TF Serving for one model. The zero value is not usable;
// call New.
type Server struct {
	model string

	mu       sync.Mutex
	versions map[int64]*version
	labels   map[string]int64
	rec      fakehttp.Recorder
	handler  http.Handler
	counters tfs.Counters
	inflight atomic.Int64
}

// New returns a fake serving model with no versions.
func New(model string) *Server {
	s := &Server{model: model, versions: map[int64]*version{}, labels: map[string]int64{},
		counters: tfs.Counters{Latency: tfs.NewHistogram(tfs.LatencyBounds)}}
	s.handler = s.rec.Wrap(http.HandlerFunc(s.serve))
	return s
}

// Model is the served model's name.
func (s *Server) Model() string { return s.model }

// SetState sets version v's state (tfserving.State*), error_code "OK".
func (s *Server) SetState(v int64, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ver := s.versions[v]
	if ver == nil {
		ver = &version{}
		s.versions[v] = ver
	}
	ver.state, ver.errCode, ver.errMsg = state, "OK", ""
}

// SetError marks version v as failed to load (state END, error_code code).
func (s *Server) SetError(v int64, code, msg string) {
	s.SetState(v, tfs.StateEnd)
	s.mu.Lock()
	s.versions[v].errCode, s.versions[v].errMsg = code, msg
	s.mu.Unlock()
}

// Remove unloads version v (it disappears from the status).
func (s *Server) Remove(v int64) {
	s.mu.Lock()
	delete(s.versions, v)
	s.mu.Unlock()
}

// SetBehavior sets how version v answers predicts.
func (s *Server) SetBehavior(v int64, b Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ver := s.versions[v]; ver != nil {
		ver.behavior = b
	}
}

// SetLabel points label at version v. Like TF Serving it refuses a label on
// a version that is not AVAILABLE.
func (s *Server) SetLabel(label string, v int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ver := s.versions[v]
	if ver == nil || ver.state != tfs.StateAvailable {
		return fmt.Errorf("request to assign label to version %d of model %s, which is not currently available for inference", v, s.model)
	}
	s.labels[label] = v
	return nil
}

// Configure applies a model config entry: the listed versions become
// AVAILABLE, others are removed; labels are set (an error, like TF Serving,
// when a label names a version that is not AVAILABLE).
func (s *Server) Configure(mc tfs.ModelConfig, behaviors map[int64]Behavior) error {
	s.mu.Lock()
	keep := map[int64]bool{}
	for _, v := range mc.Versions {
		keep[v] = true
		if s.versions[v] == nil {
			b := behaviors[v]
			s.versions[v] = &version{state: tfs.StateAvailable, errCode: "OK", behavior: b}
			if b.LoadError != "" {
				s.versions[v].state, s.versions[v].errCode, s.versions[v].errMsg = tfs.StateEnd, "INVALID_ARGUMENT", b.LoadError
			}
		}
	}
	for v := range s.versions {
		if !keep[v] {
			delete(s.versions, v)
		}
	}
	s.labels = map[string]int64{}
	s.mu.Unlock()
	for l, v := range mc.Labels {
		if err := s.SetLabel(l, v); err != nil {
			return err
		}
	}
	return nil
}

// Calls returns the requests received so far, in order.
func (s *Server) Calls() []Call {
	return fakehttp.Convert(s.rec.Requests(), func(r fakehttp.Request) Call {
		return Call{Method: r.Method, Path: r.Path, Body: string(r.Body)}
	})
}

// Counters returns the predict counters the metrics endpoint reports.
func (s *Server) Counters() tfs.Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters.Clone()
}

// InFlight is the number of predicts being answered now.
func (s *Server) InFlight() int64 { return s.inflight.Load() }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// ServeHTTP answers TF Serving's REST paths, recording every request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20+4096))
	body := string(raw)

	if r.URL.Path == tfs.MetricsPath {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_ = tfs.WriteMetrics(w, s.model, s.Counters())
		return
	}
	path := r.URL.Path
	if !strings.HasPrefix(path, "/v1/models/") {
		writeErr(w, http.StatusNotFound, "Malformed request: %s %s", r.Method, path)
		return
	}
	rest := strings.TrimPrefix(path, "/v1/models/")
	verb := ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		rest, verb = rest[:i], rest[i+1:]
	}
	parts := strings.Split(rest, "/")
	if parts[0] != s.model {
		writeErr(w, http.StatusNotFound, "Servable not found for request: Latest(%s)", parts[0])
		return
	}
	var sel tfs.Selector
	metadata := false
	if len(parts) > 1 && parts[len(parts)-1] == "metadata" {
		metadata = true
		parts = parts[:len(parts)-1]
	}
	switch {
	case len(parts) == 1:
	case len(parts) == 3 && parts[1] == "versions":
		v, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "Malformed request: %s %s", r.Method, path)
			return
		}
		sel.Version = v
	case len(parts) == 3 && parts[1] == "labels":
		sel.Label = parts[2]
	default:
		writeErr(w, http.StatusNotFound, "Malformed request: %s %s", r.Method, path)
		return
	}
	switch {
	case verb == "" && !metadata && r.Method == http.MethodGet:
		s.status(w, sel)
	case metadata && verb == "" && r.Method == http.MethodGet:
		s.metadata(w, sel)
	case verb == "predict" && r.Method == http.MethodPost:
		s.predict(w, sel, body)
	default:
		writeErr(w, http.StatusNotFound, "Malformed request: %s %s", r.Method, path)
	}
}

// resolve returns the version a selector means, or an error message.
func (s *Server) resolve(sel tfs.Selector) (int64, *version, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := sel.Version
	if sel.Label != "" {
		lv, ok := s.labels[sel.Label]
		if !ok {
			return 0, nil, fmt.Sprintf("Unrecognized servable version label: %s", sel.Label)
		}
		v = lv
	}
	if v == 0 {
		for n, ver := range s.versions {
			if ver.state == tfs.StateAvailable && n > v {
				v = n
			}
		}
		if v == 0 {
			return 0, nil, fmt.Sprintf("Servable not found for request: Latest(%s)", s.model)
		}
	}
	ver := s.versions[v]
	if ver == nil {
		return 0, nil, fmt.Sprintf("Servable not found for request: Specific(%s, %d)", s.model, v)
	}
	return v, ver, ""
}

func (s *Server) status(w http.ResponseWriter, sel tfs.Selector) {
	type st struct {
		Version string `json:"version"`
		State   string `json:"state"`
		Status  struct {
			ErrorCode    string `json:"error_code"`
			ErrorMessage string `json:"error_message"`
		} `json:"status"`
	}
	var out []st
	if sel.Version == 0 && sel.Label == "" {
		s.mu.Lock()
		vs := make([]int64, 0, len(s.versions))
		for v := range s.versions {
			vs = append(vs, v)
		}
		sort.Slice(vs, func(i, j int) bool { return vs[i] > vs[j] })
		for _, v := range vs {
			e := st{Version: strconv.FormatInt(v, 10), State: s.versions[v].state}
			e.Status.ErrorCode, e.Status.ErrorMessage = s.versions[v].errCode, s.versions[v].errMsg
			out = append(out, e)
		}
		s.mu.Unlock()
		if len(out) == 0 {
			writeErr(w, http.StatusNotFound, "Could not find any versions of model %s", s.model)
			return
		}
	} else {
		v, ver, msg := s.resolve(sel)
		if msg != "" {
			writeErr(w, http.StatusNotFound, "%s", msg)
			return
		}
		s.mu.Lock()
		e := st{Version: strconv.FormatInt(v, 10), State: ver.state}
		e.Status.ErrorCode, e.Status.ErrorMessage = ver.errCode, ver.errMsg
		s.mu.Unlock()
		out = append(out, e)
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_version_status": out})
}

func (s *Server) metadata(w http.ResponseWriter, sel tfs.Selector) {
	v, ver, msg := s.resolve(sel)
	if msg == "" && ver.state != tfs.StateAvailable {
		msg = fmt.Sprintf("Servable not found for request: Specific(%s, %d)", s.model, v)
	}
	if msg != "" {
		writeErr(w, http.StatusNotFound, "%s", msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"model_spec": map[string]any{"name": s.model, "signature_name": "", "version": strconv.FormatInt(v, 10)},
		"metadata": map[string]any{"signature_def": map[string]any{"signature_def": map[string]any{"serving_default": map[string]any{
			"inputs":      map[string]any{"x": map[string]any{"dtype": "DT_FLOAT", "name": "serving_default_x:0"}},
			"outputs":     map[string]any{"y": map[string]any{"dtype": "DT_FLOAT", "name": "StatefulPartitionedCall:0"}},
			"method_name": "tensorflow/serving/predict",
		}}}},
	})
}

func (s *Server) predict(w http.ResponseWriter, sel tfs.Selector, body string) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	start := time.Now()
	v, ver, msg := s.resolve(sel)
	if msg == "" && ver.state != tfs.StateAvailable {
		msg = fmt.Sprintf("Servable not found for request: Specific(%s, %d)", s.model, v)
	}
	if msg != "" {
		writeErr(w, http.StatusNotFound, "%s", msg)
		return
	}
	var req struct {
		Instances []json.RawMessage `json:"instances"`
		Inputs    json.RawMessage   `json:"inputs"`
	}
	if err := json.Unmarshal([]byte(body), &req); err != nil || (req.Instances == nil && req.Inputs == nil) {
		writeErr(w, http.StatusBadRequest, "JSON Parse error: body must be an object with \"instances\" or \"inputs\"")
		return
	}
	s.mu.Lock()
	ver.calls++
	b, n := ver.behavior, ver.calls
	s.mu.Unlock()
	if b.Delay > 0 {
		time.Sleep(b.Delay)
	}
	code := http.StatusOK
	switch {
	case b.FailEvery > 0 && n%b.FailEvery == 0:
		code = http.StatusInternalServerError
	case b.Status != 0:
		code = b.Status
	}
	s.mu.Lock()
	s.counters.Count(code)
	s.counters.Latency.Observe(time.Since(start))
	s.mu.Unlock()
	if code != http.StatusOK {
		writeErr(w, code, "injected status %d of version %d", code, v)
		return
	}
	out := b.Output
	if out == 0 {
		out = float64(v)
	}
	rows := len(req.Instances)
	if req.Instances == nil {
		rows = 1
	}
	preds := make([][]float64, rows)
	for i := range preds {
		preds[i] = []float64{out}
	}
	writeJSON(w, http.StatusOK, map[string]any{"predictions": preds})
}

// LoadDir configures s from a model base path: every numeric directory
// under base (filtered to versions when not empty) becomes AVAILABLE, with
// the Behavior in its optional behavior.json.
func (s *Server) LoadDir(base string, versions []int64) error {
	ents, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	want := map[int64]bool{}
	for _, v := range versions {
		want[v] = true
	}
	mc := tfs.ModelConfig{Name: s.model, BasePath: base}
	behaviors := map[int64]Behavior{}
	var latest int64
	for _, e := range ents {
		v, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || !e.IsDir() || v <= 0 {
			continue
		}
		if len(want) > 0 && !want[v] {
			continue
		}
		if len(want) == 0 && v < latest {
			continue
		}
		var b Behavior
		if raw, err := os.ReadFile(filepath.Join(base, e.Name(), "behavior.json")); err == nil {
			if err := json.Unmarshal(raw, &b); err != nil {
				return fmt.Errorf("%s/behavior.json: %w", e.Name(), err)
			}
		}
		behaviors[v] = b
		if len(want) == 0 {
			latest = v
			mc.Versions = []int64{v}
		} else {
			mc.Versions = append(mc.Versions, v)
		}
	}
	return s.Configure(mc, behaviors)
}
