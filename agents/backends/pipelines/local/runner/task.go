package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/branchml/branchml/agents/backends/pipelines"
)

// ExecutorOutputFile is the file name of a task's ExecutorOutput (the KFP
// SDK's executor writes parameters and artifact metadata there).
const ExecutorOutputFile = "executor_output.json"

// runExecutor runs a task of an executor component: an importer, a
// kubernetes createPvc/deletePvc, or a container.
func (e *execution) runExecutor(ctx context.Context, t *TaskNode, params map[string]any, arts map[string][]*Artifact, p string, env *dagEnv) *result {
	comp := t.Comp
	e.task(p, func(ts *TaskState) {
		ts.State, ts.Kind, ts.StartedAt = pipelines.StateRunning, kindOfExecutor(comp), time.Now().UTC()
		if ts.DisplayName == "" {
			ts.DisplayName = t.DisplayName
		}
	})
	if comp.Importer != nil {
		return e.runImporter(ctx, comp, params, p)
	}
	switch comp.Container.GetImage() {
	case imageCreatePVC:
		return e.createPVC(ctx, comp, p)
	case imageDeletePVC:
		e.r.warnOnce("deletepvc:"+p, "task %s: ignored locally: deletePvc (the local volume is kept)", p)
		return e.succeed(p, nil, nil, "deletePvc ignored locally: the volume is kept")
	}
	return e.runContainer(ctx, t, params, arts, p, env)
}

func kindOfExecutor(c *Component) string {
	if c.Importer != nil {
		return "importer"
	}
	return "container"
}

func (e *execution) succeed(p string, params map[string]any, arts map[string][]*Artifact, note string) *result {
	e.task(p, func(ts *TaskState) {
		ts.State, ts.FinishedAt, ts.Outputs, ts.Artifacts = pipelines.StateSucceeded, time.Now().UTC(), params, uriMap(arts)
		if note != "" {
			ts.Note = note
		}
	})
	if params == nil {
		params = map[string]any{}
	}
	if arts == nil {
		arts = map[string][]*Artifact{}
	}
	return &result{state: pipelines.StateSucceeded, params: params, artifacts: arts}
}

// runImporter imports an artifact by URI (dsl.importer): a local path or
// file:// URI becomes the output artifact "artifact" as it is.
func (e *execution) runImporter(ctx context.Context, comp *Component, params map[string]any, p string) *result {
	imp := comp.Importer
	uri := imp.GetArtifactUri().GetConstant().GetStringValue()
	if rp := imp.GetArtifactUri().GetRuntimeParameter(); rp != "" {
		uri, _ = params[rp].(string)
	}
	if uri == "" {
		for _, v := range params { // the SDK binds a dynamic URI as the importer's only input, "uri"
			if s, ok := v.(string); ok {
				uri = s
			}
		}
	}
	if err := importableURI(uri); err != nil {
		return e.fail(ctx, p, &UnsupportedError{Feature: err.Error(), Task: p})
	}
	if _, err := os.Stat(localPathOfURI(uri)); err != nil {
		return e.fail(ctx, p, fmt.Errorf("importer: %w", err))
	}
	md := map[string]any{}
	if m := imp.GetMetadata(); m != nil {
		md = m.AsMap()
		for k, v := range md {
			md[k] = resolveConstant(v, e.pipeline)
		}
	}
	name := "artifact"
	for n := range comp.OutArtifacts {
		name = n
	}
	a := &Artifact{Name: name, SchemaTitle: imp.GetTypeSchema().GetSchemaTitle(), SchemaVersion: imp.GetTypeSchema().GetSchemaVersion(), URI: uri, Metadata: md}
	return e.succeed(p, nil, map[string][]*Artifact{name: {a}}, "")
}

// createPVC gives a kubernetes CreatePVC task its volume from the storage
// backend: the output parameter "name" is the PVC name.
func (e *execution) createPVC(ctx context.Context, comp *Component, p string) *result {
	cfg := comp.Kube.CreatePVC
	name := pathString(cfg, "pvcName")
	if name == "" {
		name = shortID(e.req.ID) + "-" + pathString(cfg, "pvcNameSuffix")
	}
	if e.r.volumes == nil {
		return e.fail(ctx, p, errors.New("createPvc: the runner has no storage backend for volumes"))
	}
	if _, err := e.r.volumes.VolumePath(ctx, name); err != nil {
		return e.fail(ctx, p, fmt.Errorf("createPvc %s: %w", name, err))
	}
	return e.succeed(p, map[string]any{"name": name}, nil, "")
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// taskInputs applies the component's input definitions to resolved
// values: declared types (a STRING input takes any value as its JSON
// text, as KFP's driver does), defaults for unset inputs, and an error for
// a required input without one.
func taskInputs(comp *Component, params map[string]any, p string) (map[string]any, map[string]string, error) {
	out := map[string]any{}
	types := map[string]string{}
	for n, v := range params {
		out[n] = v
	}
	for n, d := range comp.InParams {
		types[n] = d.Type
		v, ok := out[n]
		if !ok || v == nil {
			if d.Default != nil {
				out[n] = d.Default
				continue
			}
			if !d.Optional {
				return nil, nil, &ParamError{Name: n, Problem: "task " + p + ": neither a value nor a default for this required input"}
			}
			delete(out, n)
			continue
		}
		if d.Type == "STRING" {
			if _, isStr := v.(string); !isStr {
				out[n] = Format("", v)
			}
			continue
		}
		if d.Type == "TASK_FINAL_STATUS" {
			continue
		}
		cv, err := coerce(d.Type, v)
		if err != nil {
			return nil, nil, &ParamError{Name: n, Problem: "task " + p + ": " + err.Error()}
		}
		out[n] = cv
	}
	resolveSelfReferences(out, types)
	return out, types, nil
}

func (e *execution) runContainer(ctx context.Context, t *TaskNode, rawParams map[string]any, arts map[string][]*Artifact, p string, env *dagEnv) *result {
	comp := t.Comp
	tdir := TaskDir(e.dir, p)
	logPath := filepath.Join(tdir, "log")
	e.task(p, func(ts *TaskState) { ts.Log = logPath })
	fail := func(err error) *result {
		r := e.fail(ctx, p, err)
		if r.state == pipelines.StateFailed {
			tail := Tail(logPath, DefaultLogTailLines)
			e.task(p, func(ts *TaskState) { ts.LogTail = tail })
		}
		return r
	}
	params, types, err := taskInputs(comp, rawParams, p)
	if err != nil {
		return fail(err)
	}
	for _, d := range []string{filepath.Join(tdir, "outputs", "parameters"), filepath.Join(tdir, "outputs", "artifacts")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
	}
	io := &taskIO{params: params, paramTypes: types, inArtifacts: arts, outParams: map[string]string{}, outArtifacts: map[string]*Artifact{},
		outputFile: filepath.Join(tdir, ExecutorOutputFile), pipeline: map[string]string{}}
	for k, v := range e.pipeline {
		io.pipeline[k] = v
	}
	io.pipeline["{{$.pipeline_task_name}}"] = t.Name
	io.pipeline["{{$.pipeline_task_uuid}}"] = containerID(e.req.ID, p)
	for n := range comp.OutParams {
		io.outParams[n] = OutputParameterPath(e.dir, p, n)
	}
	for n, d := range comp.OutArtifacts {
		io.outArtifacts[n] = &Artifact{Name: n, SchemaTitle: d.SchemaTitle, SchemaVersion: d.SchemaVersion, URI: OutputArtifactPath(e.dir, p, n), Metadata: map[string]any{}}
	}
	in, err := io.executorInput()
	if err != nil {
		return fail(err)
	}
	if io.executorJSON, err = marshalExecutorInput(in); err != nil {
		return fail(err)
	}
	if err := checkArgs(append(append([]string{}, comp.Container.GetCommand()...), comp.Container.GetArgs()...)); err != nil {
		return fail(err)
	}
	// A dead runner's finished task keeps its result.
	if prev, ok := e.prev[p]; ok && artifactsExist(prev.Artifacts) {
		return e.succeed(p, prev.Outputs, prev.Artifacts, "kept from the interrupted run")
	}
	img, err := e.r.images.Ensure(ctx, comp.Container.GetImage())
	if err != nil {
		return fail(err)
	}
	key := ""
	if t.Cache && e.r.cacheDir != "" {
		key = cacheKey(t, comp, img.Digest, params, arts)
		if hit := e.r.cacheLookup(key); hit != nil {
			r := e.succeed(p, hit.Params, hit.Artifacts, "cached: reused task "+hit.Task+" of run "+hit.RunID)
			e.task(p, func(ts *TaskState) { ts.Cached, ts.CacheKey = true, key })
			return r
		}
	}
	spec, err := e.launchSpec(ctx, t, img, io, p, tdir, env)
	if err != nil {
		return fail(err)
	}
	for _, ig := range spec.ignored {
		e.r.logf("task %s: ignored locally: %s", p, ig)
	}
	if len(spec.ignored) > 0 {
		e.task(p, func(ts *TaskState) { ts.Note = "ignored locally: " + strings.Join(spec.ignored, ", ") })
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	spec.log = logf
	l, err := e.r.getLauncher()
	if err != nil {
		return fail(err)
	}
	select { // a slot of the runner's parallelism for all attempts
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	defer func() { <-e.slots }()
	e.task(p, func(ts *TaskState) { ts.StartedAt = time.Now().UTC() })
	var lastErr error
	for attempt := 0; attempt <= t.Retry.MaxRetries; attempt++ {
		if attempt > 0 {
			fmt.Fprintf(logf, "--- retry %d of %d after %v: %v\n", attempt, t.Retry.MaxRetries, t.Retry.Delay(attempt), lastErr)
			select {
			case <-ctx.Done():
				return fail(ctx.Err())
			case <-time.After(t.Retry.Delay(attempt)):
			}
		}
		if err := resetOutputs(tdir); err != nil {
			return fail(err)
		}
		e.task(p, func(ts *TaskState) { ts.Attempts = attempt + 1 })
		spec.id = fmt.Sprintf("%s-%d", containerID(e.req.ID, p), attempt)
		if e.st.Resumed > 0 {
			// A run continued after its runner died: names of their own, so
			// that what the dead runner's reaper still kills, deletes or
			// unmounts (its container, its rootfs) is never this attempt's.
			spec.id = fmt.Sprintf("%s-r%d-%d", containerID(e.req.ID, p), e.st.Resumed, attempt)
		}
		e.task(p, func(ts *TaskState) { ts.Container = spec.id })
		code, err := e.launch(ctx, l, spec)
		e.task(p, func(ts *TaskState) { ts.ExitCode = code })
		if err == nil {
			lastErr = nil
			break
		}
		lastErr = err
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
	}
	if lastErr != nil {
		return fail(lastErr)
	}
	outParams, outArts, err := collectOutputs(comp, io)
	if err != nil {
		return fail(err)
	}
	if key != "" {
		e.r.cacheStore(key, &cacheEntry{RunID: e.req.ID, Task: p, Params: outParams, Artifacts: outArts})
		e.task(p, func(ts *TaskState) { ts.CacheKey = key })
	}
	return e.succeed(p, outParams, outArts, "")
}

// launch runs one attempt with the task's deadline.
func (e *execution) launch(ctx context.Context, l launcher, spec *launchSpec) (int, error) {
	if spec.deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.deadline)
		defer cancel()
	}
	return l.launch(ctx, spec)
}

func artifactsExist(arts map[string][]*Artifact) bool {
	for _, l := range arts {
		for _, a := range l {
			if _, err := os.Stat(a.Path()); err != nil {
				return false
			}
		}
	}
	return true
}

// resetOutputs empties a task's outputs before an attempt.
func resetOutputs(tdir string) error {
	for _, d := range []string{"parameters", "artifacts"} {
		p := filepath.Join(tdir, "outputs", d)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if err := os.MkdirAll(p, 0o777); err != nil {
			return err
		}
	}
	if err := os.Remove(filepath.Join(tdir, ExecutorOutputFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// collectOutputs reads a finished task's outputs as KFP's launcher does:
// executor_output.json first (parameters and artifact metadata, as the KFP
// SDK's executor writes them), then each output parameter's file.
func collectOutputs(comp *Component, io *taskIO) (map[string]any, map[string][]*Artifact, error) {
	params := map[string]any{}
	arts := map[string][]*Artifact{}
	for n, a := range io.outArtifacts {
		cp := *a
		arts[n] = []*Artifact{&cp}
	}
	if raw, err := os.ReadFile(io.outputFile); err == nil {
		var out pipelinespec.ExecutorOutput
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &out); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", ExecutorOutputFile, err)
		}
		for n, v := range out.GetParameterValues() {
			if d := comp.OutParams[n]; d != nil {
				cv, err := coerce(d.Type, v.AsInterface())
				if err != nil {
					return nil, nil, fmt.Errorf("%s: output parameter %q: %w", ExecutorOutputFile, n, err)
				}
				params[n] = cv
			}
		}
		for n, al := range out.GetArtifacts() {
			cur, ok := arts[n]
			if !ok {
				continue
			}
			var list []*Artifact
			for i, ra := range al.GetArtifacts() {
				a := *cur[0]
				if i > 0 {
					a.URI = fmt.Sprintf("%s-%d", cur[0].URI, i)
				}
				if ra.GetUri() != "" {
					a.URI = ra.GetUri()
				}
				if ra.GetMetadata() != nil {
					a.Metadata = ra.GetMetadata().AsMap()
				}
				list = append(list, &a)
			}
			if len(list) > 0 {
				arts[n] = list
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	names := make([]string, 0, len(io.outParams))
	for n := range io.outParams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := params[n]; ok {
			continue
		}
		raw, err := os.ReadFile(io.outParams[n])
		if err != nil {
			return nil, nil, fmt.Errorf("output parameter %q: the task wrote no %s", n, io.outParams[n])
		}
		v, err := parseOutput(comp.OutParams[n].Type, raw)
		if err != nil {
			return nil, nil, fmt.Errorf("output parameter %q: %w", n, err)
		}
		params[n] = v
	}
	return params, arts, nil
}

// cacheEntry is a cached task result (<cacheDir>/<key>.json).
type cacheEntry struct {
	RunID     string                 `json:"runId"`
	Task      string                 `json:"task"`
	Params    map[string]any         `json:"parameters,omitempty"`
	Artifacts map[string][]*Artifact `json:"artifacts,omitempty"`
}

func (r *Runner) cacheLookup(key string) *cacheEntry {
	raw, err := os.ReadFile(filepath.Join(r.cacheDir, key+".json"))
	if err != nil {
		return nil
	}
	var c cacheEntry
	if json.Unmarshal(raw, &c) != nil {
		return nil
	}
	for _, l := range c.Artifacts { // the producing run must still be there (an output may never have been written)
		for _, a := range l {
			if _, err := os.Stat(filepath.Dir(a.Path())); err != nil {
				return nil
			}
		}
	}
	return &c
}

func (r *Runner) cacheStore(key string, c *cacheEntry) {
	if err := os.MkdirAll(r.cacheDir, 0o755); err != nil {
		r.warnOnce("cache", "task cache %s: %v", r.cacheDir, err)
		return
	}
	b, _ := json.Marshal(c)
	tmp := filepath.Join(r.cacheDir, "."+key+".tmp")
	if os.WriteFile(tmp, b, 0o644) == nil {
		_ = os.Rename(tmp, filepath.Join(r.cacheDir, key+".json"))
	}
}

// Tail returns the last n lines of the file at p (at most 8 KiB); "" when
// it cannot be read.
func Tail(p string, n int) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxTail = 8 << 10
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-maxTail, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
