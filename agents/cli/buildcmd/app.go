package buildcmd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge/forgefactory"
	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/commitstatus"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/statedir"
	buildstage "github.com/branchml/branchml/agents/stages/build"
)

// App returns the branchml-build application.
func App() *ucli.App {
	return cli.NewApp("branchml-build", "the build stage of branchml", RunCommand())
}

// RunCommand is `branchml-build run`.
func RunCommand() *ucli.Command {
	return cli.Command(cli.Spec{
		Name:  "run",
		Usage: "test, build and push the components whose sources changed; write the lock to the build branch",
		Description: "Components come from branchml.yaml. A component whose source hash and image match\n" +
			".branchml/components.lock.json on the build branch is skipped. Tests run first (JUnit XML\n" +
			"in --junit); a failing test stops the stage before anything is pushed.",
		Stage: "build", NeedsConfig: true, BuildFlags: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "junit", Value: buildstage.DefaultJUnitPath, EnvVars: []string{"BRANCHML_JUNIT"}, Usage: "JUnit XML `FILE` (relative to --workspace)"},
			&ucli.BoolFlag{Name: "force", Usage: "rebuild every component whatever the lock says"},
			&ucli.StringFlag{Name: "builder", EnvVars: []string{"BRANCHML_BUILDER"}, Usage: "Dockerfile builder: docker, buildah or kaniko (default: the first on PATH)"},
			&ucli.StringFlag{Name: "source-url", EnvVars: []string{"BRANCHML_SOURCE_URL"}, Usage: "org.opencontainers.image.source `URL` (default: from backends.forge)"},
			&ucli.StringFlag{Name: "platform", EnvVars: []string{"BRANCHML_PLATFORM"}, Usage: "`os/arch[,os/arch…]` of every Go component's image, e.g. linux/amd64,linux/arm64 for a multi-platform index (default: components[].platforms, else the agent's own)"},
		},
		Run: commitstatus.Wrap("build", run),
	})
}

// Outputs are the stage's result outputs.
type Outputs struct {
	Components  map[string]buildstage.ComponentResult `json:"components"`
	Registry    string                                `json:"registry"`
	LockCommit  string                                `json:"lockCommit,omitempty"`
	LockChanged bool                                  `json:"lockChanged"`
}

func run(e *cli.Env) (*agent.Result, error) {
	cfg := e.Config
	epoch, err := sourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return nil, err
	}
	f, err := forgefactory.New(cfg, forgefactory.WithLogger(e.Log))
	if err != nil {
		return nil, agent.Usage("open the forge", err, "fix backends.forge in branchml.yaml (for local: create the remote, e.g. with branchml quickstart)")
	}
	if err := forgefactory.RequireApproval(e.Ctx, cfg, f, config.StageBuild, e.Build.Commit, e.DryRun); err != nil {
		return nil, err
	}
	rb := cfg.Backends.Registry
	rb.CAFile = cfg.Path(rb.CAFile)
	reg, closeReg, err := registry.Open(e.Ctx, rb, statedir.Dir(cfg), registry.WithLogger(e.Log))
	if err != nil {
		return nil, agent.Usage("open the registry", err, "fix backends.registry in branchml.yaml")
	}
	defer closeReg()
	workspace := e.Build.Workspace
	if workspace == "" {
		workspace = cfg.Dir
	}
	sourceURL := e.CLI.String("source-url")
	if sourceURL == "" {
		sourceURL = SourceURL(cfg)
	}
	var platforms []string
	if v := e.CLI.String("platform"); v != "" {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				platforms = append(platforms, p)
			}
		}
	}
	res, err := buildstage.Run(e.Ctx, buildstage.Options{
		Config: cfg, Forge: f, Registry: reg, Workspace: workspace, Commit: e.Build.Commit,
		DryRun: e.DryRun, Force: e.CLI.Bool("force"), JUnitPath: e.CLI.String("junit"),
		Created: epoch, SourceURL: sourceURL, Platforms: platforms, BuilderName: e.CLI.String("builder"), Log: e.Log,
		TestOutput: e.CLI.App.ErrWriter,
	})
	if res == nil {
		return nil, err
	}
	out := Outputs{Components: map[string]buildstage.ComponentResult{}, Registry: res.Registry, LockCommit: res.LockCommit, LockChanged: res.LockChanged}
	for _, c := range res.Components {
		out.Components[c.Name] = c
	}
	result := &agent.Result{Summary: res.Summary(e.DryRun), Outputs: out}
	if res.JUnit != "" {
		p := res.JUnit
		if rel, rerr := filepath.Rel(workspace, p); rerr == nil && filepath.IsLocal(rel) {
			p = rel
		}
		result.Reports = append(result.Reports, agent.Report{Name: "component tests", Path: filepath.ToSlash(p), Kind: "junit"})
	}
	if err != nil {
		result.Summary = ""
	}
	return result, err
}

// SourceURL is the org.opencontainers.image.source of cfg's repository, a
// URL: https://github.com/<owner>/<repo> for the GitHub forge, the git
// remote's file:// URL for the local one.
func SourceURL(cfg *config.Config) string {
	switch cfg.Backends.Forge.Type {
	case "github":
		if cfg.Backends.Forge.Owner != "" && cfg.Backends.Forge.Repo != "" {
			return "https://github.com/" + cfg.Backends.Forge.Owner + "/" + cfg.Backends.Forge.Repo
		}
		return ""
	default:
		remote := forgefactory.LocalRemote(cfg)
		if remote == "" {
			return ""
		}
		if abs, err := filepath.Abs(remote); err == nil {
			remote = abs
		}
		u, err := buildstage.SourceURL(remote)
		if err != nil {
			return ""
		}
		return u
	}
}

// sourceDateEpoch parses SOURCE_DATE_EPOCH (seconds since the Unix epoch;
// "" means the epoch itself).
func sourceDateEpoch(v string) (time.Time, error) {
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, agent.Usagef("set SOURCE_DATE_EPOCH to whole seconds since 1970, e.g. $(git log -1 --format=%ct)", "SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
	}
	return time.Unix(n, 0).UTC(), nil
}
