package branchmlcmd

import (
	"errors"
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/secrets"
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
				Run: func(e *cli.Env) (*agent.Result, error) {
					return &agent.Result{Summary: fmt.Sprintf("%s: valid (project %s)", e.Config.File, e.Config.Project)}, nil
				},
			}),
			cli.Command(cli.Spec{
				Name: "show", Usage: "print the effective configuration after layering (defaults < file < BRANCHML_* < --set)",
				Stage: "config", NeedsConfig: true,
				Run: func(e *cli.Env) (*agent.Result, error) {
					if e.Output == "json" {
						return &agent.Result{Summary: "effective configuration", Outputs: e.Config}, nil
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
				Name: "env", Usage: "list the BRANCHML_* environment variables that set config fields",
				Stage: "config",
				Run: func(e *cli.Env) (*agent.Result, error) {
					vars := map[string]string{}
					var b strings.Builder
					for _, kv := range config.EnvVars() {
						vars[kv[0]] = kv[1]
						fmt.Fprintf(&b, "%-52s %s\n", kv[0], kv[1])
					}
					b.WriteString("BRANCHML_TRAINING_PARAMETERS_<NAME>                  training.parameters.<name> (lower-cased)")
					if e.Output == "json" {
						return &agent.Result{Summary: "environment variables of config fields", Outputs: vars}, nil
					}
					return &agent.Result{Summary: b.String()}, nil
				},
			}),
			cli.Command(cli.Spec{
				Name: "stages", Usage: "print the stages a merge into --branch runs, in order",
				Stage: "config", NeedsConfig: true,
				Flags: []ucli.Flag{&ucli.StringFlag{Name: "branch", Required: true, EnvVars: []string{"BRANCH_NAME"}, Usage: "the branch `NAME`"}},
				Run: func(e *cli.Env) (*agent.Result, error) {
					b := e.CLI.String("branch")
					if b == "" {
						return nil, agent.Usage("stages", errors.New("--branch is empty"), "pass --branch NAME")
					}
					stages := e.Config.StagesForBranch(b)
					if stages == nil {
						stages = []string{}
					}
					return &agent.Result{Summary: fmt.Sprintf("branch %s runs %d stage(s)", b, len(stages)),
						Outputs: map[string]any{"branch": b, "stages": stages}}, nil
				},
			}),
		},
	})
}
