package kfp

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Prefix is the path prefix of every v2beta1 endpoint.
const Prefix = "/apis/v2beta1"

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET "+Prefix+"/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"multi_user": false})
	})
	m.HandleFunc("POST "+Prefix+"/pipelines/upload", s.uploadPipeline)
	m.HandleFunc("POST "+Prefix+"/pipelines/upload_version", s.uploadVersion)
	m.HandleFunc("POST "+Prefix+"/pipelines", s.createPipeline)
	m.HandleFunc("GET "+Prefix+"/pipelines", s.listPipelines)
	m.HandleFunc("GET "+Prefix+"/pipelines/{id}", s.getPipeline)
	m.HandleFunc("GET "+Prefix+"/pipelines/{id}/versions", s.listVersions)
	m.HandleFunc("GET "+Prefix+"/pipelines/{id}/versions/{vid}", s.getVersion)
	m.HandleFunc("POST "+Prefix+"/runs", s.createRun)
	m.HandleFunc("GET "+Prefix+"/runs", s.listRuns)
	m.HandleFunc("GET "+Prefix+"/runs/{id}", s.getRun)
	m.HandleFunc("POST "+Prefix+"/runs/{action}", s.runAction)
	m.HandleFunc("GET "+Prefix+"/runs/{id}/nodes/{node}/artifacts/{name}", s.readArtifact)
	m.HandleFunc("POST "+Prefix+"/experiments", s.createExperiment)
	m.HandleFunc("GET "+Prefix+"/experiments", s.listExperiments)
	m.HandleFunc("GET "+Prefix+"/experiments/{id}", s.getExperiment)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not Found")
	})
	return m
}

// --- JSON shapes (swagger definitions v2beta1Pipeline, v2beta1PipelineVersion,
// v2beta1Run, v2beta1Experiment and their list responses) ---

func pipelineJSON(p *Pipeline) map[string]any {
	m := map[string]any{"pipeline_id": p.ID, "display_name": p.Name, "created_at": ts(p.CreatedAt)}
	if p.Description != "" {
		m["description"] = p.Description
	}
	if p.Namespace != "" {
		m["namespace"] = p.Namespace
	}
	return m
}

func versionJSON(v *Version) map[string]any {
	m := map[string]any{"pipeline_id": v.PipelineID, "pipeline_version_id": v.ID, "display_name": v.Name, "created_at": ts(v.CreatedAt)}
	if v.Description != "" {
		m["description"] = v.Description
	}
	if spec := specJSON(v.Spec); spec != nil {
		m["pipeline_spec"] = spec
	}
	return m
}

// specJSON is a version's pipeline_spec as the API server returns it: the
// PipelineSpec as a JSON object, or {"pipeline_spec": …, "platform_spec": …}
// when the upload had a platform document.
func specJSON(spec []byte) any {
	docs := documents(spec)
	switch len(docs) {
	case 0:
		return nil
	case 1:
		return docs[0]
	default:
		return map[string]any{"pipeline_spec": docs[0], "platform_spec": docs[1]}
	}
}

// documents reads the YAML documents of an uploaded file as the API
// server does (gopkg.in/yaml.v3, YAML 1.2; here go.yaml.in/yaml/v3),
// through JSON so that values are JSON's.
func documents(spec []byte) []map[string]any {
	var out []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(spec))
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return out
		}
		if m == nil {
			continue
		}
		js, err := json.Marshal(m)
		if err != nil {
			return out
		}
		var j map[string]any
		json.Unmarshal(js, &j)
		out = append(out, j)
	}
}

func experimentJSON(e *Experiment) map[string]any {
	m := map[string]any{"experiment_id": e.ID, "display_name": e.Name, "created_at": ts(e.CreatedAt), "storage_state": "AVAILABLE"}
	if e.Description != "" {
		m["description"] = e.Description
	}
	if e.Namespace != "" {
		m["namespace"] = e.Namespace
	}
	return m
}

func runJSON(r *Run) map[string]any {
	state := r.State()
	m := map[string]any{
		"run_id": r.ID, "display_name": r.Name, "experiment_id": r.ExperimentID,
		"pipeline_version_reference": map[string]any{"pipeline_id": r.PipelineID, "pipeline_version_id": r.VersionID},
		"runtime_config":             runtimeConfig(r),
		"state":                      state, "storage_state": "AVAILABLE",
		"created_at": ts(r.CreatedAt), "scheduled_at": ts(r.CreatedAt),
	}
	var hist []map[string]any
	for i := 0; i <= r.Step; i++ {
		hist = append(hist, map[string]any{"state": r.States[i], "update_time": ts(r.CreatedAt)})
	}
	m["state_history"] = hist
	if !r.FinishedAt.IsZero() {
		m["finished_at"] = ts(r.FinishedAt)
	}
	var tasks []map[string]any
	for i, t := range r.Tasks {
		td := map[string]any{"run_id": r.ID, "task_id": r.ID + "-task-" + strconv.Itoa(i), "display_name": t,
			"state": state, "pod_name": r.Name + "-" + t, "create_time": ts(r.CreatedAt), "child_tasks": []any{}, "state_history": []any{}}
		if outs := r.TaskOutputs[t]; len(outs) > 0 {
			o := map[string]any{}
			for name, ids := range outs {
				o[name] = map[string]any{"artifact_ids": ids}
			}
			td["outputs"] = o
		}
		if msg, ok := r.TaskErrors[t]; ok && state == "FAILED" {
			td["error"] = rpcStatus{Code: codeInternal, Message: msg, Details: []any{}}
		}
		tasks = append(tasks, td)
	}
	m["run_details"] = map[string]any{"task_details": tasks}
	if state == "FAILED" {
		msg := "run failed"
		for _, t := range r.Tasks {
			if e, ok := r.TaskErrors[t]; ok {
				msg = "task " + t + " failed: " + e
				break
			}
		}
		m["error"] = rpcStatus{Code: codeInternal, Message: msg, Details: []any{}}
	}
	return m
}

func runtimeConfig(r *Run) map[string]any {
	rc := map[string]any{"parameters": r.Parameters}
	if r.PipelineRoot != "" {
		rc["pipeline_root"] = r.PipelineRoot
	}
	return rc
}

// --- filters and paging ---

// filterMatch reports whether the filter query (a JSON Filter protocol
// buffer, see backend/api/v2beta1/filter.proto) holds for fields. Only
// EQUALS predicates on string values are supported; ok is false for a
// filter the fake cannot parse.
func filterMatch(filter string, fields map[string]string) (match, ok bool) {
	if filter == "" {
		return true, true
	}
	var f struct {
		Predicates []struct {
			Key            string          `json:"key"`
			Operation      json.RawMessage `json:"operation"`
			StringValue    *string         `json:"string_value"`
			StringValueStd *string         `json:"stringValue"`
		} `json:"predicates"`
	}
	if err := json.Unmarshal([]byte(filter), &f); err != nil {
		return false, false
	}
	for _, p := range f.Predicates {
		op := strings.Trim(string(p.Operation), `"`)
		if op != "EQUALS" && op != "1" {
			return false, false
		}
		v := p.StringValue
		if v == nil {
			v = p.StringValueStd
		}
		if v == nil {
			return false, false
		}
		key := p.Key
		if key == "name" {
			key = "display_name"
		}
		got, known := fields[key]
		if !known {
			return false, false
		}
		if got != *v {
			return false, true
		}
	}
	return true, true
}

// page cuts items by page_size (default 20) and page_token (an offset).
// list answers a v2beta1 List call: the items that keep selects and the
// filter matches (on the fields given), in order ("sort_by=... desc"
// reverses), paged, under key with total_size and next_page_token.
func list[T any](w http.ResponseWriter, r *http.Request, key string, all []T, keep func(T) bool, fields func(T) map[string]string, toJSON func(T) map[string]any) {
	var match []T
	for _, x := range all {
		if !keep(x) {
			continue
		}
		ok, valid := filterMatch(r.URL.Query().Get("filter"), fields(x))
		if !valid {
			badFilter(w)
			return
		}
		if ok {
			match = append(match, x)
		}
	}
	if strings.HasSuffix(r.URL.Query().Get("sort_by"), " desc") {
		for i, j := 0, len(match)-1; i < j; i, j = i+1, j-1 {
			match[i], match[j] = match[j], match[i]
		}
	}
	pg, next, ok := page(r, match)
	if !ok {
		badFilter(w)
		return
	}
	items := []map[string]any{}
	for _, x := range pg {
		items = append(items, toJSON(x))
	}
	resp := map[string]any{key: items, "total_size": len(match)}
	if next != "" {
		resp["next_page_token"] = next
	}
	writeJSON(w, http.StatusOK, resp)
}

func page[T any](r *http.Request, items []T) ([]T, string, bool) {
	q := r.URL.Query()
	size := 20
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, "", false
		}
		if n > 0 {
			size = n
		}
	}
	off := 0
	if v := q.Get("page_token"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", false
		}
		off = n
	}
	end := off + size
	if end >= len(items) {
		return items[off:], "", true
	}
	return items[off:end], strconv.Itoa(end), true
}

func badFilter(w http.ResponseWriter) {
	writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: failed to parse valid filter or page token")
}

// --- pipelines ---

func (s *Server) findPipeline(name, ns string) *Pipeline {
	for _, p := range s.pipelines {
		if p.Name == name && p.Namespace == ns {
			return p
		}
	}
	return nil
}

func (s *Server) pipelineByID(id string) *Pipeline {
	for _, p := range s.pipelines {
		if p.ID == id {
			return p
		}
	}
	return nil
}

func (s *Server) createPipeline(w http.ResponseWriter, r *http.Request) {
	var body struct {
		DisplayName string `json:"display_name"`
		Description string `json:"description"`
		Namespace   string `json:"namespace"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: "+err.Error())
		return
	}
	if body.DisplayName == "" {
		writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: pipeline's name cannot be empty")
		return
	}
	if len(body.DisplayName) > 100 {
		writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: pipeline's name is longer than 100 characters")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.findPipeline(body.DisplayName, body.Namespace) != nil {
		s.conflict(w, "pipeline", body.DisplayName)
		return
	}
	writeJSON(w, http.StatusOK, pipelineJSON(s.addPipeline(body.DisplayName, body.Description, body.Namespace)))
}

// upload reads the multipart "uploadfile" part; it answers 400 and returns
// false when there is none or it is not YAML.
func upload(w http.ResponseWriter, r *http.Request) ([]byte, string, bool) {
	f, h, err := r.FormFile("uploadfile")
	if err != nil {
		writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: failed to read pipeline from file: "+err.Error())
		return nil, "", false
	}
	defer f.Close()
	data, _ := io.ReadAll(f)
	docs := documents(data)
	if len(docs) == 0 {
		writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: the pipeline file is not a valid pipeline spec")
		return nil, "", false
	}
	// As backend/src/apiserver/template/v2_template.go checks.
	if info, _ := docs[0]["pipelineInfo"].(map[string]any); docs[0]["root"] != nil && (info == nil || info["name"] == nil || info["name"] == "") {
		writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: invalid v2 pipeline spec: name is empty")
		return nil, "", false
	}
	return data, h.Filename, true
}

func (s *Server) uploadPipeline(w http.ResponseWriter, r *http.Request) {
	data, file, ok := upload(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		name = file
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.findPipeline(name, q.Get("namespace")) != nil {
		s.conflict(w, "pipeline", name)
		return
	}
	// As the API server does, an upload creates the pipeline and a first
	// version with the pipeline's name.
	p := s.addPipeline(name, q.Get("description"), q.Get("namespace"))
	s.addVersion(p.ID, name, q.Get("description"), data)
	writeJSON(w, http.StatusOK, pipelineJSON(p))
}

func (s *Server) uploadVersion(w http.ResponseWriter, r *http.Request) {
	data, file, ok := upload(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		name = file
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pipelineByID(q.Get("pipelineid"))
	if p == nil {
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: pipeline "+q.Get("pipelineid")+" not found")
		return
	}
	for _, v := range s.versions {
		if v.PipelineID == p.ID && v.Name == name {
			s.conflict(w, "pipeline version", name)
			return
		}
	}
	writeJSON(w, http.StatusOK, versionJSON(s.addVersion(p.ID, name, q.Get("description"), data)))
}

func (s *Server) listPipelines(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := r.URL.Query().Get("namespace")
	list(w, r, "pipelines", s.pipelines, func(p *Pipeline) bool { return ns == "" || p.Namespace == ns },
		func(p *Pipeline) map[string]string {
			return map[string]string{"display_name": p.Name, "pipeline_id": p.ID, "description": p.Description}
		}, pipelineJSON)
}

func (s *Server) getPipeline(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pipelineByID(r.PathValue("id"))
	if p == nil {
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: pipeline "+r.PathValue("id")+" not found")
		return
	}
	writeJSON(w, http.StatusOK, pipelineJSON(p))
}

func (s *Server) listVersions(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.PathValue("id")
	if s.pipelineByID(id) == nil {
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: pipeline "+id+" not found")
		return
	}
	list(w, r, "pipeline_versions", s.versions, func(v *Version) bool { return v.PipelineID == id },
		func(v *Version) map[string]string {
			return map[string]string{"display_name": v.Name, "pipeline_version_id": v.ID, "description": v.Description}
		}, versionJSON)
}

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.versions {
		if v.ID == r.PathValue("vid") && v.PipelineID == r.PathValue("id") {
			writeJSON(w, http.StatusOK, versionJSON(v))
			return
		}
	}
	writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: pipeline version "+r.PathValue("vid")+" not found")
}

// --- experiments ---

func (s *Server) createExperiment(w http.ResponseWriter, r *http.Request) {
	var body struct {
		DisplayName string `json:"display_name"`
		Description string `json:"description"`
		Namespace   string `json:"namespace"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.DisplayName == "" {
		writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: experiment must have a non-empty name")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.experiments {
		if e.Name == body.DisplayName && e.Namespace == body.Namespace {
			s.conflict(w, "experiment", body.DisplayName)
			return
		}
	}
	e := &Experiment{ID: s.id(3), Name: body.DisplayName, Description: body.Description, Namespace: body.Namespace, CreatedAt: s.now()}
	s.experiments = append(s.experiments, e)
	writeJSON(w, http.StatusOK, experimentJSON(e))
}

func (s *Server) listExperiments(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := r.URL.Query().Get("namespace")
	list(w, r, "experiments", s.experiments, func(e *Experiment) bool { return ns == "" || e.Namespace == ns },
		func(e *Experiment) map[string]string {
			return map[string]string{"display_name": e.Name, "experiment_id": e.ID}
		},
		experimentJSON)
}

func (s *Server) getExperiment(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.experiments {
		if e.ID == r.PathValue("id") {
			writeJSON(w, http.StatusOK, experimentJSON(e))
			return
		}
	}
	writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: experiment "+r.PathValue("id")+" not found")
}

// --- runs ---

func (s *Server) createRun(w http.ResponseWriter, r *http.Request) {
	var body struct {
		DisplayName  string `json:"display_name"`
		ExperimentID string `json:"experiment_id"`
		Ref          *struct {
			PipelineID string `json:"pipeline_id"`
			VersionID  string `json:"pipeline_version_id"`
		} `json:"pipeline_version_reference"`
		RuntimeConfig struct {
			Parameters   map[string]any `json:"parameters"`
			PipelineRoot string         `json:"pipeline_root"`
		} `json:"runtime_config"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: "+err.Error())
		return
	}
	if body.DisplayName == "" || body.Ref == nil || body.Ref.VersionID == "" {
		writeStatus(w, http.StatusBadRequest, codeInvalidArgument, "Invalid input error: a run needs a display_name and a pipeline_version_reference")
		return
	}
	if s.createDelay > 0 {
		time.Sleep(s.createDelay)
	}
	s.mu.Lock()
	var ver *Version
	for _, v := range s.versions {
		if v.ID == body.Ref.VersionID && (body.Ref.PipelineID == "" || v.PipelineID == body.Ref.PipelineID) {
			ver = v
		}
	}
	if ver == nil {
		s.mu.Unlock()
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: pipeline version "+body.Ref.VersionID+" not found")
		return
	}
	if body.ExperimentID != "" {
		found := false
		for _, e := range s.experiments {
			found = found || e.ID == body.ExperimentID
		}
		if !found {
			s.mu.Unlock()
			writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: experiment "+body.ExperimentID+" not found")
			return
		}
	}
	run := &Run{ID: s.id(4), Name: body.DisplayName, ExperimentID: body.ExperimentID, PipelineID: ver.PipelineID, VersionID: ver.ID,
		Parameters: body.RuntimeConfig.Parameters, PipelineRoot: body.RuntimeConfig.PipelineRoot, States: append([]string(nil), s.defaultStates...), CreatedAt: s.now()}
	if docs := documents(ver.Spec); len(docs) > 0 {
		if root, ok := docs[0]["root"].(map[string]any); ok {
			if dag, ok := root["dag"].(map[string]any); ok {
				if tasks, ok := dag["tasks"].(map[string]any); ok {
					for t := range tasks {
						run.Tasks = append(run.Tasks, t)
					}
					sort.Strings(run.Tasks)
				}
			}
		}
	}
	s.runs = append(s.runs, run)
	out, created := runJSON(run), *run
	s.mu.Unlock()
	if s.onRunCreated != nil {
		s.onRunCreated(created)
	}
	writeJSON(w, http.StatusOK, out)
}

func terminal(state string) bool {
	switch state {
	case "SUCCEEDED", "FAILED", "CANCELED", "SKIPPED":
		return true
	}
	return false
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	run := s.run(r.PathValue("id"))
	if run == nil {
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: run "+r.PathValue("id")+" not found")
		return
	}
	if run.Step < len(run.States)-1 {
		run.Step++
	}
	if terminal(run.State()) && run.FinishedAt.IsZero() {
		run.FinishedAt = s.now()
	}
	writeJSON(w, http.StatusOK, runJSON(run))
}

func (s *Server) runAction(w http.ResponseWriter, r *http.Request) {
	id, action, _ := strings.Cut(r.PathValue("action"), ":")
	s.mu.Lock()
	defer s.mu.Unlock()
	run := s.run(id)
	if run == nil {
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: run "+id+" not found")
		return
	}
	switch action {
	case "terminate":
		if !terminal(run.State()) {
			run.States, run.Step = []string{"CANCELING", "CANCELED"}, 0
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	default:
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not Found")
	}
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp := r.URL.Query().Get("experiment_id")
	list(w, r, "runs", s.runs, func(run *Run) bool { return exp == "" || run.ExperimentID == exp },
		func(run *Run) map[string]string {
			return map[string]string{"display_name": run.Name, "run_id": run.ID, "state": run.State()}
		}, runJSON)
}

func (s *Server) readArtifact(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("name"), ":read")
	if !ok {
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not Found")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run(r.PathValue("id")) == nil {
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: run "+r.PathValue("id")+" not found")
		return
	}
	data, ok := s.artifacts[r.PathValue("id")+"/"+r.PathValue("node")+"/"+name]
	if !ok {
		writeStatus(w, http.StatusNotFound, codeNotFound, "Not found error: artifact "+name+" of node "+r.PathValue("node")+" not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data}) // []byte marshals as base64, as the swagger's format: byte
}
