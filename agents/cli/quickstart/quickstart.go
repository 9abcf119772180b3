package quickstart

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	slocal "github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/stagerun"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
)

// Options of one quickstart.
type Options struct {
	// Data is a folder of Kaggle per-ticker CSVs or the merged CSV; "" finds
	// ../shared/data/djia30.
	Data string
	// Workdir holds the ML repository, the Jenkins-like workspaces, the
	// backends' state and the report; default ".work/quickstart".
	Workdir string
	// Example is examples/djia30 of the branchml checkout ("" finds it).
	Example string
	// Serve keeps the model served until ctx is cancelled.
	Serve bool
	// Rerun starts a new training run even when this commit has one.
	Rerun bool
	// Cluster runs storage and serving on the Kubernetes test bed
	// (test/k8s) with its node: PVCs and CSI VolumeSnapshots instead of
	// local directories, and the model served by pods of the serve
	// component's image behind a Service (canary by replica counts), reached
	// through the API server's proxy; the rest of the flow is unchanged.
	// The node needs root, containerd, runc, the CNI plugins, Debian's
	// docker-registry, iproute2 and util-linux.
	Cluster bool
	// Continue runs only the stages whose branch moved since they last ran
	// here (a person merged a pull request), merging nothing itself.
	Continue bool
	// Out receives the progress lines and the summary; Log the stages' logs.
	Out io.Writer
	Log *logrus.Logger
	// LogOut receives the agents' own log lines (default: Workdir/logs/<stage>.log).
	LogOut io.Writer
	// BinDir is where the agents' binaries are, for the summary's PATH line
	// (default: this executable's directory when branchml-deploy is there).
	BinDir string
}

// StageTime is how long one stage took.
type StageTime struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration"`
	Summary  string        `json:"summary"`
}

// Summary is what the quickstart reports at the end.
type Summary struct {
	Workdir string         `json:"workdir"`
	Data    string         `json:"data"`
	Stages  []StageTime    `json:"stages"`
	Total   time.Duration  `json:"total"`
	Outputs map[string]any `json:"outputs"`
	Report  string         `json:"report"`
	// Prediction is the live prediction made through the gateway.
	Prediction *Prediction `json:"prediction,omitempty"`
	// Passes are the flow's passes run this time, in order.
	Passes []PassSummary `json:"passes,omitempty"`
}

// stageCall is one stage the flow runs.
type stageCall struct {
	agent string
	app   func() *ucli.App
	// branch receives the merge from "from" before the stage runs.
	from, branch string
}

// run is the state of one quickstart.
type run struct {
	opt     Options
	repo    *mlRepo
	env     map[string]string
	sum     *Summary
	started time.Time
	gw      *slocal.Backend
	// kube is the test bed's serving side with Options.Cluster (nil without).
	kube *clusterServing
	// log is the quickstart's own log (Workdir/logs/quickstart.log).
	log *logrus.Logger
	// state is what this and earlier quickstarts did (quickstart.json).
	state *qsState
}

func (r *run) progress(format string, args ...any) {
	fmt.Fprintf(r.opt.Out, "[%6.1fs] %s\n", time.Since(r.started).Seconds(), fmt.Sprintf(format, args...))
}

// Run plays the flow and returns its summary.
func Run(ctx context.Context, opt Options) (*Summary, error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	cwd, _ := os.Getwd()
	exe, _ := os.Executable()
	// A workdir named remembers where its example and data came from, so
	// that 'quickstart --continue --workdir DIR' works from anywhere.
	recorded := &qsState{}
	if opt.Workdir != "" {
		if abs, err := filepath.Abs(opt.Workdir); err == nil {
			if st, err := readState(abs); err == nil {
				recorded = st
			}
		}
	}
	example, err := findExample(opt.Example, cwd, filepath.Dir(exe))
	if err != nil && opt.Example == "" && recorded.Example != "" {
		example, err = recorded.Example, nil
	}
	if err != nil {
		return nil, agent.Usage("find the example", err, "run 'branchml quickstart' from the branchml checkout")
	}
	data, err := findData(opt.Data, cwd, filepath.Dir(exe), example)
	if err != nil && opt.Data == "" && recorded.Data != "" {
		data, err = recorded.Data, nil
	}
	if err != nil {
		return nil, agent.Usage("find the data", err, "pass --data DIR")
	}
	if opt.Workdir == "" {
		opt.Workdir = filepath.Join(filepath.Dir(filepath.Dir(example)), ".work", "quickstart")
	}
	if opt.BinDir == "" {
		if _, err := os.Stat(filepath.Join(filepath.Dir(exe), "branchml-deploy")); err == nil {
			opt.BinDir = filepath.Dir(exe)
		}
	}
	if opt.Workdir, err = filepath.Abs(opt.Workdir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opt.Workdir, 0o755); err != nil {
		return nil, err
	}
	release, err := lockWorkdir(ctx, opt.Workdir)
	if err != nil {
		return nil, err
	}
	defer release()
	r := &run{opt: opt, started: time.Now(), sum: &Summary{Workdir: opt.Workdir, Data: data, Outputs: map[string]any{}}}
	if r.state, err = readState(opt.Workdir); err != nil {
		return nil, err
	}
	r.state.Example, r.state.Data = example, data
	if err := os.MkdirAll(filepath.Join(opt.Workdir, "logs"), 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(opt.Workdir, "logs", "quickstart.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	var logW io.Writer = logFile
	if opt.LogOut != nil {
		logW = io.MultiWriter(logFile, opt.LogOut)
	}
	if r.log, err = cli.NewLogger(logW, "text", "info"); err != nil {
		return nil, err
	}
	r.progress("workdir %s, data %s", opt.Workdir, data)

	t0 := time.Now()
	repo, err := ensureRepo(ctx, opt.Workdir)
	if err != nil {
		return nil, agent.Failed("create the local ML repository", err, "run again: a half-made repository is made again, nothing else is touched")
	}
	r.repo = repo
	what := "ds1 already has examples/djia30"
	owns, tip, err := r.ownsDS1(ctx)
	switch {
	case err != nil:
		return nil, agent.Failed("read ds1", err, "run again")
	case !owns:
		what = fmt.Sprintf("ds1 has commits of yours (tip %s): left as they are", tip[:min(12, len(tip))])
	default:
		changed, err := repo.syncExample(ctx, example, r.pendingDS1)
		if err != nil {
			return nil, agent.Failed("commit examples/djia30 to ds1", err, "run again")
		}
		if changed {
			what = "examples/djia30 committed to ds1"
		}
		if err := r.noteDS1(ctx); err != nil {
			return nil, err
		}
	}
	if err := repo.ensureYours(ctx); err != nil {
		return nil, agent.Failed("clone the ML repository into "+repo.Yours, err, "run again")
	}
	r.add("repository", time.Since(t0), fmt.Sprintf("bare remote %s; %s", repo.Remote, what))

	// What Jenkins would give every agent through withEnv: the shared state
	// of the local backends and where the data comes from.
	r.env = map[string]string{
		"BRANCHML_BACKENDS_STATE_DIR":    filepath.Join(opt.Workdir, "state"),
		"BRANCHML_BACKENDS_FORGE_REMOTE": repo.Remote,
		"BRANCHML_TRAINING_DATA_SOURCE":  data,
	}
	if opt.Cluster {
		env, stop, err := r.startCluster(ctx, filepath.Dir(filepath.Dir(example)))
		if err != nil {
			return r.sum, err
		}
		defer stop()
		maps.Copy(r.env, env)
	}
	// The local runner's tasks run in containers (an OCI runtime, as root);
	// a machine without that runs them as host processes, said once, so
	// that the quickstart runs on a fresh machine. The person's own
	// BRANCHML_BACKENDS_PIPELINES_RUNNER_ISOLATION is left as it is.
	if _, set := os.LookupEnv(envIsolation); !set {
		if why, fix := runner.ContainersUnavailable(); why != "" {
			r.env[envIsolation] = runner.IsolationProcess
			fmt.Fprintf(opt.Out, "note: %s: the pipeline's tasks run as host processes (backends.pipelines.runner.isolation: process); %s to run each in its container\n", why, fix)
		}
	}
	for k, v := range r.env {
		os.Setenv(k, v)
	}
	// Whatever happens, stop the model servers the deploy stage started,
	// unless they are to keep serving.
	defer r.stopServing()
	if err := r.flow(ctx); err != nil {
		return r.sum, err
	}
	return r.sum, r.finish(ctx)
}

// envIsolation sets backends.pipelines.runner.isolation for the agents.
const envIsolation = "BRANCHML_BACKENDS_PIPELINES_RUNNER_ISOLATION"

// finish makes the live prediction, prints the summary, writes the report
// and, with --serve, keeps serving until ctx ends.
func (r *run) finish(ctx context.Context) error {
	cfg, err := config.Load(filepath.Join(r.opt.Workdir, "jenkins", "workspace", "deploy-model", "branchml.yaml"))
	if err != nil {
		return err
	}
	var url string
	if r.kube != nil {
		url = r.kube.url(cfg.Deploy.Model)
	} else if _, url, err = r.serving(ctx, cfg); err != nil {
		return agent.Failed("start the serving plane", err, "a temporary failure: run the quickstart again")
	}
	if !r.serves(ctx) {
		// The last pass deployed nothing (the gate stopped its model) and
		// this quickstart's serving plane is new: bring up the version the
		// deploy status records, as the deploy stage restores it.
		if _, err := r.deploy(ctx); err != nil {
			return err
		}
	}
	pred, err := r.predict(ctx, url, cfg.Deploy.Model)
	if err != nil {
		through := "the gateway"
		if r.kube != nil {
			through = "the Service " + cfg.Deploy.Model
		}
		return agent.Failed("predict through "+through, err, "see "+filepath.Join(r.opt.Workdir, "logs", "deploy.log"))
	}
	r.sum.Prediction = pred
	f, err := r.readFacts(ctx)
	if err != nil {
		return agent.Failed("read the records the stages wrote back", err, "")
	}
	r.sum.Total = time.Since(r.started)
	var text bytes.Buffer
	r.render(&text, f, pred)
	r.sum.Report, err = r.report(f, pred, text.String())
	if err != nil {
		return err
	}
	fmt.Fprint(r.opt.Out, text.String())
	fmt.Fprintf(r.opt.Out, "\nReport: %s\n", r.sum.Report)
	if r.opt.Serve {
		fmt.Fprintf(r.opt.Out, "Serving %s at %s/v1/models/%s until interrupted (Ctrl-C).\n", cfg.Deploy.Model, url, cfg.Deploy.Model)
		if r.kube != nil {
			fmt.Fprintf(r.opt.Out, "That is the API server's proxy to the Service: authenticate as %s does, or run\n  kubectl --kubeconfig %s proxy --port 8001\nand use http://127.0.0.1:8001%s/v1/models/%s\n",
				r.kube.kubeconfig, r.kube.kubeconfig, r.kube.path(cfg.Deploy.Model), cfg.Deploy.Model)
		}
		<-ctx.Done()
	}
	return nil
}

// stopServing stops the serving plane this process hosts, and with it
// every model server; a plane another process runs (a by-hand deploy, a
// `branchml serve`) is left alone.
func (r *run) stopServing() {
	if r.gw == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = r.gw.Close(ctx)
}

func (r *run) add(name string, d time.Duration, summary string) {
	r.sum.Stages = append(r.sum.Stages, StageTime{Name: name, Duration: d, Summary: summary})
	r.progress("%-10s %6.1fs  %s", name, d.Seconds(), summary)
}

// stage merges call.from into call.branch, checks the merge commit out into
// a workspace and runs the branch's agent there as branchmlAgent does.
func (r *run) stage(ctx context.Context, name string, c stageCall, extra map[string]any) (*stagerun.Outcome, error) {
	t0 := time.Now()
	var commit string
	var err error
	what := "read the tip of " + c.branch
	if c.from != "" {
		what = "merge " + c.from + " into " + c.branch
		commit, err = r.mergeByPR(ctx, c.from, c.branch)
	} else {
		commit, err = r.repo.tip(ctx, c.branch)
	}
	if err != nil {
		return nil, agent.Failed(what, err, "")
	}
	ws := filepath.Join(r.opt.Workdir, "jenkins", "workspace", c.branch)
	if err := os.MkdirAll(filepath.Dir(ws), 0o755); err != nil {
		return nil, err
	}
	if err := r.repo.workspace(ctx, ws, c.branch, commit); err != nil {
		return nil, agent.Failed("check out "+c.branch, err, "")
	}
	if c.agent == "branchml-deploy" && r.kube == nil {
		// The deploy stage changes the one serving plane of the model.
		cfg, err := config.Load(filepath.Join(ws, "branchml.yaml"))
		if err != nil {
			return nil, agent.Failed("read "+c.branch+"'s branchml.yaml", err, "")
		}
		if _, _, err := r.serving(ctx, cfg); err != nil {
			return nil, agent.Failed("start the serving plane", err, "a temporary failure: run the quickstart again")
		}
	}
	params := map[string]any{
		"workspace": ws,
		"branch":    c.branch,
		"commit":    commit,
		"build-url": "file://" + filepath.Join(r.opt.Workdir, "jenkins", "builds", c.branch),
	}
	for k, v := range extra {
		params[k] = v
	}
	logFile, err := os.OpenFile(filepath.Join(r.opt.Workdir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	var logOut io.Writer = logFile
	if r.opt.LogOut != nil {
		logOut = io.MultiWriter(logFile, r.opt.LogOut)
	}
	out, err := stagerun.Run(ctx, stagerun.Call{
		Agent: c.agent, App: c.app, Command: []string{"run"}, Params: params,
		Dir:     filepath.Join(r.opt.Workdir, "jenkins", "results", c.branch),
		Streams: cli.Streams{Out: io.Discard, Err: logOut},
	})
	if err != nil {
		return nil, err
	}
	summary := ""
	if out.Result != nil {
		summary = out.Result.Summary
	}
	r.add(name, time.Since(t0), summary)
	if ctx.Err() != nil {
		return out, fmt.Errorf("%s stage interrupted: %w", name, ctx.Err())
	}
	if out.ExitCode != 0 {
		return out, agent.Failed(name+" stage", out.Err(), "see "+logFile.Name())
	}
	if tip, err := r.repo.tip(ctx, c.branch); err == nil {
		r.state.Ran[c.branch] = tip
		if err := r.saveState(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// pendingDS1 records sha as the ds1 commit the quickstart is about to push
// (state ds1Pending), so that a kill during the push leaves ds1 the
// quickstart's own for the rerun; noteDS1 clears it.
func (r *run) pendingDS1(sha string) error {
	r.state.DS1Pending = sha
	return r.saveState()
}

// noteDS1 records ds1's tip as the quickstart's own.
func (r *run) noteDS1(ctx context.Context) error {
	tip, err := r.repo.tip(ctx, "ds1")
	if err != nil {
		return err
	}
	r.state.DS1, r.state.DS1Pending = tip, ""
	return r.saveState()
}
