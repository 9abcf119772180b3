package kpicmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/stages/train/kpi"
)

// MetricsFile is the metrics file of a metrics directory.
const MetricsFile = "metrics.json"

// Command returns `branchml kpi` with its subcommand `check`, for the
// umbrella binary to register:
//
//	branchml kpi check --config branchml.yaml --metrics DIR [--champion DIR]
//
// DIR holds metrics.json (needed by point checks) and predictions.csv
// (needed by KPIs with confidence: the gate split's per-example
// predictions); --champion names the serving model's directory of the same
// layout, without which champion KPIs are skipped. Exit codes: 0 every KPI
// is met, 3 a KPI is not met, 2 bad configuration or input.
func Command() *ucli.Command {
	check := cli.Command(cli.Spec{
		Name:  "check",
		Usage: "decide the promotion gate of branchml.yaml on a metrics directory",
		Description: "DIR holds metrics.json and predictions.csv, as a model version directory of the example does.\n" +
			"Exit codes: 0 the KPIs are met, 3 a KPI is not met, 2 bad configuration or input.",
		Stage:       "kpi",
		NeedsConfig: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "metrics", EnvVars: []string{"BRANCHML_KPI_METRICS"}, Usage: "the challenger's metrics `DIR` (metrics.json, predictions.csv)"},
			&ucli.StringFlag{Name: "champion", EnvVars: []string{"BRANCHML_KPI_CHAMPION"}, Usage: "the serving model's metrics `DIR`, for champion KPIs"},
		},
		Run: runCheck,
	})
	return &ucli.Command{Name: "kpi", Usage: "the promotion gate", Subcommands: []*ucli.Command{check}}
}

func runCheck(e *cli.Env) (*agent.Result, error) {
	dir := e.CLI.String("metrics")
	if dir == "" {
		return nil, agent.Usagef("pass --metrics DIR (a model version directory, or one with metrics.json and predictions.csv)", "kpi check: no --metrics")
	}
	cfg := e.Config
	in := kpi.Input{Gate: cfg.Training.Gate, KPIs: cfg.Training.KPIs, NoChampion: "no champion: pass --champion DIR"}
	needPoint := false
	for _, k := range cfg.Training.KPIs {
		needPoint = needPoint || k.Op != ""
	}
	m, err := readMetrics(dir, needPoint)
	if err != nil {
		return nil, err
	}
	in.Metrics = m
	if kpi.HasConfidenceKPIs(cfg.Training.KPIs) {
		if in.Predictions, err = readPredictions(dir, "predictions in "+dir, cfg.Training.Gate.Split); err != nil {
			return nil, err
		}
	}
	if cdir := e.CLI.String("champion"); cdir != "" && kpi.NeedsChampion(cfg.Training.KPIs) {
		cp, err := readPredictions(cdir, "champion's predictions in "+cdir, cfg.Training.Gate.Split)
		if err != nil {
			return nil, err
		}
		ref := kpi.ChampionRef{Model: cfg.Deploy.Model}
		if cm, err := readMetrics(cdir, false); err == nil && cm != nil {
			if v, err := kpi.Lookup(cm, "model_version"); err == nil {
				ref.Version = int64(v)
			}
		}
		in.Champion = &kpi.Champion{Ref: ref, Predictions: cp}
	}
	res, err := kpi.Decide(in)
	if err != nil {
		return nil, agent.Usage("evaluate the KPIs on "+dir, err, "fix the predictions or training.gate / training.kpis in "+e.CLI.String("config"))
	}
	summary := strings.TrimRight(res.Text(), "\n") + "\n\nKPI gate " + res.Verdict
	out := &agent.Result{Summary: summary, Outputs: res}
	if res.Verdict != kpi.Passed {
		return out, agent.Gate("KPI gate on "+dir, errors.New(strings.Join(res.Reasons, "; ")), "improve the model, or adjust training.kpis")
	}
	return out, nil
}

// readMetrics reads DIR/metrics.json; a missing file is nil, or an error
// when required.
func readMetrics(dir string, required bool) (map[string]any, error) {
	p := filepath.Join(dir, MetricsFile)
	raw, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil, nil
	}
	if err != nil {
		return nil, agent.Usage("read "+p, err, "point checks (KPIs with op) need the run's metrics.json in --metrics DIR")
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, agent.Usage("read "+p, fmt.Errorf("not a JSON object: %w", err), "")
	}
	return m, nil
}

// readPredictions reads and parses DIR/predictions.csv.
func readPredictions(dir, what, split string) (*kpi.Predictions, error) {
	p := filepath.Join(dir, kpi.PredictionsFile)
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, agent.Usage("read "+p, err, "KPIs with confidence need the gate split's per-example predictions ("+kpi.PredictionsFile+") in the directory")
	}
	pr, err := kpi.ParsePredictions(what, raw, split)
	if err != nil {
		return nil, agent.Usage("read "+p, err, "")
	}
	return pr, nil
}
