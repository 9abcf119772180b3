package traincmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/forgefactory"
	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/local"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/backends/pipelines/pipelinesfactory"
	"github.com/branchml/branchml/agents/backends/registry/localimages"
	"github.com/branchml/branchml/agents/backends/storage"
	sbackends "github.com/branchml/branchml/agents/backends/storage/storagefactory"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/commitstatus"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot"
	"github.com/branchml/branchml/agents/stages/train"
	"github.com/branchml/branchml/agents/stages/train/follow"
)

// Wiring builds the backends of the stage from the loaded configuration.
// Each func returns a cleanup (may be nil). Snapshotter may be nil: then
// snapshots are skipped with a warning.
type Wiring struct {
	Forge       func(e *cli.Env) (forge.Forge, error)
	Pipelines   func(e *cli.Env) (pipelines.Backend, func(), error)
	Storage     func(e *cli.Env) (storage.Backend, error)
	Snapshotter func(e *cli.Env, st storage.Backend, f forge.Forge) (train.Snapshotter, error)
}

// DefaultWiring is what App uses: forgefactory.New, the pipelines backends
// factory (the local one with a runner whose images come from the
// embedded registry through the image cache at <stateDir>/images), the
// storage backends factory (local or trident) and the snapshot stage
// (TrainSnapshotter).
var DefaultWiring = Wiring{Forge: NewForge, Pipelines: NewPipelines, Storage: NewStorage, Snapshotter: TrainSnapshotter}

// App returns the branchml-train application with DefaultWiring.
func App() *ucli.App { return AppWith(DefaultWiring) }

// AppWith returns the branchml-train application with w.
func AppWith(w Wiring) *ucli.App {
	run := cli.Command(cli.Spec{
		Name: "run", Usage: "run the train stage: provision volumes, run the pipeline, follow it, record it, snapshot, KPI gate, promotion PR",
		Stage: "train", NeedsConfig: true, BuildFlags: true,
		Description: "Starts a run of the pipeline version recorded on the pipeline branch (.branchml/pipeline.lock.json)\n" +
			"and waits for it. A commit that already has a run reuses it unless --rerun is given; a reused, finished run\n" +
			"writes nothing back and takes no snapshots again. A cancelled run is never reused: a new one is started.\n" +
			"Exit codes: 0 done, 1 run failed (also stalled or past training.timeout: the run is terminated, outputs.stopped says which;\n" +
			"and metrics that cannot be read), 2 bad config, 3 KPIs not met, 130 interrupted (the run is cancelled unless it had ended).\n" +
			"On KFP, metrics come from ML Metadata and the pipeline root's object store (backends.pipelines.metadata, objectStore;\n" +
			"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or their _FILE variables).",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "rerun", Usage: "start a new run even when this commit already has one (a cancelled run is replaced without it)"},
			&ucli.DurationFlag{Name: "poll-interval", Value: 5 * time.Second, Usage: "how often the run's state is polled"},
		},
		Run: commitstatus.Wrap("train", func(e *cli.Env) (*agent.Result, error) { return runStage(e, w) }),
	})
	status := cli.Command(cli.Spec{
		Name: "status", Usage: "show a run's state and tasks", ArgsUsage: "RUN_ID", Stage: "train", NeedsConfig: true, BuildFlags: true,
		Run: func(e *cli.Env) (*agent.Result, error) { return statusOf(e, w) },
	})
	list := cli.Command(cli.Spec{
		Name: "list", Usage: "list the training runs recorded on the training branch, oldest first", Stage: "train", NeedsConfig: true, BuildFlags: true,
		Run: func(e *cli.Env) (*agent.Result, error) { return listRuns(e, w) },
	})
	return cli.NewApp("branchml-train", "the train stage of branchml", run, status, list)
}

func runStage(e *cli.Env, w Wiring) (*agent.Result, error) {
	f, err := w.Forge(e)
	if err != nil {
		return nil, agent.Usage("forge backend", err, "check backends.forge in branchml.yaml and its credentials")
	}
	if err := forgefactory.RequireApproval(e.Ctx, e.Config, f, config.StageTrain, e.Build.Commit, e.DryRun); err != nil {
		return nil, err
	}
	var (
		p  pipelines.Backend
		st storage.Backend
	)
	if !e.DryRun { // a plan touches no pipelines backend, and storage only to preflight it
		var closeP func()
		if p, closeP, err = w.Pipelines(e); err != nil {
			return nil, agent.Usage("pipelines backend", err, "check backends.pipelines in branchml.yaml")
		}
		if closeP != nil {
			defer closeP()
		}
		if st, err = w.Storage(e); err != nil {
			return nil, agent.Usage("storage backend", err, "check backends.storage in branchml.yaml")
		}
	} else if e.Config.Backends.Storage.Type == "trident" {
		// A plan runs the cluster storage's read-only preflight (classes,
		// CRDs); the local backend would create its directories, so not it.
		if st, err = w.Storage(e); err != nil {
			return nil, agent.Usage("storage backend", err, "check backends.storage in branchml.yaml")
		}
	}
	var snap train.Snapshotter
	if w.Snapshotter != nil && !e.DryRun {
		if snap, err = w.Snapshotter(e, st, f); err != nil {
			return nil, agent.Usage("snapshot stage", err, "check snapshot and backends.storage in branchml.yaml")
		}
	}
	res, err := train.Run(e.Ctx, train.Options{
		Config: e.Config, ConfigPath: repoPath(e), Commit: e.Build.Commit, BuildURL: e.Build.BuildURL, DryRun: e.DryRun, Rerun: e.CLI.Bool("rerun"),
		Forge: f, Pipelines: p, Storage: st, Snapshotter: snap, Log: e.Log,
		Follow: follow.Options{Interval: e.CLI.Duration("poll-interval")},
	})
	if res == nil {
		return nil, err
	}
	return &agent.Result{Summary: summary(res), Outputs: res, Links: links(res)}, err
}

// repoPath is --config's path inside the repository ("" when outside it).
func repoPath(e *cli.Env) string {
	p := e.CLI.String("config")
	if !filepath.IsAbs(p) {
		return filepath.ToSlash(filepath.Clean(p))
	}
	ws := e.Build.Workspace
	if ws == "" {
		ws, _ = os.Getwd()
	}
	if rel, err := filepath.Rel(ws, p); err == nil && filepath.IsLocal(rel) {
		return filepath.ToSlash(rel)
	}
	return ""
}

func summary(r *train.Result) string {
	if r.DryRun {
		if r.Reused {
			return fmt.Sprintf("plan: reuse run %s (%s)", r.RunID, r.DisplayName)
		}
		return fmt.Sprintf("plan: start run %s of pipeline version %s", r.DisplayName, r.VersionID)
	}
	s := fmt.Sprintf("run %s (%s) %s", r.RunID, r.DisplayName, r.State)
	if r.Reused {
		s += " (reused)"
	}
	if r.Gate != nil {
		s += "; KPI gate " + r.Gate.Verdict
	}
	if r.PullRequest != nil {
		s += fmt.Sprintf("; pull request #%d %s → %s", r.PullRequest.Number, r.PullRequest.Head, r.PullRequest.Base)
	}
	return s
}

func links(r *train.Result) []agent.Link {
	var l []agent.Link
	if r.RunURL != "" {
		l = append(l, agent.Link{Name: "run", URL: r.RunURL})
	}
	if r.PullRequest != nil && r.PullRequest.URL != "" {
		l = append(l, agent.Link{Name: "promotion pull request", URL: r.PullRequest.URL})
	}
	return l
}

func statusOf(e *cli.Env, w Wiring) (*agent.Result, error) {
	if e.CLI.NArg() != 1 {
		return nil, agent.Usagef("give one run ID: branchml-train status RUN_ID", "status needs a run ID, got %d arguments", e.CLI.NArg())
	}
	id := e.CLI.Args().First()
	p, closeP, err := w.Pipelines(e)
	if err != nil {
		return nil, agent.Usage("pipelines backend", err, "check backends.pipelines in branchml.yaml")
	}
	if closeP != nil {
		defer closeP()
	}
	run, err := p.GetRun(e.Ctx, id)
	if errors.Is(err, pipelines.ErrNotFound) {
		return nil, agent.Failed("run "+id, err, "check the ID (it is in .branchml/training.lock.json on the training branch) and backends.pipelines")
	}
	if err != nil {
		return nil, agent.Failed("run "+id, err, "")
	}
	var tasks []string
	for _, t := range run.Tasks {
		tasks = append(tasks, t.Name+"="+t.State)
	}
	return &agent.Result{Summary: fmt.Sprintf("run %s (%s): %s [%s]", run.ID, run.DisplayName, run.State, strings.Join(tasks, " ")), Outputs: run}, nil
}

// NewForge is the forge of backends.forge.
func NewForge(e *cli.Env) (forge.Forge, error) {
	return forgefactory.New(e.Config, forgefactory.WithLogger(e.Log))
}

// NewStorage is the storage backend of backends.storage (storage/backends:
// "local" under the state directory, or "trident").
func NewStorage(e *cli.Env) (storage.Backend, error) {
	return sbackends.New(e.Config, sbackends.WithLogger(e.Log))
}

// NewPipelines is the pipelines backend of backends.pipelines through the
// pipelines/backends factory; for "local" it makes the runner: images are
// unpacked into <stateDir>/images, references recorded with an earlier
// address of the embedded registry are rewritten to its current one (the
// registry is started in this process when nothing serves it), and
// backends.pipelines.parallelism bounds concurrent tasks. The cleanup
// waits for runs this process executes and stops a registry it started.
func NewPipelines(e *cli.Env) (pipelines.Backend, func(), error) {
	return NewPipelinesWith(e, e.CLI != nil && e.CLI.Command != nil && e.CLI.Command.Name == "run")
}

// NewPipelinesWith is NewPipelines; adopt lets the local backend continue
// a run whose runner died (the follower of a run sets it, status does not).
// The local runner's pvcMount volumes come from the storage backend.
func NewPipelinesWith(e *cli.Env, adopt bool, ropts ...runner.Option) (pipelines.Backend, func(), error) {
	cfg := e.Config
	var opts []pipelinesfactory.Option
	opts = append(opts, pipelinesfactory.WithLogger(e.Log))
	var stopRegistry func()
	if cfg.Backends.Pipelines.Type == "" || cfg.Backends.Pipelines.Type == pipelinesfactory.TypeLocal {
		cache, stop, err := localimages.Cache(e.Ctx, cfg, e.Log)
		if err != nil {
			return nil, nil, err
		}
		stopRegistry = stop
		base := []runner.Option{runner.WithVolumes(StorageVolumes(e)), runner.WithLogf(e.Log.Warnf)}
		opts = append(opts, pipelinesfactory.WithRunner(pipelinesfactory.NewRunner(cfg, cache, append(base, ropts...)...)))
		lopts := []local.Option{local.WithLogf(e.Log.Infof)}
		if adopt {
			lopts = append(lopts, local.WithAdoption())
		}
		opts = append(opts, pipelinesfactory.WithLocalOptions(lopts...))
	}
	b, err := pipelinesfactory.New(cfg, opts...)
	if err != nil {
		if stopRegistry != nil {
			stopRegistry()
		}
		return nil, nil, err
	}
	return b, func() {
		if c, ok := b.(interface{ Close() error }); ok {
			c.Close()
		}
		if stopRegistry != nil {
			stopRegistry()
		}
	}, nil
}

// StorageVolumes gives the local runner's pvcMount the storage backend's
// volumes: the volume of that PVC name (created empty when absent), by its
// path on this machine.
func StorageVolumes(e *cli.Env) runner.Volumes {
	var (
		once sync.Once
		st   storage.Backend
		err  error
	)
	return runner.VolumesFunc(func(ctx context.Context, name string) (string, error) {
		once.Do(func() { st, err = NewStorage(e) })
		if err != nil {
			return "", fmt.Errorf("storage backend: %w", err)
		}
		v, err := st.EnsureVolume(ctx, storage.VolumeSpec{Name: name})
		if err != nil {
			return "", err
		}
		if v.Path == "" {
			return "", fmt.Errorf("the storage backend (backends.storage.type %s) gives no path on this machine for volume %s", e.Config.Backends.Storage.Type, name)
		}
		return v.Path, nil
	})
}

// TrainSnapshotter is the snapshot stage as train's Snapshotter
// (snapshot.TrainHook), in the shape of Wiring.Snapshotter.
func TrainSnapshotter(e *cli.Env, st storage.Backend, f forge.Forge) (train.Snapshotter, error) {
	return &snapshot.TrainHook{Storage: st, Forge: f, Log: e.Log, Build: e.Build}, nil
}

// listRuns lists the run records of the training branch (records.RunsDir)
// through the forge; a record that does not parse is an error naming it.
func listRuns(e *cli.Env, w Wiring) (*agent.Result, error) {
	f, err := w.Forge(e)
	if err != nil {
		return nil, agent.Usage("forge backend", err, "check backends.forge in branchml.yaml")
	}
	dl, ok := f.(forge.DirLister)
	if !ok {
		return nil, agent.Usagef("use a forge that lists directories (the local forge or GitHub)", "this forge cannot list %s", records.RunsDir)
	}
	branch := e.Config.Branches[config.StageTrain]
	names, err := dl.ListDir(e.Ctx, branch, records.RunsDir)
	if err != nil {
		return nil, agent.Failed("list "+records.RunsDir+" on "+branch, err, "a temporary failure: run again")
	}
	runs := []records.RunRecord{}
	for _, n := range names {
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		p := records.RunsDir + "/" + n
		raw, err := f.ReadFile(e.Ctx, branch, p)
		if err != nil {
			return nil, agent.Failed("read "+p, err, "")
		}
		var r records.RunRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, agent.Usage("read "+p, fmt.Errorf("%s on branch %s is corrupted: %w", p, branch, err), fmt.Sprintf("restore it from %s's history (git log -p %s -- %s)", branch, branch, p))
		}
		runs = append(runs, r)
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].StartedAt.Before(runs[j].StartedAt) })
	var b strings.Builder
	if len(runs) == 0 {
		b.WriteString("no training runs recorded on " + branch)
	}
	for _, r := range runs {
		line := fmt.Sprintf("%s  %-24s %-10s", r.RunID, r.DisplayName, r.State)
		if r.Model != nil {
			line += fmt.Sprintf("  %s v%d", r.Model.Name, r.Model.Version)
		}
		if r.Gate != "" {
			line += "  gate " + r.Gate
		}
		line += "  commit " + short(r.SourceCommit) + "  started " + r.StartedAt.UTC().Format(time.RFC3339)
		b.WriteString(line + "\n")
	}
	res := &agent.Result{Summary: strings.TrimRight(b.String(), "\n"), Outputs: map[string]any{"runs": runs}}
	if e.Output != "json" && e.CLI.String("result") == "" {
		res.Outputs = struct{}{}
	}
	return res, nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
