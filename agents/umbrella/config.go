package umbrella

import (
	"errors"
	"fmt"

	ucli "github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/secrets"
)

// ConfigCommand is `branchml config validate|show|stages`.
func ConfigCommand() *ucli.Command {
	return cli.Command(cli.Spec{
		Name:  "config",
		Usage: "validate and show branchml.yaml",
		Subcommands: []*ucli.Command{
			cli.Command(cli.Spec{
				Name: "validate", Usage: "validate the configuration against the schema (exit 2 when invalid)",
				Stage: "config", NeedsConfig: true,
				Run: func(e *cli.Env) (*cli.Result, error) {
					return &cli.Result{Summary: fmt.Sprintf("%s: valid (project %s)", e.Config.File, e.Config.Project)}, nil
				},
			}),
			cli.Command(cli.Spec{
				Name: "show", Usage: "print the effective configuration after layering (defaults < file < BRANCHML_* < --set)",
				Stage: "config", NeedsConfig: true,
				Run: func(e *cli.Env) (*cli.Result, error) {
					if e.Output == "json" {
						return &cli.Result{Summary: "effective configuration", Outputs: e.Config}, nil
					}
					out, err := yaml.Marshal(e.Config)
					if err != nil {
						return nil, err
					}
					fmt.Fprint(e.Out, secrets.Redact(string(out)))
					return nil, nil
				},
			}),
			cli.Command(cli.Spec{
				Name: "stages", Usage: "print the stages a merge into --branch runs, in order",
				Stage: "config", NeedsConfig: true,
				Flags: []ucli.Flag{&ucli.StringFlag{Name: "branch", Required: true, EnvVars: []string{"BRANCH_NAME"}, Usage: "the branch `NAME`"}},
				Run: func(e *cli.Env) (*cli.Result, error) {
					b := e.CLI.String("branch")
					if b == "" {
						return nil, cli.Usage("stages", errors.New("--branch is empty"), "pass --branch NAME")
					}
					stages := e.Config.StagesForBranch(b)
					if stages == nil {
						stages = []string{}
					}
					return &cli.Result{Summary: fmt.Sprintf("branch %s runs %d stage(s)", b, len(stages)),
						Outputs: map[string]any{"branch": b, "stages": stages}}, nil
				},
			}),
		},
	})
}
