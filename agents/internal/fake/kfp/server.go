package kfp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/branchml/branchml/agents/internal/fake/fakehttp"
)

// Request is one request the fake received.
type Request struct {
	Method string
	// Path is the unescaped URL path, e.g. "/apis/v2beta1/pipelines".
	Path  string
	Query url.Values
	// Body is the body as sent (for multipart uploads the raw multipart).
	Body []byte
	// File is the content of the "uploadfile" part of a multipart upload.
	File []byte
	// Authorization is the Authorization header as sent.
	Authorization string
	// Status is the status code answered.
	Status int
}

// String is "METHOD /path" plus "?query" (keys sorted) when there is one.
func (r Request) String() string {
	if q := r.Query.Encode(); q != "" {
		return r.Method + " " + r.Path + "?" + q
	}
	return r.Method + " " + r.Path
}

// Pipeline is a stored pipeline (v2beta1 Pipeline).
type Pipeline struct {
	ID, Name, Description, Namespace string
	CreatedAt                        time.Time
}

// Version is a stored pipeline version (v2beta1 PipelineVersion); Spec is
// the uploaded file.
type Version struct {
	ID, PipelineID, Name, Description string
	Spec                              []byte
	CreatedAt                         time.Time
}

// Experiment is a stored experiment (v2beta1 Experiment).
type Experiment struct {
	ID, Name, Description, Namespace string
	CreatedAt                        time.Time
}

// Run is a stored run. States is its scripted state sequence; each GET
// of the run advances one step and the last state stays.
type Run struct {
	ID, Name, ExperimentID, PipelineID, VersionID string
	Parameters                                    map[string]any
	States                                        []string
	// Step is the index into States of the current state.
	Step int
	// Tasks are the task names shown in run_details.task_details (the
	// version's root DAG tasks by default); every task shows the run state.
	Tasks []string
	// TaskErrors maps a task to its error message when the run FAILED.
	TaskErrors map[string]string
	// TaskOutputs maps a task to its outputs' ML Metadata artifact IDs
	// (output name → IDs), shown as run_details.task_details[].outputs.
	// Argo-based KFP 2.x servers fill no outputs (their task details come
	// from the workflow's nodes), so by default there are none.
	TaskOutputs map[string]map[string][]string
	// PipelineRoot is runtime_config.pipeline_root as created.
	PipelineRoot string
	CreatedAt    time.Time
	FinishedAt   time.Time
}

// State is the run's current state.
func (r *Run) State() string { return r.States[r.Step] }

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	// Fake records the requests and injects faults (Inject, ClearFaults,
	// Requests, Calls, ResetRequests).
	*fakehttp.Fake[Request]
	token          string
	legacyConflict bool
	defaultStates  []string
	now            func() time.Time
	onRunCreated   func(Run)
	createDelay    time.Duration

	mu          sync.Mutex
	seq         int
	pipelines   []*Pipeline
	versions    []*Version
	experiments []*Experiment
	runs        []*Run
	artifacts   map[string][]byte // runID/node/artifact → content as served
}

// Option configures a Server.
type Option func(*Server)

// WithToken makes the fake require "Authorization: Bearer <token>"; it
// answers 401 (gRPC code 16 UNAUTHENTICATED) otherwise.
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithLegacyConflicts makes a duplicate name answer as older KFP servers
// do: 500 Internal Server Error with a text/plain body saying the name
// already exists, instead of 409 Conflict with a google.rpc.Status body.
func WithLegacyConflicts() Option { return func(s *Server) { s.legacyConflict = true } }

// WithRunStates sets the state sequence of new runs (default PENDING,
// RUNNING, SUCCEEDED).
func WithRunStates(states ...string) Option {
	return func(s *Server) { s.defaultStates = append([]string(nil), states...) }
}

// OnRunCreated calls f with each run as created (outside the fake's lock),
// e.g. to record the run's outputs in ML Metadata and the object store as
// KFP's launcher would while it runs.
func OnRunCreated(f func(Run)) Option { return func(s *Server) { s.onRunCreated = f } }

// WithCreateRunDelay makes CreateRun take d before it stores the run, as a
// loaded API server does (the window in which two clients both list no run).
func WithCreateRunDelay(d time.Duration) Option { return func(s *Server) { s.createDelay = d } }

// WithClock sets the fake's clock (default time.Now, in UTC, whole seconds).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New starts a fake on loopback; close it with Close.
func New(opts ...Option) *Server {
	s := &Server{
		Fake:          fakehttp.NewFake(toRequest),
		defaultStates: []string{"PENDING", "RUNNING", "SUCCEEDED"},
		now:           func() time.Time { return time.Now().UTC().Truncate(time.Second) },
		artifacts:     map[string][]byte{},
	}
	for _, o := range opts {
		o(s)
	}
	s.Server = httptest.NewServer(s.Handler(s.auth(s.routes())))
	return s
}

func toRequest(r fakehttp.Request) Request {
	q, _ := url.ParseQuery(r.RawQuery)
	return Request{Method: r.Method, Path: r.Path, Query: q, Body: r.Body,
		File: uploadFile(r.Header.Get("Content-Type"), r.Body), Authorization: r.Header.Get("Authorization"), Status: r.Status}
}

// Pipelines returns copies of the stored pipelines, oldest first.
func (s *Server) Pipelines() []Pipeline {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Pipeline, len(s.pipelines))
	for i, p := range s.pipelines {
		out[i] = *p
	}
	return out
}

// Versions returns copies of the stored versions of pipeline id ("" = all), oldest first.
func (s *Server) Versions(pipelineID string) []Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Version
	for _, v := range s.versions {
		if pipelineID == "" || v.PipelineID == pipelineID {
			out = append(out, *v)
		}
	}
	return out
}

// Experiments returns copies of the stored experiments, oldest first.
func (s *Server) Experiments() []Experiment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Experiment, len(s.experiments))
	for i, e := range s.experiments {
		out[i] = *e
	}
	return out
}

// Run returns a copy of run id, or false.
func (s *Server) Run(id string) (Run, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.run(id)
	if r == nil {
		return Run{}, false
	}
	return *r, true
}

// SetRunStates replaces the state sequence of run id and rewinds it to the
// first state; it returns false for an unknown run.
func (s *Server) SetRunStates(id string, states ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.run(id)
	if r == nil || len(states) == 0 {
		return false
	}
	r.States, r.Step = append([]string(nil), states...), 0
	return true
}

// SetTaskError sets the error message task shows in run id's details.
func (s *Server) SetTaskError(id, task, message string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.run(id)
	if r == nil {
		return false
	}
	if r.TaskErrors == nil {
		r.TaskErrors = map[string]string{}
	}
	r.TaskErrors[task] = message
	return true
}

// SetArtifact sets what ReadArtifact answers for run id, node (the task's
// node ID: its pod name in run_details) and artifact name. As KFP serves
// artifacts, data should be a gzipped tar archive; see TarGz.
func (s *Server) SetArtifact(runID, node, artifact string, data []byte) {
	s.mu.Lock()
	s.artifacts[runID+"/"+node+"/"+artifact] = data
	s.mu.Unlock()
}

// SetTaskOutputs lists ML Metadata artifact IDs as output name of task in
// run id's details; it returns false for an unknown run.
func (s *Server) SetTaskOutputs(id, task, name string, artifactIDs ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.run(id)
	if r == nil {
		return false
	}
	if r.TaskOutputs == nil {
		r.TaskOutputs = map[string]map[string][]string{}
	}
	if r.TaskOutputs[task] == nil {
		r.TaskOutputs[task] = map[string][]string{}
	}
	r.TaskOutputs[task][name] = artifactIDs
	return true
}

// Runs returns copies of the stored runs, oldest first.
func (s *Server) Runs() []Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Run, len(s.runs))
	for i, r := range s.runs {
		out[i] = *r
	}
	return out
}

// AddPipeline stores a pipeline as if created earlier and returns its ID.
func (s *Server) AddPipeline(name, namespace string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addPipeline(name, "", namespace).ID
}

// AddVersion stores a version of pipeline id as if uploaded earlier and
// returns its ID.
func (s *Server) AddVersion(pipelineID, name, description string, spec []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addVersion(pipelineID, name, description, spec).ID
}

func (s *Server) id(kind int) string {
	s.seq++
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", kind, s.seq)
}

func (s *Server) addPipeline(name, desc, ns string) *Pipeline {
	p := &Pipeline{ID: s.id(1), Name: name, Description: desc, Namespace: ns, CreatedAt: s.now()}
	s.pipelines = append(s.pipelines, p)
	return p
}

func (s *Server) addVersion(pid, name, desc string, spec []byte) *Version {
	v := &Version{ID: s.id(2), PipelineID: pid, Name: name, Description: desc, Spec: spec, CreatedAt: s.now()}
	s.versions = append(s.versions, v)
	return v
}

func (s *Server) run(id string) *Run {
	for _, r := range s.runs {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// uploadFile returns the "uploadfile" part of a multipart body, or nil.
func uploadFile(contentType string, body []byte) []byte {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" {
		return nil
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			return nil
		}
		if p.FormName() == "uploadfile" {
			b, _ := io.ReadAll(p)
			return b
		}
	}
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
			writeStatus(w, http.StatusUnauthorized, codeUnauthenticated, "Unauthenticated: request is not authenticated")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// gRPC status codes KFP's grpc-gateway puts in google.rpc.Status.code.
const (
	codeInvalidArgument = 3
	codeNotFound        = 5
	codeAlreadyExists   = 6
	codeInternal        = 13
	codeUnavailable     = 14
	codeUnauthenticated = 16
)

// rpcStatus is the swagger's googlerpcStatus.
type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []any  `json:"details"`
}

func writeStatus(w http.ResponseWriter, httpCode, code int, message string) {
	writeJSON(w, httpCode, rpcStatus{Code: code, Message: message, Details: []any{}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// conflict answers a duplicate name the way the configured server version does.
func (s *Server) conflict(w http.ResponseWriter, what, name string) {
	msg := fmt.Sprintf("Already exist error: Failed to create a new %s. The name %s already exist. Please specify a new name", what, name)
	if s.legacyConflict {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "Internal error: "+msg+"\n")
		return
	}
	writeStatus(w, http.StatusConflict, codeAlreadyExists, msg)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}

func lower(s string) string { return strings.ToLower(s) }
