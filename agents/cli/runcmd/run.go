package runcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/local"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/traincmd"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/statedir"
)

// Command is `branchml run`.
func Command() *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "run", Usage: "run a compiled KFP v2 pipeline (IR YAML) locally, tasks in containers", ArgsUsage: "PIPELINE.yaml",
		Stage: "run",
		Description: "Runs any pipeline the KFP SDK compiled (kfp.compiler.Compiler().compile(...)) with the local runner:\n" +
			"conditions, loops, nested pipelines, exit handlers, caching, the kubernetes platform spec, each task in a container\n" +
			"(runc or crun; as root) or, with --isolation process, as a host process. Images must be pinned by digest or be in\n" +
			"the embedded registry (branchml-build pushes there). Parameters are typed by the pipeline's inputs.\n" +
			"Uses ./branchml.yaml (or --config) when there is one, for the state directory, registry and storage.\n" +
			"The run stays in the state directory: 'branchml-train status RUN_ID' shows it.\n" +
			"Exit codes: 0 the run succeeded, 1 it failed, 2 bad pipeline or parameters, 130 interrupted (the run is cancelled).",
		Flags: []ucli.Flag{
			&ucli.StringSliceFlag{Name: "param", Aliases: []string{"p"}, Usage: "a pipeline parameter, `NAME=VALUE` (repeatable; LIST and STRUCT values as JSON)"},
			&ucli.StringFlag{Name: "experiment", Value: "branchml-run", Usage: "the experiment the run belongs to"},
			&ucli.StringFlag{Name: "name", Usage: "the run's display name (default <pipeline>-<UTC time>)"},
			&ucli.StringFlag{Name: "isolation", Usage: "container or process (default backends.pipelines.runner.isolation)"},
			&ucli.BoolFlag{Name: "no-cache", Usage: "run every task, ignoring cached results"},
		},
		Run: run,
	})
}

func loadConfig(e *cli.Env) (*config.Config, error) {
	path := e.CLI.String("config")
	sets := e.CLI.StringSlice("set")
	if _, err := os.Stat(path); err == nil {
		return config.Load(path, config.WithSets(sets...))
	} else if e.CLI.IsSet("config") {
		return nil, err
	}
	base := []string{"apiVersion=branchml.dev/v1", "project=local", "branches.build=build", "branches.pipeline=pipeline", "branches.train=train", "branches.deploy=deploy"}
	return config.Load("", config.WithSets(append(base, sets...)...))
}

func run(e *cli.Env) (*agent.Result, error) {
	if e.CLI.NArg() != 1 {
		return nil, agent.Usagef("branchml run PIPELINE.yaml [--param NAME=VALUE …]", "give one compiled pipeline file, got %d arguments", e.CLI.NArg())
	}
	file := e.CLI.Args().First()
	spec, err := os.ReadFile(file)
	if err != nil {
		return nil, agent.Usage("read "+file, err, "give the IR YAML the KFP compiler wrote")
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return nil, agent.Usage("load configuration", err, "fix branchml.yaml or pass --config")
	}
	if iso := e.CLI.String("isolation"); iso != "" {
		cfg.Backends.Pipelines.Runner.Isolation = iso
	}
	if e.CLI.Bool("no-cache") {
		no := false
		cfg.Backends.Pipelines.Runner.Cache = &no
	}
	cfg.Backends.Pipelines.Type = "local"
	e.Config = cfg
	plan, err := runner.Compile(spec)
	if err != nil {
		return nil, agent.Usage("check "+file, err, "change the pipeline so that the local runner can run it, or run it on Kubeflow Pipelines")
	}
	params, err := parseParams(plan, e.CLI.StringSlice("param"))
	if err != nil {
		return nil, agent.Usage("--param", err, "give NAME=VALUE for inputs the pipeline declares: "+strings.Join(paramNames(plan), ", "))
	}
	if _, err := plan.ResolveParams(params); err != nil {
		return nil, agent.Usage("pipeline parameters", err, "pass --param NAME=VALUE")
	}
	spec, pinned, err := pinImages(e.Ctx, cfg, spec)
	if err != nil {
		return nil, agent.Usage("pin the images of "+file, err, "pin each image by digest (repo@sha256:…), or build it into the embedded registry (branchml-build run)")
	}
	for from, to := range pinned {
		e.Log.Infof("image %s is %s in the embedded registry", from, to)
	}
	if e.DryRun {
		return &agent.Result{Summary: fmt.Sprintf("plan: run pipeline %s (%d tasks at its root) with %s", plan.Name, len(plan.Root.Tasks), paramText(params))}, nil
	}
	progress := func(ts runner.TaskState) {
		line := fmt.Sprintf("task %s %s", ts.Name, ts.State)
		switch {
		case ts.Cached:
			line += " (cached)"
		case ts.Error != "":
			line += ": " + ts.Error
		case ts.Note != "" && ts.State == pipelines.StateSkipped:
			line += " (" + ts.Note + ")"
		}
		if ts.Iterations > 0 {
			line += fmt.Sprintf(" [%d iterations]", ts.Iterations)
		}
		e.Log.Info(line)
	}
	b, closeB, err := traincmd.NewPipelinesWith(e, true, runner.WithProgress(progress))
	if err != nil {
		return nil, agent.Usage("pipelines backend", err, "check backends in branchml.yaml")
	}
	defer closeB()
	lb, ok := b.(*local.Backend)
	if !ok {
		return nil, agent.Usagef("", "the local pipelines backend is needed")
	}
	hash := local.SpecHash(spec)
	v, err := lb.UploadVersion(e.Ctx, pipelines.Upload{PipelineName: plan.Name, VersionName: plan.Name + "-" + strings.TrimPrefix(hash, "sha256:")[:12], Spec: spec, SpecHash: hash})
	if err != nil {
		return nil, agent.Usage("store pipeline "+plan.Name, err, "")
	}
	display := e.CLI.String("name")
	if display == "" {
		display = plan.Name + "-" + time.Now().UTC().Format("20060102-150405.000")
	}
	r, err := lb.CreateRun(e.Ctx, pipelines.RunRequest{Experiment: e.CLI.String("experiment"), DisplayName: display, PipelineID: v.PipelineID, VersionID: v.VersionID, Parameters: params})
	if err != nil {
		return nil, agent.Failed("start run "+display, err, "")
	}
	e.Log.Infof("run %s (%s) started: %s", r.ID, display, r.URL)
	lb.Wait(r.ID)
	st, err := runner.ReadState(lb.RunDir(r.ID))
	if err != nil {
		return nil, agent.Failed("read run "+r.ID, err, "")
	}
	res := &agent.Result{Summary: summary(st), Outputs: st, Links: []agent.Link{{Name: "run", URL: "file://" + lb.RunDir(r.ID)}}}
	switch st.State {
	case pipelines.StateSucceeded:
		return res, nil
	case pipelines.StateCanceled:
		if e.Ctx.Err() != nil {
			return res, e.Ctx.Err()
		}
		return res, agent.Failed("run "+r.ID, errors.New("the run was cancelled"), "")
	default:
		return res, agent.Failed("run "+r.ID, errors.New(st.Error), "look at the failed task's log: branchml-train status "+r.ID+", or "+filepath.Join(lb.RunDir(r.ID), "tasks"))
	}
}

func summary(st *runner.State) string {
	counts := map[string]int{}
	for _, t := range st.Tasks {
		counts[t.State]++
	}
	var parts []string
	for _, s := range []string{pipelines.StateSucceeded, pipelines.StateFailed, pipelines.StateSkipped, pipelines.StateCanceled} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], strings.ToLower(s)))
		}
	}
	return fmt.Sprintf("run %s (%s) %s: %s", st.ID, st.DisplayName, st.State, strings.Join(parts, ", "))
}

// parseParams types NAME=VALUE by the pipeline's input definitions.
func parseParams(plan *runner.Plan, kvs []string) (map[string]any, error) {
	out := map[string]any{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not NAME=VALUE", kv)
		}
		def := plan.Params[k]
		if def == nil {
			return nil, fmt.Errorf("the pipeline has no input %q", k)
		}
		switch def.Type {
		case "STRING":
			out[k] = v
		case "NUMBER_INTEGER":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a whole number", k, v)
			}
			out[k] = float64(n)
		case "NUMBER_DOUBLE":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a number", k, v)
			}
			out[k] = f
		case "BOOLEAN":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not true or false", k, v)
			}
			out[k] = b
		default:
			var j any
			if err := json.Unmarshal([]byte(v), &j); err != nil {
				return nil, fmt.Errorf("%s (%s): %q is not JSON", k, def.Type, v)
			}
			out[k] = j
		}
	}
	return out, nil
}

func paramNames(plan *runner.Plan) []string {
	var n []string
	for k := range plan.Params {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func paramText(p map[string]any) string {
	if len(p) == 0 {
		return "the defaults"
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// pinImages replaces each executor image that is not pinned by digest with
// its digest in the embedded registry ("djia30/train:latest" →
// "127.0.0.1:5000/djia30/train@sha256:…"); an image found nowhere is an error.
func pinImages(ctx context.Context, cfg *config.Config, spec []byte) ([]byte, map[string]string, error) {
	ir, err := runner.LoadIR(spec)
	if err != nil {
		return nil, nil, err
	}
	pinned := map[string]string{}
	var addr string
	var stop func()
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for label, ex := range ir.Deploy.GetExecutors() {
		img := ex.GetContainer().GetImage()
		if img == "" || strings.Contains(img, "@sha256:") || strings.HasPrefix(img, "argostub/") || pinned[img] != "" {
			continue
		}
		if addr == "" {
			if addr, stop, err = registry.EnsureLocal(ctx, statedir.Dir(cfg)); err != nil {
				return nil, nil, fmt.Errorf("executor %s image %s is not pinned by digest, and the embedded registry: %w", label, img, err)
			}
		}
		ref, err := name.ParseReference(img, name.WeakValidation)
		if err != nil {
			return nil, nil, fmt.Errorf("executor %s image %q: %w", label, img, err)
		}
		local, err := name.ParseReference(addr+"/"+ref.Context().RepositoryStr()+":"+ref.Identifier(), name.Insecure)
		if err != nil {
			return nil, nil, err
		}
		desc, err := remote.Head(local, remote.WithContext(ctx))
		if err != nil {
			return nil, nil, fmt.Errorf("executor %s image %s is not pinned by digest and not in the embedded registry (%s): %w", label, img, addr, err)
		}
		pinned[img] = addr + "/" + ref.Context().RepositoryStr() + "@" + desc.Digest.String()
	}
	if len(pinned) == 0 {
		return spec, pinned, nil
	}
	out := string(spec)
	for from, to := range pinned {
		re := regexp.MustCompile(`("?image"?\s*:\s*)(['"]?)` + regexp.QuoteMeta(from) + `(['"]?)(\s|,|}|$)`)
		out = re.ReplaceAllString(out, "${1}${2}"+to+"${3}${4}")
	}
	return []byte(out), pinned, nil
}
