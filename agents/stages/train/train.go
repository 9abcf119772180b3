package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/train/follow"
)

// The task and output artifact whose file is metrics.json.
const (
	MetricsTask     = "train"
	MetricsArtifact = "metrics"
	MetricsFile     = "metrics.json"
)

// WriteBackTimeout bounds the write-back made after an abort.
var WriteBackTimeout = 30 * time.Second

type stage struct {
	o    Options
	cfg  *config.Config
	lock *records.PipelineLock
	prev *records.RunRecord
	// written is the run record as on the training branch (the training
	// lock read at the start, then each record written back).
	written []byte
	res     *Result
	rec     *records.RunRecord
}

// Run runs the training stage; see Options for its inputs. It returns the
// Result also with an error when there is something to report (a failed
// run, a failed gate). Errors are *agent.Error: Usage (exit 2) for bad
// options or configuration, Failed (exit 1) for a failed run or remote
// error, Gate (exit 3) when the KPIs are not met — after the run record is
// written back. An abort (ctx cancelled) cancels the run and returns an
// error wrapping context.Canceled.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	s := &stage{o: o, cfg: o.Config}
	return s.run(ctx)
}

func (o *Options) check() error {
	if o.Config == nil {
		return agent.Usagef("load branchml.yaml first", "train: no configuration")
	}
	if o.Commit == "" {
		return agent.Usagef("pass --commit (Jenkins sets GIT_COMMIT)", "train: the source commit is not known")
	}
	if o.Forge == nil || ((o.Pipelines == nil || o.Storage == nil) && !o.DryRun) {
		return agent.Usagef("wire a forge, a pipelines backend and a storage backend", "train: missing backend")
	}
	for _, k := range []string{config.StagePipeline, config.StageTrain} {
		if o.Config.Branches[k] == "" {
			return agent.Usagef(fmt.Sprintf("map the %q stage to its branch under branches: in branchml.yaml", k), "branches.%s is not set", k)
		}
	}
	t := o.Config.Training
	if t.Data.Parameter == "" || t.Model.Parameter == "" || t.Model.VersionParameter == "" {
		return agent.Usagef("set training.data.parameter, training.model.parameter and training.model.versionParameter", "training parameters for data path, model base path and model version must be named")
	}
	for _, p := range []string{t.Data.Parameter, t.Model.Parameter, t.Model.VersionParameter, t.Gate.Parameter} {
		if p == "" {
			continue
		}
		if _, ok := t.Parameters[p]; ok {
			return agent.Usagef("remove it from training.parameters; the stage sets it", "training.parameters.%s is set by the stage itself", p)
		}
	}
	if o.Log == nil {
		o.Log = discardLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

func (s *stage) log() interface {
	Infof(string, ...any)
	Warnf(string, ...any)
	Errorf(string, ...any)
} {
	return s.o.Log
}

func (s *stage) run(ctx context.Context) (*Result, error) {
	if err := s.readLock(ctx); err != nil {
		return nil, err
	}
	if err := s.readPrevious(ctx); err != nil {
		return nil, err
	}
	s.res = &Result{DryRun: s.o.DryRun, Experiment: s.cfg.Training.Experiment, PipelineID: s.lock.PipelineID, VersionID: s.lock.VersionID,
		DataVolume: s.cfg.Training.Data.Volume, ModelVolume: s.cfg.Training.Model.Volume}
	var run *pipelines.Run
	if p := s.reusable(ctx); p != nil {
		s.res.Reused, s.res.RunID, s.res.DisplayName, s.res.Parameters, s.res.Model = true, p.RunID, p.DisplayName, p.Parameters, p.Model
		s.res.LineageID = p.LineageID
		s.rec = p
		if s.o.DryRun {
			s.log().Infof("plan: run %s (%s, state %s) of commit %s would be reused (pass --rerun for a new run)", p.RunID, p.DisplayName, p.State, short(p.SourceCommit))
			s.res.State = p.State
			return s.res, nil
		}
		s.log().Infof("reusing run %s (%s, state %s) of commit %s (pass --rerun for a new run)", p.RunID, p.DisplayName, p.State, short(p.SourceCommit))
		if pipelines.Terminal(p.State) && p.State != pipelines.StateSucceeded {
			s.res.State = p.State
			return s.res, s.failedRun(nil)
		}
		if !pipelines.Terminal(p.State) {
			r, err := s.follow(ctx, p.RunID)
			if err != nil {
				return s.res, err
			}
			run = r
		}
	} else {
		r, err := s.start(ctx)
		if err != nil || s.o.DryRun {
			return s.res, err
		}
		r, err = s.follow(ctx, r.ID)
		if err != nil {
			return s.res, err
		}
		run = r
	}
	if run != nil {
		if err := s.collect(ctx, run); err != nil {
			return s.res, err
		}
	} else {
		s.res.State, s.res.Metrics = s.rec.State, s.rec.Metrics
	}
	var metricsErr error
	if s.res.Metrics == nil && s.res.State == pipelines.StateSucceeded {
		metricsErr = s.fetchMetrics(ctx)
		s.rec.Metrics = s.res.Metrics
	}
	if err := s.writeRecord(ctx); err != nil {
		return s.res, err
	}
	if s.res.State != pipelines.StateSucceeded {
		return s.res, s.failedRun(run)
	}
	if metricsErr != nil {
		// An error of the run or of the wiring, never a verdict on the model.
		return s.res, metricsErr
	}
	if err := s.snapshot(ctx); err != nil {
		return s.res, err
	}
	return s.res, s.gateAndPromote(ctx)
}

// readLock reads the pipeline lock from the pipeline branch.
func (s *stage) readLock(ctx context.Context) error {
	branch := s.cfg.Branches[config.StagePipeline]
	raw, err := s.o.Forge.ReadFile(ctx, branch, records.PipelineLockPath)
	if errors.Is(err, forge.ErrNotFound) {
		return agent.Usage("find the pipeline version", fmt.Errorf("%s on branch %s: %w", records.PipelineLockPath, branch, err),
			"merge into "+branch+" first so that the pipeline stage uploads a version and records it")
	}
	if err != nil {
		return agent.Failed("read the pipeline lock", fmt.Errorf("%s on branch %s: %w", records.PipelineLockPath, branch, err), "")
	}
	var lock records.PipelineLock
	if err := records.ParseJSON(branch+":"+records.PipelineLockPath, raw, &lock); err != nil {
		return agent.Failed("read the pipeline lock", fmt.Errorf("%s on branch %s: %w", records.PipelineLockPath, branch, err), "fix or re-create the file by merging into "+branch)
	}
	if lock.VersionID == "" || lock.PipelineID == "" {
		return agent.Failed("read the pipeline lock", fmt.Errorf("%s on branch %s names no pipeline version", records.PipelineLockPath, branch), "merge into "+branch+" again")
	}
	want := s.cfg.Backends.Pipelines.Type
	if want == "" {
		want = "local"
	}
	if lock.Backend != "" && lock.Backend != want {
		return agent.Usagef("merge into "+branch+" again so the version is uploaded to the "+want+" backend, or set backends.pipelines.type: "+lock.Backend,
			"the pipeline version was uploaded to the %s backend but backends.pipelines.type is %s", lock.Backend, want)
	}
	s.lock = &lock
	return nil
}

// readPrevious reads the latest run record of the training branch.
func (s *stage) readPrevious(ctx context.Context) error {
	branch := s.cfg.Branches[config.StageTrain]
	raw, err := s.o.Forge.ReadFile(ctx, branch, records.TrainingLockPath)
	if errors.Is(err, forge.ErrNotFound) {
		return nil
	}
	if err != nil {
		return agent.Failed("read the training lock", fmt.Errorf("%s on branch %s: %w", records.TrainingLockPath, branch, err), "")
	}
	var rec records.RunRecord
	if err := records.ParseJSON(branch+":"+records.TrainingLockPath, raw, &rec); err != nil {
		return agent.Failed("read the training lock", err, "")
	}
	s.prev, s.written = &rec, raw
	return nil
}

// reusable returns the latest run record when its run is reused: not with
// --rerun; the run was made for this commit, or for one that holds the
// same branchml.yaml with the same pipeline version; and it was not
// cancelled. A cancelled (or cancelling) run, interrupted by SIGINT/SIGTERM
// or cancelled in the backend, never finished: it is replaced by a new run.
func (s *stage) reusable(ctx context.Context) *records.RunRecord {
	p := s.prev
	if p == nil || p.RunID == "" || s.o.Rerun || (p.SourceCommit != s.o.Commit && !s.sameInputs(ctx)) {
		return nil
	}
	if !cancelled(p.State) {
		return p
	}
	if !s.o.DryRun && s.refresh(ctx, p) {
		return p
	}
	verb := "starting"
	if s.o.DryRun {
		verb = "would start"
	}
	s.log().Warnf("run %s (%s) of commit %s was %s before it finished: not reused, %s a new run", p.RunID, p.DisplayName, short(p.SourceCommit), p.State, verb)
	if p.State == pipelines.StateCanceling && !s.o.DryRun {
		s.finishCancel(ctx, p)
	}
	return nil
}

// refresh re-reads a run recorded as CANCELING or CANCELED: one that the
// server says SUCCEEDED or FAILED (it ended before the cancel took) is
// reused with that state, and true is returned.
func (s *stage) refresh(ctx context.Context, p *records.RunRecord) bool {
	r, err := s.o.Pipelines.GetRun(ctx, p.RunID)
	if err != nil || !pipelines.Terminal(r.State) || cancelled(r.State) {
		return false
	}
	s.log().Infof("run %s (%s) is recorded %s, but the server says %s: reusing it", p.RunID, p.DisplayName, p.State, r.State)
	p.State, p.Tasks = r.State, r.Tasks
	if !r.FinishedAt.IsZero() {
		p.FinishedAt = r.FinishedAt.UTC()
	}
	return true
}

// finishCancel asks the backend again to cancel a run recorded as
// CANCELING when it is still going (the process that cancelled it may have
// been killed first), so it does not run alongside its replacement, waits
// (at most CancelWait) until the backend says it ended, and records its
// final state (CANCELED) in its run record, RunsDir/<id>.json.
func (s *stage) finishCancel(ctx context.Context, p *records.RunRecord) {
	id := p.RunID
	r, err := s.o.Pipelines.GetRun(ctx, id)
	if err != nil {
		if !errors.Is(err, pipelines.ErrNotFound) {
			s.log().Warnf("run %s: %v", id, err)
		}
		return
	}
	if !pipelines.Terminal(r.State) {
		if err := s.o.Pipelines.CancelRun(ctx, id); err != nil {
			s.log().Warnf("cancel run %s (still %s): %v", id, r.State, err)
			return
		}
		s.log().Infof("run %s was still %s: cancelled it again", id, r.State)
		for deadline := time.Now().Add(CancelWait); !pipelines.Terminal(r.State) && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			if r, err = s.o.Pipelines.GetRun(ctx, id); err != nil {
				s.log().Warnf("run %s: %v", id, err)
				return
			}
		}
		if !pipelines.Terminal(r.State) {
			s.log().Warnf("run %s is still %s after %s: its record stays %s", id, r.State, CancelWait, p.State)
			return
		}
	}
	done := *p
	done.State = r.State
	if done.FinishedAt.IsZero() && !r.FinishedAt.IsZero() {
		done.FinishedAt = r.FinishedAt.UTC()
	}
	js, err := json.MarshalIndent(done, "", "  ")
	if err != nil {
		return
	}
	branch := s.cfg.Branches[config.StageTrain]
	if _, err := s.o.Forge.WriteBack(ctx, forge.WriteBack{Branch: branch,
		Files:   map[string][]byte{records.RunsDir + "/" + id + ".json": append(js, '\n')},
		Message: fmt.Sprintf("branchml train: run %s %s for %s", id, done.State, short(done.SourceCommit))}); err != nil {
		s.log().Warnf("record run %s as %s: %v", id, done.State, err)
	}
}

// CancelWait bounds how long a new run waits for the backend to end a run
// recorded as CANCELING before it records the final state.
var CancelWait = 30 * time.Second

func cancelled(state string) bool {
	return state == pipelines.StateCanceled || state == pipelines.StateCanceling
}

// sourceCommit is the commit the run in hand was made for: a reused run
// keeps its own (lineage IDs, the promotion and commit messages name it),
// a new run is this commit's.
func (s *stage) sourceCommit() string {
	if s.rec != nil && s.rec.SourceCommit != "" {
		return s.rec.SourceCommit
	}
	return s.o.Commit
}

// sameInputs reports whether the latest run's commit and this one hold the
// same branchml.yaml and the run used the pipeline version locked now.
func (s *stage) sameInputs(ctx context.Context) bool {
	p := s.prev
	if p.SourceCommit == "" || p.VersionID != s.lock.VersionID {
		return false
	}
	path := s.o.ConfigPath
	if path == "" {
		path = "branchml.yaml"
	}
	now, err := s.o.Forge.ReadFile(ctx, s.o.Commit, path)
	if err != nil {
		return false
	}
	then, err := s.o.Forge.ReadFile(ctx, p.SourceCommit, path)
	if err != nil || !bytes.Equal(now, then) {
		return false
	}
	s.log().Infof("commit %s changes nothing training reads since %s (same %s, same pipeline version)", short(s.o.Commit), short(p.SourceCommit), path)
	return true
}

var rerunSuffix = regexp.MustCompile(`-r([0-9]+)$`)

// displayName is "<project>-<commit12>", with "-r<N>" for the N-th new run
// of the same commit (--rerun, or the replacement of a cancelled run): when
// the latest run has this commit's name, the next suffix keeps names unique.
func (s *stage) displayName() string {
	base := s.cfg.Project + "-" + short(s.o.Commit)
	p := s.prev
	if p == nil || (p.DisplayName != base && !strings.HasPrefix(p.DisplayName, base+"-r")) {
		return base
	}
	n := 1
	if m := rerunSuffix.FindStringSubmatch(strings.TrimPrefix(p.DisplayName, base)); m != nil {
		k, _ := strconv.Atoi(m[1])
		n = k + 1
	}
	return fmt.Sprintf("%s-r%d", base, n)
}

// start provisions the volumes, computes the parameters and creates the
// run (or, dry, prints the plan).
func (s *stage) start(ctx context.Context) (*pipelines.Run, error) {
	s.res.DisplayName = s.displayName()
	vols, err := s.volumes(ctx)
	if err != nil {
		return nil, err
	}
	version := s.nextVersion(vols)
	params := map[string]any{}
	for k, v := range s.cfg.Training.Parameters {
		params[k] = v
	}
	if err := s.typeParameters(ctx, params); err != nil {
		return nil, err
	}
	params[s.cfg.Training.Data.Parameter] = vols.dataPath
	params[s.cfg.Training.Model.Parameter] = vols.modelBase
	params[s.cfg.Training.Model.VersionParameter] = version
	if g := s.cfg.Training.Gate; g.Parameter != "" {
		params[g.Parameter] = g.Split
	}
	s.res.Parameters = params
	s.res.Model = &records.ModelRef{Name: s.cfg.Deploy.Model, Version: version, Volume: s.cfg.Training.Model.Volume, Path: s.cfg.Deploy.Model}
	if err := s.checkParams(ctx, params); err != nil {
		return nil, err
	}
	if s.o.DryRun {
		s.log().Infof("plan: start run %q of pipeline %s version %s (%s) in experiment %q with parameters %s",
			s.res.DisplayName, s.lock.PipelineName, s.lock.VersionName, s.lock.VersionID, s.res.Experiment, paramString(params))
		return nil, nil
	}
	run, err := s.o.Pipelines.CreateRun(ctx, pipelines.RunRequest{Experiment: s.res.Experiment, DisplayName: s.res.DisplayName,
		PipelineID: s.lock.PipelineID, VersionID: s.lock.VersionID, Parameters: params})
	if err != nil {
		return nil, agent.Failed("start run "+s.res.DisplayName, err, "check the pipelines backend (backends.pipelines) and the pipeline version in "+records.PipelineLockPath)
	}
	s.res.RunID, s.res.State, s.res.RunURL = run.ID, run.State, run.URL
	s.log().Infof("run %s (%s) started: %s", run.ID, s.res.DisplayName, run.URL)
	s.rec = &records.RunRecord{APIVersion: records.APIVersion, Kind: "RunRecord", SourceCommit: s.o.Commit, Backend: s.lock.Backend,
		RunID: run.ID, DisplayName: s.res.DisplayName, Experiment: s.res.Experiment, PipelineID: s.lock.PipelineID, VersionID: s.lock.VersionID,
		State: run.State, Parameters: params, Model: s.res.Model, DataVolume: s.res.DataVolume, StartedAt: run.CreatedAt.UTC(), BuildURL: s.o.BuildURL}
	if s.rec.Backend == "" {
		s.rec.Backend = s.cfg.Backends.Pipelines.Type
	}
	if s.rec.StartedAt.IsZero() {
		s.rec.StartedAt = s.o.Now().UTC()
	}
	if err := s.writeRecord(ctx); err != nil {
		return nil, err
	}
	return run, nil
}

func paramString(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(p[k])
		parts[i] = k + "=" + strings.TrimSpace(buf.String())
	}
	return strings.Join(parts, " ")
}

// follow follows the run; on an abort, a deadline or a stall it writes the
// record with the last observed state before returning the error.
func (s *stage) follow(ctx context.Context, id string) (*pipelines.Run, error) {
	fo := s.o.Follow
	if fo.Timeout == 0 {
		fo.Timeout = s.cfg.Training.Timeout.Duration
	}
	if fo.StallTimeout == 0 {
		fo.StallTimeout = s.cfg.Training.StallTimeout.Duration
	}
	if fo.Log == nil {
		fo.Log = s.o.Log
	}
	run, err := follow.Follow(ctx, s.o.Pipelines, id, fo)
	if err == nil {
		return run, nil
	}
	if run != nil {
		s.observe(run)
	}
	stopped, fix := stopReason(err, id)
	s.res.Stopped = stopped
	// Only a cancel this process asked for makes the run CANCELING; after
	// any other error the record keeps the state the server last reported,
	// and the next build follows the run again.
	if stopped != StoppedFollowFailed && stopped != StoppedAfterEnd && s.rec != nil && s.rec.State != "" && !pipelines.Terminal(s.rec.State) {
		s.rec.State = pipelines.StateCanceling
		s.res.State = s.rec.State
	}
	wctx, stop := context.WithTimeout(context.Background(), WriteBackTimeout)
	defer stop()
	if werr := s.writeRecord(wctx); werr != nil {
		s.log().Errorf("%v", werr)
	}
	return nil, agent.Failed("follow run "+id, err, fix)
}

// Values of Result.Stopped: why following a run stopped before it ended.
const (
	// StoppedInterrupted: SIGINT/SIGTERM (exit 130); the run was cancelled.
	StoppedInterrupted = "interrupted"
	// StoppedAfterEnd: SIGINT/SIGTERM after the run had ended (exit 130);
	// nothing was cancelled and the run's end state is recorded.
	StoppedAfterEnd = "interrupted-after-end"
	// StoppedStalled: no state or task change for training.stallTimeout;
	// the run was cancelled (exit 1).
	StoppedStalled = "stalled"
	// StoppedDeadline: the run did not end within training.timeout; it was
	// cancelled (exit 1).
	StoppedDeadline = "deadline"
	// StoppedFollowFailed: the server's answers could not be read (an
	// error, too many transient errors); the run was not cancelled (exit 1).
	StoppedFollowFailed = "follow-failed"
)

// stopReason classifies a follow error and says what to do about it.
func stopReason(err error, id string) (string, string) {
	var ie *follow.Interrupted
	var se *follow.StalledError
	var de *follow.DeadlineError
	switch {
	case errors.As(err, &ie) && !ie.Cancelled:
		return StoppedAfterEnd, "run the stage again: the ended run is reused"
	case errors.Is(err, context.Canceled) || errors.As(err, &ie):
		return StoppedInterrupted, ""
	case errors.As(err, &se):
		return StoppedStalled, "look at the run's task logs; raise training.stallTimeout if the pipeline is just slow to report"
	case errors.As(err, &de):
		return StoppedDeadline, "raise training.timeout, or make the pipeline faster"
	}
	return StoppedFollowFailed, "the run was not cancelled: check the pipelines backend and its credentials, then run the stage again to follow it (or 'branchml-train status " + id + "')"
}

// observe copies a run's state into the result and the record.
func (s *stage) observe(run *pipelines.Run) {
	s.res.State = run.State
	if run.URL != "" {
		s.res.RunURL = run.URL
	}
	if s.rec == nil {
		return
	}
	s.rec.State, s.rec.Tasks = run.State, run.Tasks
	if !run.FinishedAt.IsZero() {
		s.rec.FinishedAt = run.FinishedAt.UTC()
	}
}

// collect records a finished run (its metrics are read by run).
func (s *stage) collect(_ context.Context, run *pipelines.Run) error {
	s.observe(run)
	return nil
}

// fetchMetrics reads metrics.json from output MetricsArtifact of task
// MetricsTask. Failing that it is an agent.Failed error (exit 1) that names
// the task, the artifact and where the backend looked: a run that cannot
// show its metrics is not judged by the KPI gate.
func (s *stage) fetchMetrics(ctx context.Context) error {
	raw, err := s.o.Pipelines.Artifact(ctx, s.res.RunID, MetricsTask, MetricsArtifact, "")
	if err != nil {
		var err2 error
		if raw, err2 = s.o.Pipelines.Artifact(ctx, s.res.RunID, MetricsTask, MetricsArtifact, MetricsFile); err2 != nil {
			return agent.Failed("read the metrics of run "+s.res.RunID, err, metricsFix)
		}
	}
	var m map[string]any
	if len(raw) > config.MaxMetricsBytes {
		return agent.Failed("read the metrics of run "+s.res.RunID,
			&config.TooLargeError{Name: MetricsFile + " of task " + MetricsTask, Limit: config.MaxMetricsBytes}, metricsFix)
	}
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		if err == nil {
			err = errors.New("null")
		}
		return agent.Failed("read the metrics of run "+s.res.RunID,
			fmt.Errorf("%s of output %s of task %s is not a JSON object: %w", MetricsFile, MetricsArtifact, MetricsTask, err), metricsFix)
	}
	s.res.Metrics = m
	return nil
}

const metricsFix = "make task " + MetricsTask + " write " + MetricsFile + " to its output artifact '" + MetricsArtifact +
	"' (for KFP also check backends.pipelines.metadata and objectStore); then run the stage again: the run is reused and its metrics read again"

// failedRun prints the failed tasks' errors and log tails (from run, or
// from the record of a reused run) and returns the error: it names the
// failing tasks, or says that the run was cancelled.
func (s *stage) failedRun(run *pipelines.Run) error {
	tasks, runErr := s.rec.Tasks, ""
	if run != nil {
		tasks, runErr = run.Tasks, run.Error
	}
	what := "run " + s.res.RunID
	if s.res.Reused {
		what += " of commit " + short(s.rec.SourceCommit)
	}
	if cancelled(s.res.State) {
		why := fmt.Errorf("ended %s: the run was cancelled before it finished", s.res.State)
		return agent.Failed(what, why, "run the stage again: a cancelled run is not reused, a new one is started")
	}
	var failed []string
	logged := false
	for _, t := range tasks {
		if t.State != pipelines.StateFailed {
			continue
		}
		failed = append(failed, t.Name)
		msg := fmt.Sprintf("task %s failed", t.Name)
		if t.Error != "" {
			msg += ": " + t.Error
		}
		s.log().Errorf("%s", msg)
		if tail := strings.TrimRight(t.LogTail, "\n"); tail != "" {
			lines := strings.Split(tail, "\n")
			s.log().Errorf("--- the last %d lines of the log of task %s ---", len(lines), t.Name)
			for _, line := range lines {
				s.log().Errorf("%s | %s", t.Name, line)
			}
			s.log().Errorf("--- end of the log of task %s ---", t.Name)
			logged = true
		}
	}
	why := "ended " + s.res.State
	if runErr != "" {
		why += ": " + runErr
	}
	if n := len(failed); n > 0 && !mentionsAll(runErr, failed) {
		why += fmt.Sprintf(" (failed: %s)", strings.Join(failed, ", "))
	}
	var fix string
	switch {
	case len(failed) == 0:
		fix = "look at the run's error and its task logs in the pipelines backend, fix the cause and merge again, or retry with --rerun"
	case len(failed) == 1 && logged:
		fix = "fix task " + failed[0] + " (its log is above) and merge again, or retry with --rerun"
	case len(failed) == 1:
		fix = "fix task " + failed[0] + " (see its log in the pipelines backend) and merge again, or retry with --rerun"
	case logged:
		fix = "fix tasks " + strings.Join(failed, ", ") + " (their logs are above) and merge again, or retry with --rerun"
	default:
		fix = "fix tasks " + strings.Join(failed, ", ") + " (see their logs in the pipelines backend) and merge again, or retry with --rerun"
	}
	return agent.Failed(what, errors.New(why), fix)
}

// mentionsAll reports whether msg names every task of names.
func mentionsAll(msg string, names []string) bool {
	for _, n := range names {
		if !strings.Contains(msg, "task "+n+" ") {
			return false
		}
	}
	return true
}

// writeRecord writes the run record to RunsDir/<id>.json and the training
// lock in one commit on the training branch. Nothing is written when the
// training lock holds the record already (a reused, finished run): the
// training branch does not move, so no further build is triggered.
func (s *stage) writeRecord(ctx context.Context) error {
	if s.rec == nil || s.o.DryRun {
		return nil
	}
	s.res.Record = s.rec
	js, err := json.MarshalIndent(s.rec, "", "  ")
	if err != nil {
		return agent.Failed("write the run record", err, "")
	}
	js = append(js, '\n')
	if bytes.Equal(js, s.written) {
		return nil
	}
	branch := s.cfg.Branches[config.StageTrain]
	_, err = s.o.Forge.WriteBack(ctx, forge.WriteBack{Branch: branch,
		Files:   map[string][]byte{records.RunsDir + "/" + s.rec.RunID + ".json": js, records.TrainingLockPath: js},
		Message: fmt.Sprintf("branchml train: run %s %s for %s", s.rec.RunID, s.rec.State, short(s.sourceCommit()))})
	if err != nil {
		return agent.Failed("write the run record to "+branch, err, "check the forge (backends.forge) and its credentials")
	}
	s.written = js
	return nil
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// checkParams refuses (exit 2) parameters the pipeline does not declare
// (root.inputDefinitions.parameters of the composed spec the pipeline stage
// wrote to its branch), so that --dry-run finds the typo the run would
// refuse. Without that file (an older pipeline stage) nothing is checked.
func (s *stage) checkParams(ctx context.Context, params map[string]any) error {
	declared, err := s.specParameterTypes(ctx)
	if err != nil || declared == nil {
		return err
	}
	var unknown, names []string
	for k := range params {
		if _, ok := declared[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	for k := range declared {
		names = append(names, k)
	}
	sort.Strings(unknown)
	sort.Strings(names)
	return agent.Usagef("fix training.parameters in branchml.yaml: the pipeline's parameters are "+strings.Join(names, ", "),
		"training.parameters.%s: pipeline version %s declares no parameter %s", strings.Join(unknown, ", "), s.lock.VersionName, strings.Join(unknown, ", "))
}
