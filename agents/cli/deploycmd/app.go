package deploycmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/backends/serving/servingfactory"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/commitstatus"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/stages/deploy"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
)

// NewForge opens the forge of the ML repository for the status write-back;
// nil (the default until the forge package wires it) writes nothing back
// and keeps the status in the state directory only.
var NewForge func(ctx context.Context, cfg *config.Config, build agent.BuildContext) (forge.Forge, error)

func backendFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringSliceFlag{Name: "serve-command", Usage: "the local serving command `ARG` (repeat per argv word; default deploy.serving.command)"},
		&ucli.StringFlag{Name: "state-dir", Usage: "local backend state `DIR` (default backends.stateDir)"},
		&ucli.StringFlag{Name: "serving-image", Usage: "serving `IMAGE` for Kubernetes when deploy.serving.image is empty"},
	}
}

// App returns the branchml-deploy application.
func App() *ucli.App {
	return cli.NewApp("branchml-deploy", "the deploy stage of branchml", runCmd(), statusCmd(), rollbackCmd())
}

func runCmd() *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "run", Usage: "make serving match deploy.yaml (canary or A/B), write the status back", Stage: "deploy", NeedsConfig: true, BuildFlags: true,
		Flags: append(backendFlags(),
			&ucli.BoolFlag{Name: "serve", Usage: "local backend: keep the gateway up after the rollout until interrupted"},
			&ucli.Float64Flag{Name: "load", Usage: "local backend: send `RATE` predicts/s through the gateway during the rollout (the first smoke request, or --load-body)"},
			&ucli.StringFlag{Name: "load-body", Usage: "predict body `JSON` for --load"},
		),
		Run: commitstatus.Wrap("deploy", func(e *cli.Env) (*agent.Result, error) {
			o, closeFn, err := options(e)
			if err != nil {
				return nil, err
			}
			defer closeFn()
			stopLoad, err := startLoad(e, o.Serving)
			if err != nil {
				return nil, err
			}
			res, err := deploy.Run(e.Ctx, o)
			if rep, ok := stopLoad(); ok {
				e.Log.Infof("load: %d sent, %d failed", rep.Sent, rep.Failed)
			}
			out := result(e, res, o.DryRun)
			if err != nil {
				return out, classify("deploy "+o.Config.Deploy.Model, err)
			}
			if e.CLI.Bool("serve") && !o.DryRun {
				if lb, ok := o.Serving.(*local.Backend); ok {
					e.Log.Infof("serving %s on %s until interrupted", o.Config.Deploy.Model, lb.URL())
					<-e.Ctx.Done()
				}
			}
			return out, nil
		}),
	})
}

func statusCmd() *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "status", Usage: "what serves which version at which weight, with history", Stage: "deploy", NeedsConfig: true, BuildFlags: true,
		Flags: backendFlags(),
		Run: func(e *cli.Env) (*agent.Result, error) {
			cfg := e.Config
			if t := cfg.Backends.Serving.Type; t == "" || t == local.Name {
				// Read the state files; start nothing.
				dir := stateDir(e)
				st, err := local.ReadState(dir, cfg.Deploy.Model)
				if err != nil {
					return nil, agent.Failed("read local serving state", err, "")
				}
				res := &deploy.Result{Serving: st}
				o := deploy.Options{Config: cfg, Serving: readOnly{st}, StatusFile: statusFile(dir, cfg.Deploy.Model), Log: e.Log}
				if r, err := deploy.Status(e.Ctx, o); err == nil {
					res.Status = r.Status
				}
				return result(e, res, true), nil
			}
			o, closeFn, err := options(e)
			if err != nil {
				return nil, err
			}
			defer closeFn()
			res, err := deploy.Status(e.Ctx, o)
			if err != nil {
				return nil, agent.Failed("read deploy status", err, "")
			}
			return result(e, res, true), nil
		},
	})
}

func rollbackCmd() *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "rollback", Usage: "abort a canary, or bring back an earlier version at 100%", Stage: "deploy", NeedsConfig: true, BuildFlags: true,
		Flags: append(backendFlags(), &ucli.Int64Flag{Name: "to", Usage: "the model `VERSION` to bring back (default: the one before the current stable)"}),
		Run: func(e *cli.Env) (*agent.Result, error) {
			if to := e.CLI.Int64("to"); e.CLI.IsSet("to") && to <= 0 {
				return nil, agent.Usagef("pass --to VERSION (a positive integer, e.g. --to 1), or leave --to out to bring back the version before the current stable",
					"--to %d: a model version is a positive integer", to)
			}
			o, closeFn, err := options(e)
			if err != nil {
				return nil, err
			}
			defer closeFn()
			res, err := deploy.Rollback(e.Ctx, o, e.CLI.Int64("to"))
			if err != nil {
				return result(e, res, true), classify("roll back "+o.Config.Deploy.Model, err)
			}
			return result(e, res, true), nil
		},
	})
}

func stateDir(e *cli.Env) string {
	if d := e.CLI.String("state-dir"); d != "" {
		return d
	}
	return servingfactory.StateDir(e.Config)
}

func statusFile(dir, model string) string {
	return filepath.Join(local.StateDir(dir, model), "deploy-status.json")
}

// options builds deploy.Options: the backend, the forge, the workspace.
func options(e *cli.Env) (deploy.Options, func(), error) {
	cfg := e.Config
	ws := e.Build.Workspace
	if ws == "" {
		ws = cfg.Dir
	}
	dir := stateDir(e)
	if e.DryRun && (cfg.Backends.Serving.Type == "" || cfg.Backends.Serving.Type == local.Name) {
		// Plan from the recorded state; start nothing.
		st, _ := local.ReadState(dir, cfg.Deploy.Model)
		return deploy.Options{Config: cfg, Workspace: ws, ModelRoot: ws, Serving: readOnly{st}, StatusFile: statusFile(dir, cfg.Deploy.Model),
			Commit: e.Build.Commit, BuildURL: e.Build.BuildURL, Log: e.Log, DryRun: true}, func() {}, nil
	}
	var f forge.Forge
	if NewForge != nil {
		var err error
		if f, err = NewForge(e.Ctx, cfg, e.Build); err != nil {
			return deploy.Options{}, nil, agent.Failed("open the forge", err, "check backends.forge and its credentials")
		}
	}
	serveCmd := e.CLI.StringSlice("serve-command")
	stopImages := func() {}
	localServing := cfg.Backends.Serving.Type == "" || cfg.Backends.Serving.Type == local.Name
	if len(serveCmd) == 0 && len(cfg.Deploy.Serving.Command) == 0 && localServing && f != nil {
		argv, stop, err := componentCommand(e, f)
		if err != nil {
			return deploy.Options{}, nil, err
		}
		serveCmd, stopImages = argv, stop
	}
	b, closeB, err := servingfactory.New(e.Ctx, cfg, servingfactory.Options{ServeCommand: serveCmd, StateDir: dir, Image: e.CLI.String("serving-image"), Log: e.Log})
	if err != nil {
		stopImages()
		return deploy.Options{}, nil, agent.Usage("open the serving backend", err, "set deploy.serving.command (local) or deploy.serving.image and backends.serving (kubernetes)")
	}
	closeFn := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = closeB(ctx)
		stopImages()
	}
	o := deploy.Options{Config: cfg, Workspace: ws, Serving: b, StatusFile: statusFile(dir, cfg.Deploy.Model),
		Commit: e.Build.Commit, BuildURL: e.Build.BuildURL, Log: e.Log, DryRun: e.DryRun}
	if _, ok := b.(*local.Backend); ok {
		o.ModelRoot = modelRoot(cfg, ws)
	}
	o.Forge = f
	return o, closeFn, nil
}

// startLoad runs the --load generator against the local gateway.
func startLoad(e *cli.Env, b serving.Backend) (func() (loadgen.Report, bool), error) {
	rate := e.CLI.Float64("load")
	lb, ok := b.(*local.Backend)
	if rate <= 0 || !ok || e.DryRun {
		return func() (loadgen.Report, bool) { return loadgen.Report{}, false }, nil
	}
	body := []byte(e.CLI.String("load-body"))
	if len(body) == 0 {
		if sm := e.Config.Deploy.Canary.Smoke; len(sm) > 0 {
			body, _ = json.Marshal(sm[0].Request)
		}
	}
	if len(body) == 0 || !json.Valid(body) {
		return nil, agent.Usagef("give --load-body '{\"instances\": [...]}' or a deploy.canary.smoke request", "--load needs a predict body")
	}
	ctx, cancel := context.WithCancel(e.Ctx)
	done := make(chan loadgen.Report, 1)
	go func() {
		rep, _ := loadgen.Run(ctx, loadgen.Options{URL: lb.URL() + "/v1/models/" + e.Config.Deploy.Model + ":predict", Body: body, Rate: rate, Concurrency: 4, VariantHeader: local.VariantHeader})
		done <- rep
	}()
	return func() (loadgen.Report, bool) { cancel(); return <-done, true }, nil
}

// classify maps deploy errors to exit codes: interrupted 130, rolled
// back 3, bad spec or usage 2, else 1.
func classify(what string, err error) error {
	var se *deploy.SpecError
	var ue *deploy.UsageError
	var re *deploy.RestoreError
	switch {
	case errors.Is(err, context.Canceled):
		return agent.Failed(what, err, "interrupted: a canary in progress was removed and the deploy status records the interruption; run the stage again (it restores the recorded stable first)")
	case errors.Is(err, context.DeadlineExceeded):
		return agent.Failed(what, err, "out of time: a canary in progress was removed and the deploy status records it; raise --timeout and run the stage again")
	case errors.Is(err, deploy.ErrRolledBack):
		return agent.Gate(what, err, "the canary was rolled back and the stable version serves; fix the model (see the status history) and merge a new deploy.yaml")
	case errors.As(err, &ue):
		return agent.Usage(what, err, ue.Fix)
	case errors.As(err, &se):
		return agent.Usage(what, err, "fix deploy.yaml or branchml.yaml as the message says")
	case errors.As(err, &re):
		return agent.Failed(what, err, fmt.Sprintf("nothing serves and the recorded stable v%d did not start (see the server log named above); make version %d available under %s again, or bring back another version with 'branchml-deploy rollback --to VERSION'", re.Model.Version, re.Model.Version, re.Model.Path))
	case serving.IsTemporary(err):
		return agent.Failed(what, err, "a temporary failure: run the stage again")
	}
	return agent.Failed(what, err, "see the log above; stable keeps serving")
}

// result is the command's result: a readable summary (the headline only
// for a run, which Jenkins puts in the build description; every detail
// with full) and, for -o json and the --result file, the whole
// deploy.Result as outputs. On a text stdout without --result the outputs
// are left out: the summary says it all.
func result(e *cli.Env, res *deploy.Result, full bool) *agent.Result {
	if res == nil {
		return nil
	}
	if res.Serving.Variants == nil {
		res.Serving.Variants = []serving.VariantState{}
	}
	out := &agent.Result{Summary: res.Headline()}
	if full || res.DryRun {
		out.Summary = res.Text()
	}
	if e.Output == "json" || e.CLI.String("result") != "" {
		out.Outputs = res
	} else {
		out.Outputs = struct{}{} // print the summary, also on failure, and no key dump
	}
	return out
}
