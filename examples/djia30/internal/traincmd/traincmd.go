// Package traincmd is the train command: flag parsing and the call into
// package trainer.
package traincmd

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/branchml/djia30/internal/dataset"
	"github.com/branchml/djia30/internal/trainer"
)

// Exit codes of the command.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2 // bad usage or bad input data
)

// Main runs train with args (without the program name), logging to stderr,
// and returns the exit code. See the README for the flags.
func Main(args []string, stderr io.Writer) int {
	d := trainer.DefaultParams()
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ds := fs.String("dataset", "", "prepare-data's output folder (required)")
	base := fs.String("model-base-path", "", "TF Serving model base path; the model goes to <base>/<version> (required)")
	version := fs.Int64("model-version", 1, "model version (positive int64, the version directory name)")
	name := fs.String("model-name", "djia30", "model name recorded in model.json and metrics.json")
	hidden := fs.String("hidden", "32,16", "hidden layer sizes, comma-separated")
	lr := fs.Float64("learning-rate", d.LearningRate, "Adam learning rate")
	bs := fs.Int("batch-size", d.BatchSize, "mini-batch size (rows)")
	epochs := fs.Int("epochs", d.Epochs, "maximum epochs")
	patience := fs.Int("patience", d.Patience, "early stopping: epochs without a lower validation log loss")
	seed := fs.Int64("seed", d.Seed, "random seed (initialization and shuffling)")
	metricsOut := fs.String("metrics-out", "", "optional extra copy of metrics.json (e.g. a KFP output artifact path)")
	curvesOut := fs.String("curves-out", "", "optional extra copy of training_curves.png")
	predSplit := fs.String("predictions-split", "test", "the held-out split whose per-example predictions are written (predictions.csv; not train or validation)")
	predOut := fs.String("predictions-out", "", "optional extra copy of predictions.csv (e.g. a KFP output artifact path)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "train: unexpected arguments %q\n", fs.Args())
		return ExitUsage
	}
	if *ds == "" || *base == "" {
		fmt.Fprintln(stderr, "train: --dataset and --model-base-path are required")
		return ExitUsage
	}
	h, err := trainer.ParseHidden(*hidden)
	if err != nil {
		fmt.Fprintln(stderr, "train:", err)
		return ExitUsage
	}
	p := trainer.Params{Hidden: h, LearningRate: *lr, BatchSize: *bs, Epochs: *epochs, Patience: *patience, Seed: *seed}
	if p.LearningRate <= 0 || p.BatchSize <= 0 || p.Epochs <= 0 || p.Patience < 0 {
		fmt.Fprintln(stderr, "train: --learning-rate, --batch-size and --epochs must be positive, --patience non-negative")
		return ExitUsage
	}
	start := time.Now()
	res, err := trainer.Run(trainer.Options{Dataset: *ds, ModelBasePath: *base, ModelVersion: *version, ModelName: *name,
		Params: p, MetricsOut: *metricsOut, CurvesOut: *curvesOut, PredictionsSplit: *predSplit, PredictionsOut: *predOut})
	if err != nil {
		fmt.Fprintln(stderr, "train:", err)
		if dataset.IsInputError(err) {
			return ExitUsage
		}
		return ExitFailure
	}
	v, _ := json.Marshal(res.Metrics.Validation)
	fmt.Fprintf(stderr, "train: wrote %s in %s (epochs %d, best %d); validation %s\n", res.VersionDir,
		time.Since(start).Round(time.Millisecond), res.Metrics.EpochsRun, res.Metrics.BestEpoch, v)
	return ExitOK
}
