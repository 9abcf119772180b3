package deploycmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/forgefactory"
	"github.com/branchml/branchml/agents/backends/registry/localimages"
	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/backends/serving/servingfactory"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/commitstatus"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/deploy"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
	"github.com/branchml/branchml/agents/stages/deploy/rollout"
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
	return cli.NewApp("branchml-deploy", "the deploy stage of branchml", runCmd(), statusCmd(), historyCmd(), rollbackCmd(), ServeCommand())
}

// ServeArgv is the command a deploy runs, detached, to start the model's
// serving plane when none runs: this executable's serve command. Tests
// replace it.
var ServeArgv = func(stateDir, model, addr string) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := []string{exe, "serve", "--model", model, "--state-dir", stateDir}
	if addr != "" {
		argv = append(argv, "--addr", addr)
	}
	return argv, nil
}

func runCmd() *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "run", Usage: "make serving match deploy.yaml (canary or A/B), write the status back", Stage: "deploy", NeedsConfig: true, BuildFlags: true,
		Flags: append(backendFlags(),
			&ucli.BoolFlag{Name: "serve", Usage: "local backend: host the serving plane in this process and keep serving after the rollout until interrupted"},
			&ucli.StringFlag{Name: "load", Usage: "analysis traffic during the rollout through the local gateway or the kubernetes backend's <model> Service, `RATE` predicts/s, \"auto\" (enough for deploy.canary.minRequests at the first step; the default when run by hand, i.e. without --build-url) or 0 (none: wait for real traffic)"},
			&ucli.StringFlag{Name: "load-body", Usage: "predict body `JSON` for --load (default: the first deploy.canary.smoke request, else, on the local backend, zeros shaped as the model's signature)"},
			&ucli.BoolFlag{Name: "no-wait", Usage: "when another rollout of the model is in progress, fail at once naming it instead of waiting for it"},
		),
		Run: commitstatus.Wrap("deploy", func(e *cli.Env) (*agent.Result, error) {
			o, closeFn, err := options(e, e.CLI.Bool("serve"))
			if err != nil {
				return nil, err
			}
			defer closeFn()
			o.NoWait, o.By = e.CLI.Bool("no-wait"), "branchml-deploy run"
			stopLoad, err := startLoad(e, o.Serving)
			if err != nil {
				return nil, err
			}
			res, err := deploy.Run(e.Ctx, o)
			if rep, ok := stopLoad(); ok {
				e.Log.Infof("analysis traffic: %d sent, %d failed", rep.Sent, rep.Failed)
			}
			out := result(e, res, o.DryRun)
			if err != nil {
				return out, classify("deploy "+o.Config.Deploy.Model, err)
			}
			if lb, ok := o.Serving.(*local.Backend); ok && !o.DryRun {
				if lb.Hosted() {
					e.Log.Infof("serving %s on %s until interrupted", o.Config.Deploy.Model, lb.URL())
					<-e.Ctx.Done()
				} else {
					e.Log.Infof("%s serves on %s (serving plane: %s; stop it with 'branchml-deploy serve --stop')", o.Config.Deploy.Model, lb.URL(), lb.Owner())
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
			res, err := readStatus(e)
			if err != nil {
				return nil, err
			}
			return result(e, res, true), nil
		},
	})
}

// readStatus reads what serves and the recorded status, starting nothing.
func readStatus(e *cli.Env) (*deploy.Result, error) {
	cfg := e.Config
	if t := cfg.Backends.Serving.Type; t == "" || t == local.Name {
		dir := stateDir(e)
		st, err := local.ReadState(e.Ctx, dir, cfg.Deploy.Model)
		if err != nil {
			return nil, agent.Usage("read the local serving state", err, "see the message: the file named is corrupted")
		}
		o := deploy.Options{Config: cfg, Serving: readOnly{st}, StatusFile: statusFile(dir, cfg.Deploy.Model), Log: e.Log}
		if f, ferr := forgeOf(e); ferr == nil {
			o.Forge = f
		}
		r, err := deploy.Status(e.Ctx, o)
		if err != nil {
			return nil, classify("read the deploy status", err)
		}
		return r, nil
	}
	o, closeFn, err := options(e, false)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	res, err := deploy.Status(e.Ctx, o)
	if err != nil {
		return nil, classify("read the deploy status", err)
	}
	return res, nil
}

func historyCmd() *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "history", Usage: "the deploy history: every step, promotion, rollback and failure, oldest first", Stage: "deploy", NeedsConfig: true, BuildFlags: true,
		Flags: backendFlags(),
		Run: func(e *cli.Env) (*agent.Result, error) {
			res, err := readStatus(e)
			if err != nil {
				return nil, err
			}
			h := res.Status.History
			if h == nil {
				h = []records.DeployEvent{}
			}
			out := &agent.Result{Summary: deploy.HistoryText(res.Status.Model, h)}
			if e.Output == "json" || e.CLI.String("result") != "" {
				out.Outputs = map[string]any{"model": res.Status.Model, "history": h, "served": deploy.ServedVersions(h)}
			} else {
				out.Outputs = struct{}{}
			}
			return out, nil
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
			o, closeFn, err := options(e, false)
			if err != nil {
				return nil, err
			}
			defer closeFn()
			o.By = "branchml-deploy rollback"
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

// forgeOf opens the forge of the ML repository (nil when NewForge is unset).
func forgeOf(e *cli.Env) (forge.Forge, error) {
	if NewForge == nil {
		return nil, nil
	}
	return NewForge(e.Ctx, e.Config, e.Build)
}

// options builds deploy.Options: the backend, the forge, the workspace.
// The local backend uses the model's serving plane: the one that runs,
// else one hosted here (host: --serve) or spawned (ServeArgv), which keeps
// serving after this process ends.
func options(e *cli.Env, host bool) (deploy.Options, func(), error) {
	cfg := e.Config
	ws := e.Build.Workspace
	if ws == "" {
		ws = cfg.Dir
	}
	dir := stateDir(e)
	localServing := cfg.Backends.Serving.Type == "" || cfg.Backends.Serving.Type == local.Name
	if e.DryRun && localServing {
		// Plan from the recorded state; start nothing.
		st, err := local.ReadState(e.Ctx, dir, cfg.Deploy.Model)
		if err != nil {
			return deploy.Options{}, nil, agent.Usage("read the local serving state", err, "see the message: the file named is corrupted")
		}
		f, _ := forgeOf(e)
		return deploy.Options{Config: cfg, Workspace: ws, ModelRoot: modelRoot(cfg, ws), Serving: readOnly{st}, StatusFile: statusFile(dir, cfg.Deploy.Model), Forge: f,
			Commit: e.Build.Commit, BuildURL: e.Build.BuildURL, Log: e.Log, DryRun: true}, func() {}, nil
	}
	f, err := forgeOf(e)
	if err != nil {
		return deploy.Options{}, nil, agent.Failed("open the forge", err, "check backends.forge and its credentials")
	}
	if f != nil && e.CLI.Command.Name == "run" {
		if err := forgefactory.RequireApproval(e.Ctx, cfg, f, config.StageDeploy, e.Build.Commit, e.DryRun); err != nil {
			return deploy.Options{}, nil, err
		}
	}
	serveCmd := e.CLI.StringSlice("serve-command")
	stopImages := func() {}
	if len(serveCmd) == 0 && len(cfg.Deploy.Serving.Command) == 0 && localServing && f != nil {
		argv, stop, err := componentCommand(e, f)
		if err != nil {
			return deploy.Options{}, nil, err
		}
		serveCmd, stopImages = argv, stop
	}
	so := servingfactory.Options{ServeCommand: serveCmd, StateDir: dir, Image: e.CLI.String("serving-image"), Log: e.Log, Host: host, Owner: "branchml-deploy run --serve"}
	if !localServing && so.Image == "" && cfg.Deploy.Serving.Image == "" {
		if so.Image, err = componentImage(e.Ctx, cfg, f); err != nil {
			stopImages()
			return deploy.Options{}, nil, err
		}
		// Only a command that creates pods makes the embedded registry
		// reachable: status, history and a dry run start nothing.
		readOnly := e.DryRun || (e.CLI.Command.Name != "run" && e.CLI.Command.Name != "rollback")
		if so.Image != "" && !readOnly {
			// A lock's reference to the embedded registry names the port it
			// had then: the pods pull from where it listens now (the node
			// must reach it: on one machine, as the test bed's node does).
			resolve, stop := localimages.Resolver(e.Ctx, cfg, e.Log, "the pods pull the serving image from the embedded registry at %s")
			stopImages = stop
			if so.Image, err = resolve(so.Image); err != nil {
				stopImages()
				return deploy.Options{}, nil, agent.Failed("resolve the serving image", err, "check backends.registry; a temporary failure: run again")
			}
			e.Log.Infof("serving with component %s: image %s", cfg.Deploy.Serving.Component, so.Image)
		}
	}
	if localServing && !host {
		if so.Spawn, err = ServeArgv(dir, cfg.Deploy.Model, cfg.Backends.Serving.Addr); err != nil {
			stopImages()
			return deploy.Options{}, nil, agent.Failed("find the serve command", err, "")
		}
	}
	b, closeB, err := servingfactory.New(e.Ctx, cfg, so)
	if errors.Is(err, servingfactory.ErrConfig) {
		stopImages()
		return deploy.Options{}, nil, agent.Usage("open the serving backend", err, "fix the setting it names in branchml.yaml (or its BRANCHML_ variable, or --set); nothing was changed")
	}
	if err != nil {
		stopImages()
		return deploy.Options{}, nil, agent.Failed("open the serving backend", err, "set deploy.serving.command (local) or deploy.serving.image and backends.serving (kubernetes); a temporary failure: run again")
	}
	closeFn := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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

// serviceEndpoint is a serving backend whose users call the model at one
// URL (the Kubernetes backend's Service: ServiceURL, with HTTPClient when
// it goes through the API server's proxy, else nil).
type serviceEndpoint interface {
	ServiceURL() string
	HTTPClient() *http.Client
}

// startLoad runs the analysis traffic against the local gateway (or the
// Kubernetes backend's Service) during the rollout: --load RATE, or "auto"
// (the default when run by hand: without a --build-url) at the rate that
// gives the first canary step
// deploy.canary.minRequests per interval, twice over (at least 5/s, at
// most 200/s). With no body to send it says so and sends nothing: the
// rollout then waits for real traffic.
func startLoad(e *cli.Env, b serving.Backend) (func() (loadgen.Report, bool), error) {
	none := func() (loadgen.Report, bool) { return loadgen.Report{}, false }
	if e.DryRun {
		return none, nil
	}
	// Where the model's users call it: the local gateway (which names the
	// variant that answered), or a Kubernetes Service.
	var (
		target, header string
		client         *http.Client
		isLocal        bool
	)
	switch sb := b.(type) {
	case *local.Backend:
		target, header, isLocal = sb.URL(), local.VariantHeader, true
	case serviceEndpoint:
		target, client = sb.ServiceURL(), sb.HTTPClient()
	default:
		return none, nil
	}
	spec := e.CLI.String("load")
	if spec == "" {
		if e.Build.BuildURL != "" {
			return none, nil // run by Jenkins (or the quickstart): real traffic, or its own --load
		}
		spec = "auto"
	}
	canary := e.Config.Deploy.Canary
	var rate float64
	if spec == "auto" {
		first := 100
		if len(canary.Steps) > 0 {
			first = max(canary.Steps[0], 1)
		}
		secs := canary.Interval.Duration.Seconds()
		if secs <= 0 {
			secs = 60
		}
		rate = 2 * float64(max(canary.MinRequests, 1)) * 100 / float64(first) / secs
		rate = min(max(rate, 5), 200)
	} else {
		v, err := strconv.ParseFloat(spec, 64)
		if err != nil || v < 0 {
			return nil, agent.Usagef("give --load a rate in requests per second (e.g. --load 50), auto, or 0", "--load %q is not a rate", spec)
		}
		rate = v
	}
	if rate == 0 {
		return none, nil
	}
	body := []byte(e.CLI.String("load-body"))
	if len(body) == 0 {
		if sm := canary.Smoke; len(sm) > 0 {
			body, _ = json.Marshal(sm[0].Request)
		}
	}
	if len(body) == 0 && isLocal {
		body = zerosBody(e.Ctx, target, e.Config.Deploy.Model)
	}
	if len(body) == 0 {
		e.Log.Warnf("no predict body for the analysis traffic: pass --load-body '{\"instances\": [...]}' or set deploy.canary.smoke; the rollout waits for real traffic on %s/v1/models/%s:predict", target, e.Config.Deploy.Model)
		return none, nil
	}
	if !json.Valid(body) {
		return nil, agent.Usagef("give --load-body as JSON, e.g. '{\"instances\": [[1.0, 2.0]]}'", "--load-body is not JSON")
	}
	e.Log.Infof("analysis traffic: %.0f predicts/s through %s during the rollout (--load 0 turns it off)", rate, target)
	ctx, cancel := context.WithCancel(e.Ctx)
	done := make(chan loadgen.Report, 1)
	go func() {
		rep, _ := loadgen.Run(ctx, loadgen.Options{URL: target + "/v1/models/" + e.Config.Deploy.Model + ":predict", Body: body, Rate: rate, Concurrency: 4,
			VariantHeader: header, Client: client})
		done <- rep
	}()
	return func() (loadgen.Report, bool) { cancel(); return <-done, true }, nil
}

// zerosBody is a predict body of zeros shaped as the serving model's
// signature (GET /v1/models/{model}/metadata: the one input of
// serving_default with a fixed inner shape), or nil when that cannot be
// read.
func zerosBody(ctx context.Context, url, model string) []byte {
	c, err := tfserving.New(url, tfserving.WithTimeout(5*time.Second))
	if err != nil {
		return nil
	}
	raw, err := c.Metadata(ctx, model, tfserving.Selector{})
	if err != nil {
		return nil
	}
	var md struct {
		Metadata struct {
			SignatureDef struct {
				SignatureDef map[string]struct {
					Inputs map[string]struct {
						TensorShape struct {
							Dim []struct {
								Size string `json:"size"`
							} `json:"dim"`
						} `json:"tensor_shape"`
					} `json:"inputs"`
				} `json:"signature_def"`
			} `json:"signature_def"`
		} `json:"metadata"`
	}
	if json.Unmarshal(raw, &md) != nil {
		return nil
	}
	sig, ok := md.Metadata.SignatureDef.SignatureDef["serving_default"]
	if !ok || len(sig.Inputs) != 1 {
		return nil
	}
	for _, in := range sig.Inputs {
		dims := in.TensorShape.Dim
		if len(dims) != 2 {
			return nil
		}
		n, err := strconv.Atoi(dims[1].Size)
		if err != nil || n <= 0 || n > 1<<16 {
			return nil
		}
		row := make([]float64, n)
		body, _ := json.Marshal(map[string]any{"instances": [][]float64{row}})
		return body
	}
	return nil
}

// classify maps deploy errors to exit codes: interrupted 130; rolled
// back, preempted by a manual rollback, or a version that cannot load 3;
// bad spec, usage or a corrupted status 2; else 1.
func classify(what string, err error) error {
	var se *deploy.SpecError
	var ue *deploy.UsageError
	var re *deploy.RestoreError
	var ce *deploy.CorruptStatusError
	var he *serving.HeldError
	var pe *serving.PreemptedError
	var lse *local.StateError
	switch {
	case errors.Is(err, context.Canceled):
		return agent.Failed(what, err, "interrupted: a canary in progress was removed and the deploy status records the interruption; run the stage again (it restores the recorded stable first)")
	case errors.Is(err, context.DeadlineExceeded):
		return agent.Failed(what, err, "out of time: a canary in progress was removed and the deploy status records it; run the stage again, with a longer --timeout if the rollout needs it")
	case errors.As(err, &pe):
		return agent.Gate(what, err, "a manual rollback took over while this rollout ran: its canary was removed and the version the rollback chose serves; see 'branchml-deploy history'")
	case errors.Is(err, deploy.ErrRolledBack) && errors.Is(err, serving.ErrLoadFailed):
		return agent.Gate(what, err, "the version cannot load (see the server log named above); the stable version keeps serving; fix the model or merge a deploy.yaml naming another version")
	case errors.Is(err, deploy.ErrRolledBack):
		return agent.Gate(what, err, "the canary was rolled back and the stable version serves; fix the model (see 'branchml-deploy history') and merge a new deploy.yaml")
	case errors.Is(err, serving.ErrLoadFailed):
		return agent.Gate(what, err, "the version cannot load (see the server log named above); fix the model or merge a deploy.yaml naming another version")
	case errors.Is(err, rollout.ErrNoTraffic):
		return agent.Failed(what, err, "the canary got too few requests to judge: send predict traffic to the gateway during the rollout, or run with --load (e.g. --load auto); the stable version keeps serving")
	case errors.As(err, &he):
		return agent.Failed(what, err, "wait for it to end and run again (without --no-wait the stage waits for it)")
	case errors.As(err, &ce):
		return agent.Usage(what, err, ce.Fix)
	case errors.As(err, &lse):
		return agent.Usage(what, err, "see the message: the file named is corrupted")
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
