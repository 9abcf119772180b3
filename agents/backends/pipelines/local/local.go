package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// Namespace is the UUID namespace of the IDs this backend derives.
var Namespace = uuid.MustParse("6f0b6c1e-4a8e-5b59-9d57-0c1b2a6d4e10")

// Backend is the local pipelines backend.
type Backend struct {
	dir    string
	runner *runner.Runner
	log    func(format string, args ...any)

	adopt bool

	mu      sync.Mutex
	ctx     context.Context
	stop    context.CancelFunc
	running map[string]chan struct{}
}

var (
	_ pipelines.Backend     = (*Backend)(nil)
	_ pipelines.SpecChecker = (*Backend)(nil)
)

// Option configures a Backend.
type Option func(*Backend)

// WithLogf receives a line when a run starts and ends.
func WithLogf(f func(format string, args ...any)) Option { return func(b *Backend) { b.log = f } }

// WithAdoption lets GetRun continue, in this process, a run whose runner
// died (killed, or its machine restarted): the follower of a run
// (branchml-train run) sets it, a one-shot reader (status) does not.
func WithAdoption() Option { return func(b *Backend) { b.adopt = true } }

// New returns the backend keeping its data under stateDir, running tasks
// with r.
func New(stateDir string, r *runner.Runner, opts ...Option) (*Backend, error) {
	if stateDir == "" {
		return nil, errors.New("local pipelines: empty state directory")
	}
	for _, d := range []string{"pipelines", "runs"} {
		if err := os.MkdirAll(filepath.Join(stateDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("local pipelines: %w", err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	b := &Backend{dir: stateDir, runner: r, ctx: ctx, stop: stop, running: map[string]chan struct{}{}, log: func(string, ...any) {}}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Close cancels the runs this process executes and waits for them to end.
func (b *Backend) Close() error {
	b.stop()
	b.mu.Lock()
	var chans []chan struct{}
	for _, c := range b.running {
		chans = append(chans, c)
	}
	b.mu.Unlock()
	for _, c := range chans {
		<-c
	}
	return nil
}

// RunDir is the directory of run id.
func (b *Backend) RunDir(id string) string { return filepath.Join(b.dir, "runs", id) }

func id(kind string, parts ...string) string {
	return uuid.NewSHA1(Namespace, []byte(kind+":"+strings.Join(parts, "\x00"))).String()
}

type pipelineMeta struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

// UploadVersion stores u.Spec as a version of pipeline u.PipelineName,
// unless a version with the same hash exists (then Created is false). The
// spec must compile for the local runner. An empty SpecHash is computed as
// "sha256:<hex>" of the spec bytes.
func (b *Backend) UploadVersion(_ context.Context, u pipelines.Upload) (*pipelines.Version, error) {
	if u.PipelineName == "" || u.VersionName == "" {
		return nil, errors.New("local pipelines: upload needs a pipeline name and a version name")
	}
	if err := b.CheckSpec(context.Background(), u.Spec); err != nil {
		return nil, fmt.Errorf("pipeline %s version %s: %w", u.PipelineName, u.VersionName, err)
	}
	hash := u.SpecHash
	if hash == "" {
		sum := sha256.Sum256(u.Spec)
		hash = "sha256:" + hex.EncodeToString(sum[:])
	}
	pid := id("pipeline", u.PipelineName)
	pdir := filepath.Join(b.dir, "pipelines", pid)
	if _, err := os.Stat(filepath.Join(pdir, "pipeline.json")); err != nil {
		if err := atomicfile.WriteJSON(filepath.Join(pdir, "pipeline.json"), pipelineMeta{ID: pid, Name: u.PipelineName, Description: u.Description, CreatedAt: time.Now().UTC()}); err != nil {
			return nil, err
		}
	}
	vid := id("version", pid, hash)
	meta := filepath.Join(pdir, "versions", vid+".json")
	if raw, err := os.ReadFile(meta); err == nil {
		var v pipelines.Version
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pipeline version %s: %w", meta, err)
		}
		v.Created = false
		return &v, nil
	}
	if err := atomicfile.WriteFile(filepath.Join(pdir, "versions", vid+".yaml"), u.Spec, 0o644); err != nil {
		return nil, err
	}
	v := pipelines.Version{PipelineID: pid, PipelineName: u.PipelineName, VersionID: vid, VersionName: u.VersionName, SpecHash: hash, CreatedAt: time.Now().UTC()}
	if err := atomicfile.WriteJSON(meta, v); err != nil {
		return nil, err
	}
	v.Created = true
	return &v, nil
}

// Spec returns the stored spec of a version; pipelines.ErrNotFound when unknown.
func (b *Backend) Spec(pipelineID, versionID string) ([]byte, error) {
	p := filepath.Join(b.dir, "pipelines", filepath.Base(pipelineID), "versions", filepath.Base(versionID)+".yaml")
	raw, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pipeline %s version %s: %w", pipelineID, versionID, pipelines.ErrNotFound)
	}
	return raw, err
}

// CheckSpec reports whether the local runner can run spec: nil, a
// *runner.UnsupportedError ("not supported by the local runner: <feature>
// (task <name>)") or what is wrong with the spec. Upload and --dry-run give
// the same verdict.
func (b *Backend) CheckSpec(_ context.Context, spec []byte) error {
	_, err := runner.Compile(spec)
	return err
}

// CreateRun starts a run of the version in the background and returns it
// PENDING or RUNNING. A run with the same experiment and display name
// that exists already is returned as it is (look-before-create). Exactly one
// process executes a run: the one that holds its runner lock; a concurrent
// CreateRun of the same run in another process gets the run that process
// executes. A run whose runner died is continued here.
func (b *Backend) CreateRun(ctx context.Context, r pipelines.RunRequest) (*pipelines.Run, error) {
	if r.DisplayName == "" {
		return nil, errors.New("local pipelines: a run needs a display name")
	}
	spec, err := b.Spec(r.PipelineID, r.VersionID)
	if err != nil {
		return nil, err
	}
	rid := id("run", r.Experiment, r.DisplayName)
	dir := b.RunDir(rid)
	if run, err := b.GetRun(ctx, rid); err == nil && !runner.Orphaned(dir) {
		return run, nil
	}
	unlock, holder, err := runner.LockRun(dir)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", r.DisplayName, err)
	}
	if unlock == nil { // another process executes it: follow that one
		b.log("run %s (%s) is executed by process %d", rid, r.DisplayName, holder)
		return b.waitState(ctx, rid)
	}
	if st, err := runner.ReadState(dir); err == nil {
		if pipelines.Terminal(st.State) {
			unlock()
			return b.GetRun(ctx, rid)
		}
		b.log("run %s (%s): its runner (pid %d) died; continuing it", rid, r.DisplayName, st.PID)
	} else {
		req := runner.Request{ID: rid, DisplayName: r.DisplayName, Experiment: r.Experiment, ExperimentID: id("experiment", r.Experiment),
			PipelineID: r.PipelineID, VersionID: r.VersionID, Parameters: r.Parameters, CreatedAt: time.Now().UTC()}
		if err := runner.Prepare(dir, spec, req); err != nil {
			unlock()
			return nil, fmt.Errorf("run %s: %w", r.DisplayName, err)
		}
	}
	b.execute(rid, dir, unlock)
	return b.GetRun(ctx, rid)
}

// waitState waits (up to 10 s) for another process's run to have a state.
func (b *Backend) waitState(ctx context.Context, rid string) (*pipelines.Run, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		run, err := b.GetRun(ctx, rid)
		if err == nil || !errors.Is(err, pipelines.ErrNotFound) || time.Now().After(deadline) {
			return run, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// execute runs dir in a goroutine of this process, holding its lock.
func (b *Backend) execute(rid, dir string, unlock func()) {
	done := make(chan struct{})
	b.mu.Lock()
	b.running[rid] = done
	b.mu.Unlock()
	go func() {
		defer close(done)
		defer unlock()
		b.log("run %s started in %s", rid, dir)
		st, err := b.runner.Exec(b.ctx, dir)
		if err != nil {
			b.log("run %s: %v", rid, err)
		} else {
			b.log("run %s ended %s", rid, st.State)
		}
		b.mu.Lock()
		delete(b.running, rid)
		b.mu.Unlock()
	}()
}

// adoptOrphan continues run rid here when its runner died and this
// backend may adopt runs.
func (b *Backend) adoptOrphan(rid string) {
	dir := b.RunDir(rid)
	if !b.adopt || b.runner == nil || !runner.Orphaned(dir) {
		return
	}
	b.mu.Lock()
	_, mine := b.running[rid]
	b.mu.Unlock()
	if mine {
		return
	}
	unlock, _, err := runner.LockRun(dir)
	if err != nil || unlock == nil {
		return
	}
	if st, err := runner.ReadState(dir); err != nil || pipelines.Terminal(st.State) { // holding the lock, the state is as written
		unlock()
		return
	}
	b.log("run %s: its runner died before the run finished; continuing it in this process", rid)
	b.execute(rid, dir, unlock)
}

// Wait blocks until the run this process executes ends (or at once when it
// executes no such run).
func (b *Backend) Wait(id string) {
	b.mu.Lock()
	c := b.running[id]
	b.mu.Unlock()
	if c != nil {
		<-c
	}
}

// GetRun reads the run's state file; pipelines.ErrNotFound when unknown.
func (b *Backend) GetRun(_ context.Context, id string) (*pipelines.Run, error) {
	if !validID(id) {
		return nil, fmt.Errorf("run %q: %w", id, pipelines.ErrNotFound)
	}
	b.adoptOrphan(id)
	st, err := runner.ReadState(b.RunDir(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("run %s: %w", id, pipelines.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", id, err)
	}
	run := st.Run()
	run.URL = "file://" + b.RunDir(id)
	return run, nil
}

// CancelRun asks the runner of run id (in any process) to cancel it.
func (b *Backend) CancelRun(_ context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("run %q: %w", id, pipelines.ErrNotFound)
	}
	err := runner.RequestCancel(b.RunDir(id))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("run %s: %w", id, pipelines.ErrNotFound)
	}
	return err
}

// Artifact reads output artifact artifact of task in run runID: the file
// itself when file is "" (an error naming the files when it is a directory),
// else file inside the artifact directory. pipelines.ErrNotFound when the
// run, task or artifact does not exist.
func (b *Backend) Artifact(_ context.Context, runID, task, artifact, file string) ([]byte, error) {
	if !validID(runID) || !filepath.IsLocal(task) || !filepath.IsLocal(artifact) || (file != "" && !filepath.IsLocal(file)) {
		return nil, fmt.Errorf("artifact %s/%s/%s %q: %w", runID, task, artifact, file, pipelines.ErrNotFound)
	}
	p := runner.OutputArtifactPath(b.RunDir(runID), task, artifact)
	if st, err := runner.ReadState(b.RunDir(runID)); err == nil { // a cached task's artifact is where it was made
		for _, ts := range st.Tasks {
			if a := ts.Artifacts[artifact]; ts.Name == task && len(a) > 0 {
				p = a[0].Path()
			}
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("run %s task %s artifact %s: %w", runID, task, artifact, pipelines.ErrNotFound)
	}
	if fi.IsDir() {
		if file == "" {
			ents, _ := os.ReadDir(p)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			sort.Strings(names)
			return nil, fmt.Errorf("run %s task %s artifact %s is a directory (%s): name a file", runID, task, artifact, strings.Join(names, ", "))
		}
		p = filepath.Join(p, file)
	} else if file != "" && file != filepath.Base(p) {
		return nil, fmt.Errorf("run %s task %s artifact %s is a file, not a directory holding %s: %w", runID, task, artifact, file, pipelines.ErrNotFound)
	}
	raw, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("run %s task %s artifact %s file %s: %w", runID, task, artifact, file, pipelines.ErrNotFound)
	}
	return raw, err
}

func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil
}

// SpecHash is "sha256:<hex>" of spec's bytes, the hash UploadVersion
// computes when none is given.
func SpecHash(spec []byte) string {
	sum := sha256.Sum256(spec)
	return "sha256:" + hex.EncodeToString(sum[:])
}
