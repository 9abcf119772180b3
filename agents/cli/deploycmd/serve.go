package deploycmd

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/backends/serving/servingfactory"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
)

// ServeCommand is `serve` (in branchml-deploy, and as `branchml serve`):
// the model's local serving plane in the foreground, until interrupted;
// with --stop, stop the one that runs.
func ServeCommand() *ucli.Command {
	return cli.Command(cli.Spec{
		Name:  "serve",
		Usage: "run the local serving plane of a model (the gateway on loopback and its model servers) until interrupted; --stop stops it",
		Description: "One serving plane runs per model and state directory: the gateway clients send predict requests to, and\n" +
			"the model servers behind it. Every branchml-deploy run, rollback and status uses it; the first deploy starts it\n" +
			"when none runs. Stopping it (Ctrl-C, SIGTERM, --stop) removes every route, drains and stops its servers.\n" +
			"--model and --state-dir default to deploy.model and backends.stateDir of --config when that file exists.",
		Stage: "deploy",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "model", Usage: "the served `MODEL` (default deploy.model)"},
			&ucli.StringFlag{Name: "state-dir", Usage: "local backend state `DIR` (default backends.stateDir)"},
			&ucli.StringFlag{Name: "addr", Usage: "the gateway's loopback `ADDRESS` (default backends.serving.addr; port 0: the last one when free)"},
			&ucli.BoolFlag{Name: "stop", Usage: "stop the serving plane that runs (PID and start time checked) and its model servers"},
		},
		Run: func(e *cli.Env) (*agent.Result, error) {
			model, dir, addr := e.CLI.String("model"), e.CLI.String("state-dir"), e.CLI.String("addr")
			if model == "" || dir == "" || addr == "" {
				if cfg, err := config.Load(e.CLI.String("config")); err == nil {
					if model == "" {
						model = cfg.Deploy.Model
					}
					if dir == "" {
						dir = servingfactory.StateDir(cfg)
					}
					if addr == "" {
						addr = cfg.Backends.Serving.Addr
					}
				} else if !errors.Is(err, os.ErrNotExist) {
					return nil, agent.Usage("load configuration", err, "fix the fields named above, or pass --model and --state-dir")
				}
			}
			if model == "" || dir == "" {
				return nil, agent.Usagef("pass --model and --state-dir, or run where branchml.yaml is (or --config)", "serve: no model or state directory")
			}
			if e.CLI.Bool("stop") {
				owner, url, ok := local.PlaneOwner(dir, model)
				if !ok {
					return &agent.Result{Summary: fmt.Sprintf("no serving plane runs for %s in %s", model, dir)}, nil
				}
				if _, err := local.StopPlane(dir, model, 30*time.Second); err != nil {
					return nil, agent.Failed("stop the serving plane of "+model, err, "run again; the plane stops its servers before it exits")
				}
				return &agent.Result{Summary: fmt.Sprintf("stopped the serving plane of %s (%s, %s) and its model servers", model, owner, url)}, nil
			}
			debug.SetGCPercent(local.PlaneGCPercent) // this process only serves: see PlaneGCPercent
			p, err := local.NewPlane(model, dir, local.WithAddr(addr), local.WithLogger(e.Log), local.WithOwner(e.CLI.App.Name+" serve"))
			if err != nil {
				return nil, agent.Usage("serve", err, "pass --model and --state-dir")
			}
			url, err := p.Start(e.Ctx)
			if err != nil {
				var re *local.RunningError
				if errors.As(err, &re) {
					return nil, agent.Usage("serve "+model, err, "it serves already: use it, or stop it first with '"+e.CLI.App.Name+" serve --stop'")
				}
				return nil, agent.Failed("serve "+model, err, "")
			}
			e.Log.Infof("serving plane of %s at %s until interrupted (predict: POST %s/v1/models/%s:predict)", model, url, url, model)
			if err := p.Serve(e.Ctx); err != nil {
				return nil, agent.Failed("stop the serving plane", err, "")
			}
			return &agent.Result{Summary: fmt.Sprintf("the serving plane of %s stopped", model)}, nil
		},
	})
}
