package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

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

// Runner executes runs prepared in run directories.
type Runner struct {
	images      Images
	parallelism int
	poll        time.Duration
	env         []string
}

// New returns a runner that takes task images from images.
func New(images Images, opts ...Option) *Runner {
	r := &Runner{images: images, poll: DefaultPollInterval}
	for _, o := range opts {
		o(r)
	}
	if r.parallelism <= 0 {
		r.parallelism = runtime.NumCPU()
	}
	return r
}

// exec is one execution of a run directory.
type execution struct {
	r    *Runner
	dir  string
	plan *Plan
	req  Request

	mu      sync.Mutex
	st      *State
	outputs map[string]map[string]any // task → output parameter → value
}

// Exec executes the run prepared in dir and returns its final state:
// SUCCEEDED, FAILED (a task failed, or the spec or parameters are wrong:
// State.Error says why; tasks after a failed one are SKIPPED) or CANCELED
// (ctx was cancelled or RequestCancel was called: the run passes through
// CANCELING and the task processes' groups are killed). The error is only
// for a run directory that cannot be read or written.
func (r *Runner) Exec(ctx context.Context, dir string) (*State, error) {
	var req Request
	raw, err := os.ReadFile(filepath.Join(dir, RequestFile))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("run request %s: %w", dir, err)
	}
	st, err := ReadState(dir)
	if err != nil {
		return nil, err
	}
	if pipelines.Terminal(st.State) {
		return st, nil
	}
	e := &execution{r: r, dir: dir, req: req, st: st, outputs: map[string]map[string]any{}}
	e.st.PID, e.st.StartedAt = os.Getpid(), time.Now().UTC()
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
		return e.snapshot(), e.persist()
	}
	e.st.Tasks = make([]TaskState, len(plan.Tasks))
	for i, t := range plan.Tasks {
		e.st.Tasks[i] = TaskState{Name: t.Name, State: pipelines.StatePending}
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

func (e *execution) persist() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return atomicfile.WriteJSON(filepath.Join(e.dir, StateFile), e.st)
}

func (e *execution) update(f func(*State)) {
	e.mu.Lock()
	f(e.st)
	e.mu.Unlock()
	_ = e.persist()
}

func (e *execution) task(name string, f func(*TaskState)) {
	e.update(func(s *State) {
		for i := range s.Tasks {
			if s.Tasks[i].Name == name {
				f(&s.Tasks[i])
			}
		}
	})
}

func (e *execution) finish(state, msg string) {
	e.mu.Lock()
	e.st.State, e.st.Error, e.st.FinishedAt = state, msg, time.Now().UTC()
	e.mu.Unlock()
}

type done struct {
	task  string
	state string
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
	final := map[string]string{}
	started := map[string]bool{}
	events := make(chan done)
	running := 0
	failed := ""
	stopping := false
	for {
		if !stopping && runCtx.Err() != nil {
			stopping = true
		}
		if !stopping && failed == "" {
			for _, t := range e.plan.Tasks {
				if running >= e.r.parallelism {
					break
				}
				if started[t.Name] || !depsOK(t, final) {
					continue
				}
				started[t.Name] = true
				running++
				go func(t *Task) { events <- done{t.Name, e.runTask(runCtx, t)} }(t)
			}
		}
		if running == 0 {
			break
		}
		ev := <-events
		running--
		final[ev.task] = ev.state
		if ev.state == pipelines.StateFailed && failed == "" {
			failed = ev.task
		}
		if ev.state == pipelines.StateCanceled {
			stopping = true
		}
		if runCtx.Err() != nil && !stopping {
			stopping = true
		}
	}
	close(stopWatch)
	<-watchDone
	wasCancelled := runCtx.Err() != nil
	e.update(func(s *State) {
		for i := range s.Tasks {
			if !started[s.Tasks[i].Name] {
				s.Tasks[i].State = pipelines.StateSkipped
			}
		}
	})
	switch {
	case failed != "":
		e.finish(pipelines.StateFailed, fmt.Sprintf("task %s failed: %s", failed, e.taskError(failed)))
	case wasCancelled:
		e.finish(pipelines.StateCanceled, "run cancelled")
	default:
		e.finish(pipelines.StateSucceeded, "")
	}
	_ = os.Remove(filepath.Join(e.dir, CancelFile))
	return e.snapshot(), e.persist()
}

// canceling records that the run is being cancelled.
func (e *execution) canceling() {
	e.update(func(s *State) {
		if s.State == pipelines.StateRunning {
			s.State = pipelines.StateCanceling
		}
	})
}

func (e *execution) taskError(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.st.Tasks {
		if t.Name == name {
			return t.Error
		}
	}
	return ""
}

func depsOK(t *Task, final map[string]string) bool {
	for _, d := range t.Deps {
		if final[d] != pipelines.StateSucceeded {
			return false
		}
	}
	return true
}

// runTask runs one task with its retries and returns its final state.
func (e *execution) runTask(ctx context.Context, t *Task) string {
	tdir := TaskDir(e.dir, t.Name)
	logPath := filepath.Join(tdir, "log")
	e.task(t.Name, func(ts *TaskState) {
		ts.State, ts.StartedAt, ts.Log = pipelines.StateRunning, time.Now().UTC(), logPath
	})
	fail := func(err error) string {
		state := pipelines.StateFailed
		if ctx.Err() != nil {
			state = pipelines.StateCanceled
		}
		tail := Tail(logPath, DefaultLogTailLines)
		e.task(t.Name, func(ts *TaskState) {
			ts.State, ts.Error, ts.FinishedAt = state, err.Error(), time.Now().UTC()
			if state == pipelines.StateFailed {
				ts.LogTail = tail
			}
		})
		return state
	}
	if err := os.MkdirAll(filepath.Join(tdir, "outputs", "parameters"), 0o755); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(filepath.Join(tdir, "outputs", "artifacts"), 0o755); err != nil {
		return fail(err)
	}
	inputs, err := e.inputs(t)
	if err != nil {
		return fail(err)
	}
	img, err := e.r.images.Ensure(ctx, t.Image)
	if err != nil {
		return fail(err)
	}
	argv, err := e.argv(t, img, inputs)
	if err != nil {
		return fail(err)
	}
	work := filepath.Join(tdir, "work")
	env := append(append(append([]string{}, img.Config.Env...), e.r.env...), t.Env...)
	env = append(env, "HOME="+work, "TMPDIR="+work, "BRANCHML_ROOTFS="+img.RootFS)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
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
		if err := os.RemoveAll(work); err != nil {
			return fail(err)
		}
		if err := os.MkdirAll(work, 0o755); err != nil {
			return fail(err)
		}
		e.task(t.Name, func(ts *TaskState) { ts.Attempts = attempt + 1 })
		code, err := runProcess(ctx, argv, env, work, logf)
		e.task(t.Name, func(ts *TaskState) { ts.ExitCode = code })
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
	outs := map[string]any{}
	for name, def := range t.OutputParams {
		raw, err := os.ReadFile(OutputParameterPath(e.dir, t.Name, name))
		if err != nil {
			continue // a consumer that needs it fails naming it
		}
		v, err := parseOutput(def.Type, raw)
		if err != nil {
			return fail(fmt.Errorf("output parameter %q: %w", name, err))
		}
		outs[name] = v
	}
	e.mu.Lock()
	e.outputs[t.Name] = outs
	e.mu.Unlock()
	e.task(t.Name, func(ts *TaskState) { ts.State, ts.FinishedAt = pipelines.StateSucceeded, time.Now().UTC() })
	return pipelines.StateSucceeded
}

// inputs resolves a task's input parameter values.
func (e *execution) inputs(t *Task) (map[string]any, error) {
	out := map[string]any{}
	for name, src := range t.Inputs {
		var v any
		switch {
		case src.HasConst:
			v = src.Constant
		case src.RootParam != "":
			pv, ok := e.st.Parameters[src.RootParam]
			if !ok {
				continue // optional and unset
			}
			v = pv
		case src.Producer != "":
			e.mu.Lock()
			pv, ok := e.outputs[src.Producer][src.ProducerOf]
			e.mu.Unlock()
			if !ok {
				return nil, fmt.Errorf("input %q: task %s wrote no output parameter %q (to its {{$.outputs.parameters['%s'].output_file}})", name, src.Producer, src.ProducerOf, src.ProducerOf)
			}
			v = pv
		}
		if def := t.InputDefs[name]; def != nil {
			cv, err := coerce(def.Type, v)
			if err != nil {
				return nil, &ParamError{Name: name, Problem: "task " + t.Name + ": " + err.Error()}
			}
			v = cv
		}
		out[name] = v
	}
	return out, nil
}

var placeholder = regexp.MustCompile(`\{\{\$[^}]*\}\}`)
var placeholderKind = regexp.MustCompile(`^\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](\.path|\.uri|\.output_file)?\}\}$`)

// argv builds the task's command line: placeholders substituted, command[0]
// mapped into the image's root file system.
func (e *execution) argv(t *Task, img *imagecache.Image, inputs map[string]any) ([]string, error) {
	cmd, args := t.Command, t.Args
	if len(cmd) == 0 {
		cmd = img.Config.Entrypoint
		if len(args) == 0 {
			args = img.Config.Cmd
		}
	}
	if len(cmd) == 0 {
		if len(args) == 0 {
			return nil, fmt.Errorf("image %s has no entrypoint and the executor no command", t.Image)
		}
		cmd, args = args[:1], args[1:]
	}
	var out []string
	var perr error
	for _, a := range append(append([]string{}, cmd...), args...) {
		s := placeholder.ReplaceAllStringFunc(a, func(ph string) string {
			v, err := e.substitute(t, ph, inputs)
			if err != nil && perr == nil {
				perr = err
			}
			return v
		})
		out = append(out, s)
	}
	if perr != nil {
		return nil, perr
	}
	bin, err := resolveBinary(img, out[0])
	if err != nil {
		return nil, err
	}
	out[0] = bin
	return out, nil
}

func (e *execution) substitute(t *Task, ph string, inputs map[string]any) (string, error) {
	switch ph {
	case "{{$.pipeline_job_uuid}}":
		return e.req.ID, nil
	case "{{$.pipeline_job_name}}":
		return e.req.DisplayName, nil
	case "{{$.pipeline_task_name}}":
		return t.Name, nil
	}
	m := placeholderKind.FindStringSubmatch(ph)
	if m == nil {
		return "", fmt.Errorf("placeholder %s is not supported by the local runner", ph)
	}
	dir, kind, name, suffix := m[1], m[2], m[3], m[4]
	switch {
	case dir == "inputs" && kind == "parameters" && suffix == "":
		v, ok := inputs[name]
		if !ok {
			return "", fmt.Errorf("placeholder %s: the task has no input parameter %q with a value", ph, name)
		}
		typ := ""
		if d := t.InputDefs[name]; d != nil {
			typ = d.Type
		}
		return Format(typ, v), nil
	case dir == "inputs" && kind == "artifacts" && (suffix == ".path" || suffix == ".uri"):
		src, ok := t.Artifacts[name]
		if !ok {
			return "", fmt.Errorf("placeholder %s: the task has no input artifact %q", ph, name)
		}
		prod, key, _ := strings.Cut(src, "/")
		return OutputArtifactPath(e.dir, prod, key), nil
	case dir == "outputs" && kind == "artifacts" && (suffix == ".path" || suffix == ".uri"):
		if !contains(t.OutputArtifacts, name) {
			return "", fmt.Errorf("placeholder %s: component %s declares no output artifact %q", ph, t.Component, name)
		}
		return OutputArtifactPath(e.dir, t.Name, name), nil
	case dir == "outputs" && kind == "parameters" && suffix == ".output_file":
		if t.OutputParams[name] == nil {
			return "", fmt.Errorf("placeholder %s: component %s declares no output parameter %q", ph, t.Component, name)
		}
		return OutputParameterPath(e.dir, t.Name, name), nil
	}
	return "", fmt.Errorf("placeholder %s is not supported by the local runner", ph)
}

// resolveBinary maps a container command to a file in the image: an
// absolute path is taken below the root file system; a bare name is looked
// up in the image's PATH.
func resolveBinary(img *imagecache.Image, name string) (string, error) {
	try := func(p string) (string, bool) {
		full := filepath.Join(img.RootFS, filepath.FromSlash(path.Clean("/"+p)))
		fi, err := os.Stat(full)
		return full, err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
	}
	if strings.Contains(name, "/") {
		if full, ok := try(name); ok {
			return full, nil
		}
		return "", fmt.Errorf("command %s is not an executable file in image %s", name, img.Ref)
	}
	pathEnv := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range img.Config.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, d := range strings.Split(pathEnv, ":") {
		if full, ok := try(path.Join(d, name)); ok {
			return full, nil
		}
	}
	return "", fmt.Errorf("command %s is not in image %s (PATH %s)", name, img.Ref, pathEnv)
}

// ExitError is a task process that exited non-zero.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("exited with code %d", e.Code) }

// runProcess runs argv in its own process group with output to log; a
// cancelled ctx kills the whole group.
func runProcess(ctx context.Context, argv, env []string, dir string, log io.Writer) (int, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, dir, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return 0, nil
	}
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), &ExitError{Code: ee.ExitCode()}
	}
	return -1, err
}

// Tail returns the last n lines of the file at p (at most 8 KiB); "" when
// it cannot be read.
func Tail(p string, n int) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 8 << 10
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
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
