package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/internal/imagecache"
)

// Images provides the unpacked file system of an image reference;
// *imagecache.Cache is the real implementation.
type Images interface {
	Ensure(ctx context.Context, ref string) (*imagecache.Image, error)
}

var _ Images = (*imagecache.Cache)(nil)

// Volumes resolves a PVC name to the local directory of that volume (the
// storage backend's), creating it when the backend provides volumes on
// demand. pvcMount and createPvc use it.
type Volumes interface {
	VolumePath(ctx context.Context, name string) (string, error)
}

// VolumesFunc adapts a function to Volumes.
type VolumesFunc func(ctx context.Context, name string) (string, error)

// VolumePath calls f.
func (f VolumesFunc) VolumePath(ctx context.Context, name string) (string, error) {
	return f(ctx, name)
}

// Isolation modes of tasks.
const (
	// IsolationContainer runs each task with an OCI runtime (runc or crun) on
	// its image's file system: the default.
	IsolationContainer = "container"
	// IsolationProcess runs each task as a host process started from the
	// image's files: a fallback for machines without a runtime.
	IsolationProcess = "process"
)

// Defaults of a Runner.
var (
	DefaultPollInterval = 100 * time.Millisecond
	DefaultLogTailLines = 30
)

// Option configures a Runner.
type Option func(*Runner)

// WithParallelism bounds how many tasks run at once (config
// backends.pipelines.parallelism); n <= 0 means the number of CPUs.
func WithParallelism(n int) Option { return func(r *Runner) { r.parallelism = n } }

// WithPollInterval sets how often the runner looks for a cancel request.
func WithPollInterval(d time.Duration) Option { return func(r *Runner) { r.poll = d } }

// WithEnv adds NAME=value entries to every task's environment (after the
// image's and before the task's own).
func WithEnv(env ...string) Option { return func(r *Runner) { r.env = append(r.env, env...) } }

// WithIsolation chooses IsolationContainer (default) or IsolationProcess.
func WithIsolation(mode string) Option { return func(r *Runner) { r.isolation = mode } }

// WithRuntime names the OCI runtime binary ("runc", "crun" or a path); ""
// picks crun where it works on this machine's cgroups, else runc.
func WithRuntime(bin string) Option { return func(r *Runner) { r.runtime = bin } }

// WithVolumes gives pvcMount and createPvc their volumes.
func WithVolumes(v Volumes) Option { return func(r *Runner) { r.volumes = v } }

// WithSecretsDir is the local secrets directory of secretAsEnv,
// configMapAsEnv and their volume forms: <dir>/secrets/<name>/<key> and
// <dir>/configmaps/<name>/<key>.
func WithSecretsDir(dir string) Option { return func(r *Runner) { r.secretsDir = dir } }

// WithCacheDir enables KFP-style caching of task results in dir ("": off).
func WithCacheDir(dir string) Option { return func(r *Runner) { r.cacheDir = dir } }

// WithLogf receives the runner's warnings and notes (ignored platform
// settings, fallbacks), each once.
func WithLogf(f func(format string, args ...any)) Option { return func(r *Runner) { r.logf = f } }

// WithProgress receives a copy of a task's state whenever it starts or ends.
func WithProgress(f func(TaskState)) Option { return func(r *Runner) { r.progress = f } }

// Runner executes runs prepared in run directories.
type Runner struct {
	images      Images
	parallelism int
	poll        time.Duration
	env         []string
	isolation   string
	runtime     string
	volumes     Volumes
	secretsDir  string
	cacheDir    string
	logf        func(format string, args ...any)
	progress    func(TaskState)

	launchOnce sync.Once
	launcher   launcher
	launchErr  error
	warned     sync.Map
}

// New returns a runner that takes task images from images.
func New(images Images, opts ...Option) *Runner {
	r := &Runner{images: images, poll: DefaultPollInterval, isolation: IsolationContainer, logf: func(string, ...any) {}}
	for _, o := range opts {
		o(r)
	}
	if r.parallelism <= 0 {
		r.parallelism = runtime.NumCPU()
	}
	return r
}

// Isolation is the runner's isolation mode.
func (r *Runner) Isolation() string { return r.isolation }

func (r *Runner) warnOnce(key, format string, args ...any) {
	if _, loaded := r.warned.LoadOrStore(key, true); !loaded {
		r.logf(format, args...)
	}
}

// result is what a task left for its consumers.
type result struct {
	state     string
	params    map[string]any
	artifacts map[string][]*Artifact
}

// dagEnv is the DAG a task runs in: its scope and its tasks' results so far
// (platform settings such as pvcNameParameter resolve there).
type dagEnv struct {
	sc      *scope
	results map[string]*result
}

// scope is one DAG execution's inputs.
type scope struct {
	params    map[string]any
	artifacts map[string][]*Artifact
}

// execution is one execution of a run directory.
type execution struct {
	r    *Runner
	dir  string
	plan *Plan
	req  Request

	mu       sync.Mutex
	st       *State
	index    map[string]int
	prev     map[string]TaskState // a dead runner's finished tasks (resume)
	failures []string
	pipeline map[string]string
	slots    chan struct{}
	tasks    atomic.Int64
}

// Exec executes the run prepared in dir and returns its final state:
// SUCCEEDED, FAILED (a task failed, or the spec or parameters are wrong:
// State.Error says why; tasks after a failed one are SKIPPED) or CANCELED
// (ctx was cancelled or RequestCancel was called: the run passes through
// CANCELING and its tasks are killed). A run left unfinished by a runner that
// died is continued: its finished tasks keep their results, the others run
// again. The error is only for a run directory that cannot be read or written.
func (r *Runner) Exec(ctx context.Context, dir string) (*State, error) {
	var req Request
	raw, err := os.ReadFile(filepath.Join(dir, RequestFile))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("run request %s: %w", dir, err)
	}
	st, err := readStateFile(dir)
	if err != nil {
		return nil, err
	}
	if pipelines.Terminal(st.State) {
		return st, nil
	}
	e := &execution{r: r, dir: dir, req: req, st: st, index: map[string]int{}, prev: map[string]TaskState{}, slots: make(chan struct{}, r.parallelism)}
	for _, t := range st.Tasks {
		if t.State == pipelines.StateSucceeded {
			e.prev[t.Name] = t
		}
	}
	if st.PID != 0 && st.PID != os.Getpid() {
		e.st.Resumed++
		cleanupDead(st)
	}
	e.st.PID, e.st.StartedAt, e.st.Error = os.Getpid(), time.Now().UTC(), ""
	e.pipeline = map[string]string{
		"{{$.pipeline_job_name}}": req.DisplayName, "{{$.pipeline_job_resource_name}}": req.ID, "{{$.pipeline_job_uuid}}": req.ID,
		"{{$.pipeline_root}}": filepath.Join(dir, TasksDir), "{{$.pipeline_job_create_time_utc}}": req.CreatedAt.UTC().Format(time.RFC3339),
		"{{$.pipeline_job_schedule_time_utc}}": req.CreatedAt.UTC().Format(time.RFC3339),
	}
	spec, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		return nil, err
	}
	plan, err := Compile(spec)
	if err == nil {
		e.plan = plan
		var params map[string]any
		params, err = plan.ResolveParams(req.Parameters)
		e.st.Parameters = params
	}
	if err != nil {
		e.finish(pipelines.StateFailed, err.Error())
		return e.snapshot(), e.persistFinal()
	}
	e.st.Tasks = []TaskState{}
	for _, t := range plan.Root.Tasks {
		e.index[t.Name] = len(e.st.Tasks)
		e.st.Tasks = append(e.st.Tasks, TaskState{Name: t.Name, DisplayName: t.DisplayName, Kind: kindOf(t), State: pipelines.StatePending})
	}
	e.st.State = pipelines.StateRunning
	if err := e.persist(); err != nil {
		return nil, err
	}
	return e.run(ctx)
}

func (e *execution) snapshot() *State {
	e.mu.Lock()
	defer e.mu.Unlock()
	cp := *e.st
	cp.Tasks = append([]TaskState(nil), e.st.Tasks...)
	return &cp
}

// persist writes state.json atomically (rename) without a sync: readers
// never see half a file; the final state is synced (persistFinal).
func (e *execution) persist() error {
	e.mu.Lock()
	b, err := json.MarshalIndent(e.st, "", "  ")
	e.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := filepath.Join(e.dir, "."+StateFile+".tmp-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(e.dir, StateFile))
}

func (e *execution) persistFinal() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return atomicfile.WriteJSON(filepath.Join(e.dir, StateFile), e.st)
}

// task updates task path's state (registering it when new) and persists.
func (e *execution) task(path string, f func(*TaskState)) {
	e.mu.Lock()
	i, ok := e.index[path]
	if !ok {
		e.st.Tasks = append(e.st.Tasks, TaskState{Name: path, State: pipelines.StatePending})
		i = len(e.st.Tasks) - 1
		e.index[path] = i
	}
	before := e.st.Tasks[i].State
	f(&e.st.Tasks[i])
	cp := e.st.Tasks[i]
	e.mu.Unlock()
	_ = e.persist()
	if e.r.progress != nil && cp.State != before && cp.State != pipelines.StatePending {
		e.r.progress(cp)
	}
}

func (e *execution) finish(state, msg string) {
	e.mu.Lock()
	e.st.State, e.st.Error, e.st.FinishedAt = state, msg, time.Now().UTC()
	e.mu.Unlock()
}

func (e *execution) run(ctx context.Context) (*State, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() { // the cancel-request watcher
		defer close(watchDone)
		t := time.NewTicker(e.r.poll)
		defer t.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-runCtx.Done():
				e.canceling()
				return
			case <-t.C:
				if _, err := os.Stat(filepath.Join(e.dir, CancelFile)); err == nil {
					e.canceling()
					cancel()
					return
				}
			}
		}
	}()
	res := e.runDAG(runCtx, e.plan.Root, &scope{params: e.st.Parameters, artifacts: map[string][]*Artifact{}}, "")
	if l, err := e.r.getLauncher(); err == nil {
		if d, ok := l.(interface{ drain() }); ok {
			d.drain()
		}
	}
	close(stopWatch)
	<-watchDone
	e.mu.Lock()
	failures := append([]string(nil), e.failures...)
	e.mu.Unlock()
	switch {
	case runCtx.Err() != nil:
		e.finish(pipelines.StateCanceled, "run cancelled")
	case res.state == pipelines.StateFailed && len(failures) > 0:
		e.finish(pipelines.StateFailed, fmt.Sprintf("task %s failed: %s", failures[0], e.taskError(failures[0])))
	case res.state == pipelines.StateFailed:
		e.finish(pipelines.StateFailed, "the pipeline failed")
	default:
		e.finish(pipelines.StateSucceeded, "")
	}
	_ = os.Remove(filepath.Join(e.dir, CancelFile))
	return e.snapshot(), e.persistFinal()
}

// canceling records that the run is being cancelled.
func (e *execution) canceling() {
	e.mu.Lock()
	if e.st.State == pipelines.StateRunning {
		e.st.State = pipelines.StateCanceling
	}
	e.mu.Unlock()
	_ = e.persist()
}

func (e *execution) taskError(path string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i, ok := e.index[path]; ok {
		return e.st.Tasks[i].Error
	}
	return ""
}

// fail records task path FAILED (or CANCELED when ctx is done) with err.
func (e *execution) fail(ctx context.Context, path string, err error) *result {
	state := pipelines.StateFailed
	if ctx.Err() != nil {
		state = pipelines.StateCanceled
	}
	e.task(path, func(ts *TaskState) {
		ts.State, ts.Error, ts.FinishedAt = state, err.Error(), time.Now().UTC()
	})
	if state == pipelines.StateFailed {
		e.mu.Lock()
		e.failures = append(e.failures, path)
		e.mu.Unlock()
	}
	return &result{state: state}
}

func (e *execution) countTask(path string) error {
	if n := e.tasks.Add(1); n > MaxTasks {
		return fmt.Errorf("the run has more than %d task executions, the local runner's limit", MaxTasks)
	}
	return nil
}

// runDAG runs a DAG component's tasks in dependency order, independent ones
// at once, and returns its state and outputs (dag.outputs).
func (e *execution) runDAG(ctx context.Context, comp *Component, sc *scope, prefix string) *result {
	results := map[string]*result{}
	for _, t := range comp.Tasks {
		p := join(prefix, t.Name)
		e.task(p, func(ts *TaskState) { ts.DisplayName, ts.Kind = t.DisplayName, kindOf(t) })
	}
	type done struct {
		name string
		res  *result
	}
	events := make(chan done)
	started := map[string]bool{}
	running := 0
	for {
		progress := true
		for progress {
			progress = false
			for _, t := range comp.Tasks {
				if started[t.Name] || !depsFinal(t, results) {
					continue
				}
				started[t.Name] = true
				p := join(prefix, t.Name)
				if ctx.Err() != nil || (!t.AllCompleted && !depsSucceeded(t, results)) {
					results[t.Name] = &result{state: pipelines.StateSkipped}
					e.task(p, func(ts *TaskState) { ts.State = pipelines.StateSkipped })
					progress = true
					continue
				}
				running++
				deps := make(map[string]*result, len(t.Deps))
				for _, d := range t.Deps {
					deps[d] = results[d]
				}
				go func(t *TaskNode) { events <- done{t.Name, e.runNode(ctx, t, sc, deps, prefix)} }(t)
			}
		}
		if running == 0 {
			break
		}
		ev := <-events
		running--
		results[ev.name] = ev.res
	}
	out := &result{state: pipelines.StateSucceeded, params: map[string]any{}, artifacts: map[string][]*Artifact{}}
	for _, t := range comp.Tasks {
		switch results[t.Name].state {
		case pipelines.StateFailed:
			out.state = pipelines.StateFailed
		case pipelines.StateCanceled:
			if out.state != pipelines.StateFailed {
				out.state = pipelines.StateCanceled
			}
		}
	}
	if out.state != pipelines.StateSucceeded {
		return out
	}
	outs := comp.Spec.GetDag().GetOutputs()
	for name, ps := range outs.GetParameters() {
		sels := ps.GetValueFromOneof().GetParameterSelectors()
		if v := ps.GetValueFromParameter(); v != nil {
			sels = []*pipelinespec.DagOutputsSpec_ParameterSelectorSpec{v}
		}
		for _, s := range sels {
			r := results[s.GetProducerSubtask()]
			if r == nil || r.state != pipelines.StateSucceeded {
				continue
			}
			if v, ok := r.params[s.GetOutputParameterKey()]; ok {
				out.params[name] = v
				break
			}
		}
	}
	for name, as := range outs.GetArtifacts() {
		for _, s := range as.GetArtifactSelectors() {
			r := results[s.GetProducerSubtask()]
			if r == nil || r.state != pipelines.StateSucceeded {
				continue
			}
			if a, ok := r.artifacts[s.GetOutputArtifactKey()]; ok {
				out.artifacts[name] = a
				break
			}
		}
	}
	return out
}

func kindOf(t *TaskNode) string {
	switch {
	case t.Spec.GetParameterIterator() != nil || t.Spec.GetArtifactIterator() != nil:
		return "loop"
	case t.Comp.IsDAG():
		return "dag"
	case t.Comp.Importer != nil:
		return "importer"
	}
	return "container"
}

func depsFinal(t *TaskNode, results map[string]*result) bool {
	for _, d := range t.Deps {
		if results[d] == nil {
			return false
		}
	}
	return true
}

func depsSucceeded(t *TaskNode, results map[string]*result) bool {
	for _, d := range t.Deps {
		if results[d].state != pipelines.StateSucceeded {
			return false
		}
	}
	return true
}

// runNode resolves a task's inputs in its DAG, evaluates its condition and
// runs it: an iterator, a nested DAG, an importer or a container.
func (e *execution) runNode(ctx context.Context, t *TaskNode, sc *scope, results map[string]*result, prefix string) *result {
	p := join(prefix, t.Name)
	if err := e.countTask(p); err != nil {
		return e.fail(ctx, p, err)
	}
	e.task(p, func(ts *TaskState) { ts.State, ts.StartedAt = pipelines.StateRunning, time.Now().UTC() })
	params, arts, err := e.resolveInputs(t, sc, results)
	if err != nil {
		return e.fail(ctx, p, err)
	}
	if t.Condition != nil {
		io := &taskIO{params: params, inArtifacts: arts}
		in, err := io.executorInput()
		if err == nil {
			var ok bool
			ok, err = t.Condition.Eval(in)
			if err == nil && !ok {
				e.task(p, func(ts *TaskState) {
					ts.State, ts.FinishedAt, ts.Note = pipelines.StateSkipped, time.Now().UTC(), "condition "+t.Condition.Expr+" is false"
				})
				return &result{state: pipelines.StateSkipped}
			}
		}
		if err != nil {
			return e.fail(ctx, p, err)
		}
	}
	var res *result
	switch {
	case t.Spec.GetParameterIterator() != nil || t.Spec.GetArtifactIterator() != nil:
		res = e.runLoop(ctx, t, params, arts, p, &dagEnv{sc: sc, results: results})
	case t.Comp.IsDAG():
		res = e.runDAG(ctx, t.Comp, e.dagScope(t.Comp, params, arts), p)
	default:
		return e.runExecutor(ctx, t, params, arts, p, &dagEnv{sc: sc, results: results})
	}
	return e.finishComposite(ctx, p, res)
}

// finishComposite records the state of a DAG or loop task from its children.
func (e *execution) finishComposite(ctx context.Context, p string, res *result) *result {
	e.task(p, func(ts *TaskState) {
		ts.State, ts.FinishedAt = res.state, time.Now().UTC()
		if res.state == pipelines.StateSucceeded {
			ts.Outputs, ts.Artifacts = res.params, uriMap(res.artifacts)
		}
	})
	return res
}

// dagScope is the scope of a nested DAG: its inputs, with the defaults of
// optional inputs that got no value (KFP's DAG driver does the same).
func (e *execution) dagScope(comp *Component, params map[string]any, arts map[string][]*Artifact) *scope {
	ps := map[string]any{}
	for k, v := range params {
		ps[k] = v
	}
	for n, d := range comp.InParams {
		if _, ok := ps[n]; !ok && d.Default != nil {
			ps[n] = d.Default
		}
	}
	return &scope{params: ps, artifacts: arts}
}

// resolveInputs resolves a task's input parameters and artifacts in its
// DAG. An input from an upstream task that did not succeed is left out for
// a task that runs on completion (ignore_upstream_failure): the
// component's default applies.
func (e *execution) resolveInputs(t *TaskNode, sc *scope, results map[string]*result) (map[string]any, map[string][]*Artifact, error) {
	params := map[string]any{}
	names := make([]string, 0, len(t.Spec.GetInputs().GetParameters()))
	for n := range t.Spec.GetInputs().GetParameters() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		ps := t.Spec.GetInputs().GetParameters()[name]
		v, ok, err := e.resolveParam(ps, sc, results, t.AllCompleted)
		if err != nil {
			return nil, nil, fmt.Errorf("input %q: %w", name, err)
		}
		if !ok {
			continue
		}
		if s := t.Selectors[name]; s != nil {
			if v, err = s.Select(v); err != nil {
				return nil, nil, fmt.Errorf("input %q: %w", name, err)
			}
		}
		params[name] = v
	}
	arts := map[string][]*Artifact{}
	for name, as := range t.Spec.GetInputs().GetArtifacts() {
		switch {
		case as.GetComponentInputArtifact() != "":
			if a, ok := sc.artifacts[as.GetComponentInputArtifact()]; ok {
				arts[name] = a
			}
		case as.GetTaskOutputArtifact() != nil:
			toa := as.GetTaskOutputArtifact()
			r := results[toa.GetProducerTask()]
			if r == nil || r.state != pipelines.StateSucceeded {
				if t.AllCompleted {
					continue
				}
				return nil, nil, fmt.Errorf("input artifact %q: task %s did not succeed", name, toa.GetProducerTask())
			}
			a, ok := r.artifacts[toa.GetOutputArtifactKey()]
			if !ok {
				return nil, nil, fmt.Errorf("input artifact %q: task %s produced no artifact %q (a dsl.OneOf with no branch taken?)", name, toa.GetProducerTask(), toa.GetOutputArtifactKey())
			}
			arts[name] = a
		}
	}
	return params, arts, nil
}

// resolveParam resolves one input parameter spec in sc; ok is false when
// it has no value (an optional input left unset, or an upstream output a
// completion-triggered task does without).
func (e *execution) resolveParam(ps *pipelinespec.TaskInputsSpec_InputParameterSpec, sc *scope, results map[string]*result, allCompleted bool) (any, bool, error) {
	switch {
	case ps.GetComponentInputParameter() != "":
		v, ok := sc.params[ps.GetComponentInputParameter()]
		return v, ok && v != nil, nil
	case ps.GetTaskOutputParameter() != nil:
		top := ps.GetTaskOutputParameter()
		r := results[top.GetProducerTask()]
		if r == nil || r.state != pipelines.StateSucceeded {
			if allCompleted {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("task %s did not succeed", top.GetProducerTask())
		}
		v, ok := r.params[top.GetOutputParameterKey()]
		if !ok {
			return nil, false, fmt.Errorf("task %s wrote no output parameter %q (to its {{$.outputs.parameters['%s'].output_file}}, or a dsl.OneOf took no branch)", top.GetProducerTask(), top.GetOutputParameterKey(), top.GetOutputParameterKey())
		}
		return v, true, nil
	case ps.GetRuntimeValue() != nil:
		rv := ps.GetRuntimeValue()
		switch {
		case rv.GetConstant() != nil:
			return resolveConstant(rv.GetConstant().AsInterface(), e.pipeline), true, nil
		case rv.GetConstantValue() != nil:
			switch x := rv.GetConstantValue().GetValue().(type) {
			case *pipelinespec.Value_IntValue:
				return float64(x.IntValue), true, nil
			case *pipelinespec.Value_DoubleValue:
				return x.DoubleValue, true, nil
			case *pipelinespec.Value_StringValue:
				return resolveConstant(x.StringValue, e.pipeline), true, nil
			}
		case rv.GetRuntimeParameter() != "":
			v, ok := sc.params[rv.GetRuntimeParameter()]
			return v, ok && v != nil, nil
		}
		return nil, false, errors.New("empty runtimeValue")
	case ps.GetTaskFinalStatus() != nil:
		prod := ps.GetTaskFinalStatus().GetProducerTask()
		r := results[prod]
		state := pipelines.StateSucceeded
		if r != nil {
			state = r.state
		}
		fs := map[string]any{"state": state, "pipelineJobResourceName": e.req.ID, "pipelineTaskName": prod, "error": map[string]any{}}
		if state == pipelines.StateFailed {
			fs["error"] = map[string]any{"code": float64(1), "message": "task " + prod + " failed"}
		}
		return fs, true, nil
	}
	return nil, false, errors.New("no parameter source")
}

// runLoop runs the iterations of a ParallelFor task (parameterIterator over
// a list, a task output or raw JSON; artifactIterator over a list of
// artifacts), at most iteratorPolicy.parallelismLimit at once, and collects
// each output into a list in iteration order (dsl.Collected).
func (e *execution) runLoop(ctx context.Context, t *TaskNode, params map[string]any, arts map[string][]*Artifact, p string, env *dagEnv) *result {
	var n int
	var iterScope func(i int) *scope
	if it := t.Spec.GetParameterIterator(); it != nil {
		var items []any
		if raw := it.GetItems().GetRaw(); raw != "" {
			if err := json.Unmarshal([]byte(raw), &items); err != nil {
				return e.fail(ctx, p, fmt.Errorf("parameterIterator raw items: %w", err))
			}
		} else {
			v := params[it.GetItems().GetInputParameter()]
			if s, ok := v.(string); ok {
				if err := json.Unmarshal([]byte(s), &items); err != nil {
					return e.fail(ctx, p, fmt.Errorf("parameterIterator items %q: the string is not a JSON list: %w", it.GetItems().GetInputParameter(), err))
				}
			} else if l, ok := v.([]any); ok {
				items = l
			} else {
				return e.fail(ctx, p, fmt.Errorf("parameterIterator items %q: %s cannot be iterated", it.GetItems().GetInputParameter(), describe(v)))
			}
		}
		n = len(items)
		iterScope = func(i int) *scope {
			ps := map[string]any{}
			for k, v := range params {
				if k != it.GetItems().GetInputParameter() {
					ps[k] = v
				}
			}
			ps[it.GetItemInput()] = items[i]
			return &scope{params: ps, artifacts: arts}
		}
	} else {
		it := t.Spec.GetArtifactIterator()
		items := arts[it.GetItems().GetInputArtifact()]
		n = len(items)
		iterScope = func(i int) *scope {
			as := map[string][]*Artifact{}
			for k, v := range arts {
				if k != it.GetItems().GetInputArtifact() {
					as[k] = v
				}
			}
			as[it.GetItemInput()] = []*Artifact{items[i]}
			return &scope{params: params, artifacts: as}
		}
	}
	if n > MaxIterations {
		return e.fail(ctx, p, fmt.Errorf("%d items to iterate, more than the local runner's limit of %d per loop", n, MaxIterations))
	}
	e.task(p, func(ts *TaskState) { ts.Iterations = n })
	limit := int(t.Spec.GetIteratorPolicy().GetParallelismLimit())
	if limit <= 0 || limit > e.r.parallelism*4 {
		limit = max(e.r.parallelism*4, 1)
	}
	sem := make(chan struct{}, limit)
	results := make([]*result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("%s/iteration-%d", p, i)
		e.task(ip, func(ts *TaskState) {
			ts.DisplayName, ts.Kind = fmt.Sprintf("%s (iteration %d)", t.DisplayName, i), "iteration"
		})
	}
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("%s/iteration-%d", p, i)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			results[i] = &result{state: pipelines.StateSkipped}
			e.task(ip, func(ts *TaskState) { ts.State = pipelines.StateSkipped })
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			sc := iterScope(i)
			if err := e.countTask(ip); err != nil {
				results[i] = e.fail(ctx, ip, err)
				return
			}
			if t.Comp.IsDAG() {
				e.task(ip, func(ts *TaskState) { ts.State, ts.StartedAt = pipelines.StateRunning, time.Now().UTC() })
				results[i] = e.finishComposite(ctx, ip, e.runDAG(ctx, t.Comp, e.dagScope(t.Comp, sc.params, sc.artifacts), ip))
				return
			}
			results[i] = e.runExecutor(ctx, t, sc.params, sc.artifacts, ip, env)
		}(i)
	}
	wg.Wait()
	out := &result{state: pipelines.StateSucceeded, params: map[string]any{}, artifacts: map[string][]*Artifact{}}
	for _, r := range results {
		if r.state == pipelines.StateFailed {
			out.state = pipelines.StateFailed
		} else if r.state == pipelines.StateCanceled && out.state != pipelines.StateFailed {
			out.state = pipelines.StateCanceled
		}
	}
	if out.state != pipelines.StateSucceeded {
		return out
	}
	for name := range t.Comp.OutParams {
		list := make([]any, 0, n)
		for _, r := range results {
			list = append(list, r.params[name])
		}
		out.params[name] = list
	}
	for name := range t.Comp.OutArtifacts {
		list := []*Artifact{}
		for _, r := range results {
			list = append(list, r.artifacts[name]...)
		}
		out.artifacts[name] = list
	}
	return out
}

func uriMap(arts map[string][]*Artifact) map[string][]*Artifact {
	if len(arts) == 0 {
		return nil
	}
	return arts
}
