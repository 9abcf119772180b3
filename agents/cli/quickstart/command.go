package quickstart

import (
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/internal/agent"
)

// Command is `branchml quickstart`.
func Command() *ucli.Command {
	return cli.Command(cli.Spec{
		Name:  "quickstart",
		Usage: "run the whole flow on one machine on the real DJIA 30 data",
		Description: "Creates a local ML repository from examples/djia30 (a bare remote, a clone, the stage branches),\n" +
			"starts the embedded services on loopback, then merges into each stage branch and runs its stage\n" +
			"exactly as Jenkins would: build → pipeline → training (snapshot, lineage, KPI gate, PR) → deploy\n" +
			"(canary) → a live prediction. Running it again is idempotent.",
		Stage: "quickstart",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "data", Usage: "`DIR` of the Kaggle per-ticker CSVs (or the merged CSV); default ../shared/data/djia30"},
			&ucli.StringFlag{Name: "workdir", Usage: "`DIR` for the repository, workspaces, state and report; default .work/quickstart"},
			&ucli.StringFlag{Name: "example", Usage: "the example ML repository `DIR`; default examples/djia30"},
			&ucli.BoolFlag{Name: "serve", Usage: "keep serving the model until interrupted"},
			&ucli.BoolFlag{Name: "rerun", Usage: "start a new training run even if this commit has one"},
			&ucli.BoolFlag{Name: "cluster", Usage: "storage and serving on the Kubernetes test bed (PVCs, CSI VolumeSnapshots, pods behind a Service; needs root, containerd, runc, the CNI plugins, docker-registry, iproute2, util-linux; built on first use, see test/k8s)"},
			&ucli.BoolFlag{Name: "continue", Usage: "run only the stages whose branch moved since they last ran here (after you merged a pull request); merge nothing"},
			&ucli.BoolFlag{Name: "verbose", Usage: "also print the agents' logs"},
		},
		Run: func(e *cli.Env) (*agent.Result, error) {
			for _, f := range []string{"dry-run", "config", "set"} {
				if e.CLI.IsSet(f) {
					return nil, agent.Usagef("leave out --"+f+": the quickstart makes its own repository and configuration under --workdir",
						"quickstart does not take --%s", f)
				}
			}
			opt := Options{
				Data: e.CLI.String("data"), Workdir: e.CLI.String("workdir"), Example: e.CLI.String("example"),
				Serve: e.CLI.Bool("serve"), Rerun: e.CLI.Bool("rerun"), Cluster: e.CLI.Bool("cluster"), Continue: e.CLI.Bool("continue"), Out: os.Stderr, Log: e.Log,
			}
			if e.Output == "text" {
				opt.Out = e.Out
			}
			if e.CLI.Bool("verbose") {
				opt.LogOut = os.Stderr
			}
			sum, err := Run(e.Ctx, opt)
			if err != nil {
				return nil, err
			}
			res := &agent.Result{Summary: "quickstart done in " + sum.Total.Round(100e6).String()}
			if e.Output == "json" {
				// The text summary was printed already; JSON gets the whole record.
				res.Outputs = sum
			}
			return res, nil
		},
	})
}
