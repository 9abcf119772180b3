package tfserving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/branchml/djia30/internal/model"
)

// MaxBodyBytes bounds a predict request body.
const MaxBodyBytes = 32 << 20

// Options configures a Server. Give either Models or ConfigFile.
type Options struct {
	// Models are the served models (from --model_name/--model_base_path or
	// a parsed config file).
	Models []ModelConfig
	// ConfigFile is TF Serving's model config file; when set it is read at
	// start and, if ConfigPollWait > 0, re-read every ConfigPollWait.
	ConfigFile     string
	ConfigPollWait time.Duration
	// FSPollWait is how often the base paths are scanned for new or removed
	// versions (TF Serving's --file_system_poll_wait_seconds); 0 disables.
	FSPollWait time.Duration
	// AllowLabelsForUnavailable is TF Serving's
	// --allow_version_labels_for_unavailable_models: a label that is new
	// (or keeps its version) may name a version that is not loaded yet.
	// Without it a config whose label names a version that is not loaded
	// is refused: at start-up (nothing is loaded yet, so any label) New
	// fails; on a reload the previous config is kept. Moving an existing
	// label to a version that is not loaded is refused either way.
	AllowLabelsForUnavailable bool
	// MetricsPath is where the Prometheus text is served (the path of
	// --monitoring_config_file's prometheus_config); "" serves none.
	MetricsPath string
	// Logf receives log lines; nil discards them.
	Logf func(format string, args ...any)
}

// Server serves the models over TF Serving's REST API. Create it with New,
// call Run to poll for version changes, and use it as an http.Handler.
type Server struct {
	opts    Options
	metrics *Metrics

	mu         sync.RWMutex
	models     map[string]*servable
	configText string
}

type servable struct {
	cfg      ModelConfig
	versions map[int64]*loaded
	failed   map[int64]string // load errors already logged
}

type loaded struct {
	m        *model.Model
	inflight sync.WaitGroup
}

// New loads the configured models' current versions and returns the server.
// A model whose base path has no loadable version yet is kept (requests get
// 404 until a version appears).
func New(opts Options) (*Server, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	s := &Server{opts: opts, metrics: NewMetrics(), models: map[string]*servable{}}
	if opts.ConfigFile != "" {
		if err := s.reloadConfig(); err != nil {
			return nil, err
		}
	} else {
		if len(opts.Models) == 0 {
			return nil, errors.New("no models configured: give --model_name and --model_base_path, or --model_config_file")
		}
		s.applyConfig(opts.Models)
	}
	s.Sync()
	return s, nil
}

// Metrics returns the server's metrics collector.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Run polls the base paths every FSPollWait and the config file every
// ConfigPollWait until ctx is done.
func (s *Server) Run(ctx context.Context) {
	var fsC, cfgC <-chan time.Time
	if s.opts.FSPollWait > 0 {
		t := time.NewTicker(s.opts.FSPollWait)
		defer t.Stop()
		fsC = t.C
	}
	if s.opts.ConfigFile != "" && s.opts.ConfigPollWait > 0 {
		t := time.NewTicker(s.opts.ConfigPollWait)
		defer t.Stop()
		cfgC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-fsC:
			s.Sync()
		case <-cfgC:
			if err := s.reloadConfig(); err != nil {
				s.opts.Logf("model config: %v (keeping the previous config)", err)
				continue
			}
			s.Sync()
		}
	}
}

func (s *Server) reloadConfig() error {
	b, err := os.ReadFile(s.opts.ConfigFile)
	if err != nil {
		return err
	}
	s.mu.RLock()
	same := string(b) == s.configText
	s.mu.RUnlock()
	if same {
		return nil
	}
	cfgs, err := ParseModelConfig(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", s.opts.ConfigFile, err)
	}
	if err := s.checkLabels(cfgs); err != nil {
		return fmt.Errorf("%s: %w", s.opts.ConfigFile, err)
	}
	s.applyConfig(cfgs)
	s.mu.Lock()
	s.configText = string(b)
	s.mu.Unlock()
	return nil
}

// checkLabels applies TF Serving's rule for version labels
// (ServerCore::UpdateModelVersionLabelMap, checked before the config's
// versions load): a label may name a version that is loaded now; one that
// is not loaded only with AllowLabelsForUnavailable, and then only when the
// label is new or already names that version.
func (s *Server) checkLabels(cfgs []ModelConfig) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range cfgs {
		sv := s.models[c.Name]
		labels := make([]string, 0, len(c.Labels))
		for l := range c.Labels {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		for _, l := range labels {
			v := c.Labels[l]
			if sv != nil && sv.versions[v] != nil {
				continue
			}
			if s.opts.AllowLabelsForUnavailable {
				old, had := int64(0), false
				if sv != nil {
					old, had = sv.cfg.Labels[l]
				}
				if !had || old == v {
					continue
				}
			}
			return fmt.Errorf("Request to assign label to version %d of model %s, which is not currently available for inference", v, c.Name)
		}
	}
	return nil
}

// applyConfig replaces the model list: new models are added, removed ones
// unloaded, existing ones keep their loaded versions and take the new policy
// and labels (Sync then applies the policy).
func (s *Server) applyConfig(cfgs []ModelConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[string]bool{}
	for _, c := range cfgs {
		keep[c.Name] = true
		if sv, ok := s.models[c.Name]; ok {
			if sv.cfg.BasePath != c.BasePath {
				for v, l := range sv.versions {
					s.unloadLocked(c.Name, v, l)
				}
				sv.versions = map[int64]*loaded{}
			}
			sv.cfg = c
			continue
		}
		s.models[c.Name] = &servable{cfg: c, versions: map[int64]*loaded{}, failed: map[int64]string{}}
		s.opts.Logf("serving model %s from %s", c.Name, c.BasePath)
	}
	for name, sv := range s.models {
		if !keep[name] {
			for v, l := range sv.versions {
				s.unloadLocked(name, v, l)
			}
			delete(s.models, name)
		}
	}
}

// unloadLocked drops a version; in-flight requests holding it finish first
// (the wait runs in the background). s.mu must be held.
func (s *Server) unloadLocked(name string, v int64, l *loaded) {
	go func() {
		l.inflight.Wait()
		s.opts.Logf("unloaded model %s version %d", name, v)
	}()
}

// Sync scans every model's base path once: it loads the versions the policy
// wants that are not loaded yet and unloads the ones it no longer wants.
func (s *Server) Sync() {
	s.mu.RLock()
	type job struct {
		name string
		cfg  ModelConfig
	}
	var jobs []job
	for name, sv := range s.models {
		jobs = append(jobs, job{name, sv.cfg})
	}
	s.mu.RUnlock()
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].name < jobs[j].name })
	for _, j := range jobs {
		want := wantedVersions(j.cfg, listVersions(j.cfg.BasePath))
		// load outside the lock
		s.mu.RLock()
		sv := s.models[j.name]
		var toLoad []int64
		if sv != nil {
			for _, v := range want {
				if _, ok := sv.versions[v]; !ok {
					toLoad = append(toLoad, v)
				}
			}
		}
		s.mu.RUnlock()
		if sv == nil {
			continue
		}
		loadedNow := map[int64]*model.Model{}
		for _, v := range toLoad {
			m, err := model.Load(filepath.Join(j.cfg.BasePath, strconv.FormatInt(v, 10)))
			s.mu.Lock()
			if err != nil {
				if sv.failed[v] != err.Error() {
					sv.failed[v] = err.Error()
					s.opts.Logf("model %s version %d: load failed: %v", j.name, v, err)
				}
			} else {
				delete(sv.failed, v)
				loadedNow[v] = m
			}
			s.mu.Unlock()
		}
		wantSet := map[int64]bool{}
		for _, v := range want {
			wantSet[v] = true
		}
		s.mu.Lock()
		for v := range sv.failed {
			if !wantSet[v] {
				delete(sv.failed, v)
			}
		}
		if s.models[j.name] == sv {
			for v, m := range loadedNow {
				sv.versions[v] = &loaded{m: m}
				s.opts.Logf("loaded model %s version %d", j.name, v)
			}
			for v, l := range sv.versions {
				if !wantSet[v] {
					delete(sv.versions, v)
					s.unloadLocked(j.name, v, l)
				}
			}
		}
		s.mu.Unlock()
	}
}

// listVersions returns the positive integer directory names in base.
func listVersions(base string) []int64 {
	ents, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var out []int64
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if v, err := strconv.ParseInt(e.Name(), 10, 64); err == nil && v > 0 && strconv.FormatInt(v, 10) == e.Name() {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// wantedVersions applies the version policy to the versions on disk (sorted
// ascending).
func wantedVersions(c ModelConfig, onDisk []int64) []int64 {
	switch c.Policy {
	case PolicyAll:
		return onDisk
	case PolicySpecific:
		have := map[int64]bool{}
		for _, v := range onDisk {
			have[v] = true
		}
		var out []int64
		for _, v := range c.Versions {
			if have[v] {
				out = append(out, v)
			}
		}
		return out
	default:
		n := max(c.NumVersions, 1)
		if len(onDisk) > n {
			return onDisk[len(onDisk)-n:]
		}
		return onDisk
	}
}

// injectFault, when set, answers a predict request that reached a loaded
// version before the model sees it (nil: the request goes on). Only the
// fault-injecting test build sets it (fault_inject.go, build tag
// faultinject); a normal build has none.
var injectFault func() *apiError

// apiError is an error answer: HTTP status, TF Serving error code, message.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func notFound(format string, a ...any) *apiError {
	return &apiError{http.StatusNotFound, "NOT_FOUND", fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf(format, a...)}
}

// spec is the request's model selector.
type spec struct {
	name    string
	version int64 // 0 = none given
	label   string
}

func (sp spec) String() string {
	switch {
	case sp.version != 0:
		return fmt.Sprintf("Specific(%s, %d)", sp.name, sp.version)
	case sp.label != "":
		return fmt.Sprintf("Label(%s, %s)", sp.name, sp.label)
	}
	return fmt.Sprintf("Latest(%s)", sp.name)
}

// acquire resolves sp to a loaded version and marks a request in flight;
// the caller must call release.
func (s *Server) acquire(sp spec) (*loaded, int64, *apiError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sv, ok := s.models[sp.name]
	if !ok {
		return nil, 0, notFound("Servable not found for request: %s", sp)
	}
	v := sp.version
	if sp.label != "" {
		lv, ok := sv.cfg.Labels[sp.label]
		if !ok {
			return nil, 0, notFound("Unrecognized servable version label: %s", sp.label)
		}
		v = lv
	}
	if v == 0 {
		for ver := range sv.versions {
			v = max(v, ver)
		}
	}
	l, ok := sv.versions[v]
	if !ok {
		return nil, 0, notFound("Servable not found for request: %s", sp)
	}
	l.inflight.Add(1)
	return l, v, nil
}

// ServeHTTP routes TF Serving's REST API:
//
//	GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
//	GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   model metadata
//	POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    predict
//	GET  Options.MetricsPath (/monitoring/prometheus/metrics)    Prometheus text
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if s.opts.MetricsPath != "" && path == s.opts.MetricsPath && r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.metrics.WriteText(w)
		return
	}
	rest, ok := strings.CutPrefix(path, "/v1/models/")
	if !ok {
		writeError(w, &apiError{http.StatusNotFound, "NOT_FOUND", "Malformed request: " + r.Method + " " + path})
		return
	}
	verb := ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		rest, verb = rest[:i], rest[i+1:]
	}
	segs := strings.Split(rest, "/")
	metadata := false
	if len(segs) > 1 && segs[len(segs)-1] == "metadata" && verb == "" {
		metadata = true
		segs = segs[:len(segs)-1]
	}
	sp := spec{name: segs[0]}
	malformed := &apiError{http.StatusNotFound, "NOT_FOUND", "Malformed request: " + r.Method + " " + path}
	switch {
	case sp.name == "":
		writeError(w, malformed)
		return
	case len(segs) == 1:
	case len(segs) == 3 && segs[1] == "versions":
		v, err := strconv.ParseInt(segs[2], 10, 64)
		if err != nil || v <= 0 {
			writeError(w, malformed)
			return
		}
		sp.version = v
	case len(segs) == 3 && segs[1] == "labels" && segs[2] != "":
		sp.label = segs[2]
	default:
		writeError(w, malformed)
		return
	}
	switch {
	case verb == "" && r.Method == http.MethodGet && metadata:
		s.handleMetadata(w, sp)
	case verb == "" && r.Method == http.MethodGet:
		s.handleStatus(w, sp)
	case verb == "predict" && r.Method == http.MethodPost:
		s.handlePredict(w, r, sp)
	case verb == "classify" || verb == "regress":
		writeError(w, invalid("%s is not supported by this model (its signatures use method tensorflow/serving/predict)", verb))
	default:
		writeError(w, malformed)
	}
}

type versionStatus struct {
	Version string `json:"version"`
	State   string `json:"state"`
	Status  struct {
		ErrorCode    string `json:"error_code"`
		ErrorMessage string `json:"error_message"`
	} `json:"status"`
}

func (s *Server) handleStatus(w http.ResponseWriter, sp spec) {
	var vs []int64
	// failed are the versions that did not load, reported as TF Serving's
	// GetModelStatus does: state END with the load error.
	failed := map[int64]string{}
	if sp.version != 0 || sp.label != "" {
		l, v, e := s.acquire(sp)
		if e != nil {
			s.mu.RLock()
			msg, ok := "", false
			if sv := s.models[sp.name]; sv != nil && sp.version != 0 {
				msg, ok = sv.failed[sp.version]
			}
			s.mu.RUnlock()
			if !ok {
				writeError(w, e)
				return
			}
			failed[sp.version] = msg
			vs = []int64{sp.version}
		} else {
			l.inflight.Done()
			vs = []int64{v}
		}
	} else {
		s.mu.RLock()
		sv, ok := s.models[sp.name]
		if ok {
			for v := range sv.versions {
				vs = append(vs, v)
			}
			for v, msg := range sv.failed {
				if _, loaded := sv.versions[v]; !loaded {
					failed[v] = msg
					vs = append(vs, v)
				}
			}
		}
		s.mu.RUnlock()
		if !ok || len(vs) == 0 {
			writeError(w, notFound("Could not find any versions of model %s", sp.name))
			return
		}
		sort.Slice(vs, func(i, j int) bool { return vs[i] > vs[j] })
	}
	out := struct {
		ModelVersionStatus []versionStatus `json:"model_version_status"`
	}{}
	for _, v := range vs {
		st := versionStatus{Version: strconv.FormatInt(v, 10), State: "AVAILABLE"}
		st.Status.ErrorCode = "OK"
		if msg, ok := failed[v]; ok {
			st.State, st.Status.ErrorCode, st.Status.ErrorMessage = "END", "INVALID_ARGUMENT", msg
		}
		out.ModelVersionStatus = append(out.ModelVersionStatus, st)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleMetadata(w http.ResponseWriter, sp spec) {
	l, v, e := s.acquire(sp)
	if e != nil {
		writeError(w, e)
		return
	}
	defer l.inflight.Done()
	out := struct {
		ModelSpec struct {
			Name          string `json:"name"`
			SignatureName string `json:"signature_name"`
			Version       string `json:"version"`
		} `json:"model_spec"`
		Metadata struct {
			SignatureDef json.RawMessage `json:"signature_def"`
		} `json:"metadata"`
	}{}
	out.ModelSpec.Name, out.ModelSpec.Version = sp.name, strconv.FormatInt(v, 10)
	out.Metadata.SignatureDef = l.m.Signature
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request, sp spec) {
	start := time.Now()
	version := ""
	observe := func(status string) {
		s.metrics.Observe(sp.name, version, status, "predict", float64(time.Since(start).Nanoseconds())/1e3)
	}
	l, v, e := s.acquire(sp)
	if e != nil {
		writeError(w, e)
		observe(e.code)
		return
	}
	defer l.inflight.Done()
	version = strconv.FormatInt(v, 10)
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil || len(body) > MaxBodyBytes {
		e := invalid("could not read the request body (limit %d bytes)", MaxBodyBytes)
		writeError(w, e)
		observe(e.code)
		return
	}
	if injectFault != nil {
		if e := injectFault(); e != nil {
			writeError(w, e)
			observe(e.code)
			return
		}
	}
	req, err := DecodePredict(body, l.m.NumFeatures())
	if err != nil {
		e := invalid("%v", err)
		writeError(w, e)
		observe(e.code)
		return
	}
	if !l.m.Signatures[req.SignatureName] || (req.SignatureName != DefaultSignature && req.SignatureName != LabelSignature) {
		e := &apiError{http.StatusBadRequest, "FAILED_PRECONDITION", fmt.Sprintf("Serving signature name: %q not found in signature def", req.SignatureName)}
		writeError(w, e)
		observe(e.code)
		return
	}
	probs, err := l.m.Predict(req.Instances)
	if err != nil {
		e := invalid("%v", err)
		writeError(w, e)
		observe(e.code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if req.SignatureName == LabelSignature {
		w.Write(EncodeLabeled(probs, req.Columnar))
	} else {
		w.Write(EncodePredictions(probs, req.Columnar))
	}
	observe("OK")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]string{"error": e.msg})
}
