package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// Files of a run directory.
const (
	// RequestFile is the run's request (Request as JSON), written by Prepare.
	RequestFile = "run.json"
	// SpecFile is the composed IR YAML the run executes.
	SpecFile = "spec.yaml"
	// StateFile is the run's State as JSON, replaced atomically on every change.
	StateFile = "state.json"
	// CancelFile asks the runner to cancel the run when it exists; the
	// runner polls for it.
	CancelFile = "cancel-requested"
	// TasksDir holds one directory per task: log, outputs/, tmp/,
	// executor_output.json (a nested task's directory is below its DAG's).
	TasksDir = "tasks"
	// LockFile is held (flock) by the process executing the run; its
	// content names that process.
	LockFile = "runner.lock"
)

// Request is what a run is asked to do (the run directory's run.json).
type Request struct {
	ID           string         `json:"id"`
	DisplayName  string         `json:"displayName"`
	Experiment   string         `json:"experiment,omitempty"`
	ExperimentID string         `json:"experimentId,omitempty"`
	PipelineID   string         `json:"pipelineId,omitempty"`
	VersionID    string         `json:"versionId,omitempty"`
	Parameters   map[string]any `json:"parameters,omitempty"`
	CreatedAt    time.Time      `json:"createdAt"`
}

// State is a run's state as persisted in state.json. State and task states
// are KFP v2beta1 RuntimeState values (pipelines.State*).
type State struct {
	ID           string         `json:"id"`
	DisplayName  string         `json:"displayName"`
	ExperimentID string         `json:"experimentId,omitempty"`
	State        string         `json:"state"`
	Error        string         `json:"error,omitempty"`
	Parameters   map[string]any `json:"parameters,omitempty"`
	Tasks        []TaskState    `json:"tasks"`
	// PID is the process executing the run (0 before it starts).
	PID int `json:"pid,omitempty"`
	// Resumed counts the times the run was continued after its runner died.
	Resumed    int       `json:"resumed,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt,omitempty"`
	FinishedAt time.Time `json:"finishedAt,omitempty"`
}

// TaskState is one task's state. Name is the task's path as KFP shows it:
// a root task by its name, a task of a nested DAG as "<dag>/<task>", an
// iteration of a ParallelFor as "<loop>/iteration-<i>" and the tasks of
// that iteration below it.
type TaskState struct {
	Name string `json:"name"`
	// DisplayName is taskInfo.name ("for-loop-2 (iteration 0)" for an iteration).
	DisplayName string `json:"displayName,omitempty"`
	// Kind is container, importer, dag, loop or iteration.
	Kind  string `json:"kind,omitempty"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Note says why a task was skipped, cached, kept or what was ignored locally.
	Note string `json:"note,omitempty"`
	// Iterations is a loop's item count.
	Iterations int `json:"iterations,omitempty"`
	// Cached is true when the task's result came from the cache (CacheKey).
	Cached   bool   `json:"cached,omitempty"`
	CacheKey string `json:"cacheKey,omitempty"`
	// Attempts counts process starts (1 + retries).
	Attempts int `json:"attempts,omitempty"`
	ExitCode int `json:"exitCode,omitempty"`
	// Container is the container ID of the last attempt.
	Container  string    `json:"container,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitempty"`
	FinishedAt time.Time `json:"finishedAt,omitempty"`
	// Outputs and Artifacts are a succeeded task's output parameters and
	// artifacts (a loop's: lists in iteration order).
	Outputs   map[string]any         `json:"outputs,omitempty"`
	Artifacts map[string][]*Artifact `json:"artifacts,omitempty"`
	// Log is the task's log file (stdout and stderr of every attempt).
	Log string `json:"log,omitempty"`
	// LogTail is the end of Log, set when the task FAILED.
	LogTail string `json:"logTail,omitempty"`
}

// Run converts the state to the pipelines.Run shape.
func (s *State) Run() *pipelines.Run {
	r := &pipelines.Run{ID: s.ID, DisplayName: s.DisplayName, ExperimentID: s.ExperimentID, State: s.State, Error: s.Error, CreatedAt: s.CreatedAt, FinishedAt: s.FinishedAt}
	for _, t := range s.Tasks {
		r.Tasks = append(r.Tasks, pipelines.Task{Name: t.Name, State: t.State, Error: t.Error, LogTail: t.LogTail})
	}
	return r
}

// Prepare creates run directory dir with the spec and the request; the run
// starts PENDING. It fails when dir already holds a run.
func Prepare(dir string, spec []byte, req Request) error {
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
		return fmt.Errorf("run directory %s: %w", dir, os.ErrExist)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, SpecFile), spec, 0o644); err != nil {
		return err
	}
	if err := atomicfile.WriteJSON(filepath.Join(dir, RequestFile), req); err != nil {
		return err
	}
	st := &State{ID: req.ID, DisplayName: req.DisplayName, ExperimentID: req.ExperimentID, State: pipelines.StatePending, Parameters: req.Parameters, CreatedAt: req.CreatedAt, Tasks: []TaskState{}}
	if plan, err := Compile(spec); err == nil {
		for _, t := range plan.Root.Tasks {
			st.Tasks = append(st.Tasks, TaskState{Name: t.Name, DisplayName: t.DisplayName, Kind: kindOf(t), State: pipelines.StatePending})
		}
	}
	return atomicfile.WriteJSON(filepath.Join(dir, StateFile), st)
}

// ReadState reads dir's state.json. When the run is not terminal but no
// process holds its runner lock (its runner was killed, or the machine
// restarted), the returned state says FAILED with an error naming the pid,
// and Orphaned reports it; the file itself is left alone. A missing run is
// os.ErrNotExist (wrapped).
func ReadState(dir string) (*State, error) {
	st, err := readStateFile(dir)
	if err != nil {
		return nil, err
	}
	if !pipelines.Terminal(st.State) && st.PID > 0 && Orphaned(dir) {
		st.Error = fmt.Sprintf("the runner process %d exited before the run finished (state was %s)", st.PID, st.State)
		st.State = pipelines.StateFailed
	}
	return st, nil
}

func readStateFile(dir string) (*State, error) {
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("run state %s: %w", filepath.Join(dir, StateFile), err)
	}
	return &st, nil
}

// Orphaned reports whether run dir has started (a pid in its state) but no
// process holds its runner lock.
func Orphaned(dir string) bool {
	st, err := readStateFile(dir)
	if err != nil || st.PID == 0 || pipelines.Terminal(st.State) {
		return false
	}
	f, err := os.Open(filepath.Join(dir, LockFile))
	if err != nil {
		return !alive(st.PID)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return false // held
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}

// LockRun takes run dir's runner lock without waiting: unlock releases it.
// When another process holds it, holder is its pid and unlock is nil.
func LockRun(dir string) (unlock func(), holder int, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, 0, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, pid, nil
		}
		return nil, 0, fmt.Errorf("lock run %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, 0, nil
}

// RequestCancel asks the runner executing dir to cancel the run, from any
// process: it creates the cancel-request file the runner polls. Cancelling
// a finished run does nothing; an unknown run is os.ErrNotExist (wrapped).
func RequestCancel(dir string) error {
	st, err := ReadState(dir)
	if err != nil {
		return err
	}
	if pipelines.Terminal(st.State) {
		return nil
	}
	return atomicfile.WriteFile(filepath.Join(dir, CancelFile), []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o644)
}

// TaskDir is the directory of task name (a task path) in run directory dir.
func TaskDir(dir, name string) string { return filepath.Join(dir, TasksDir, filepath.FromSlash(name)) }

// OutputArtifactPath is where task writes output artifact name (a file, or
// a directory the task creates).
func OutputArtifactPath(dir, task, name string) string {
	return filepath.Join(TaskDir(dir, task), "outputs", "artifacts", name)
}

// OutputParameterPath is the output_file of task's output parameter name.
func OutputParameterPath(dir, task, name string) string {
	return filepath.Join(TaskDir(dir, task), "outputs", "parameters", name)
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
