// Package trainer is the train component: it reads prepare-data's output,
// trains the network (package nn), scores it and two baselines, and writes a
// model version in TF Serving's layout (package model) with metrics.json and
// training_curves.png.
package trainer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/branchml/djia30/internal/dataset"
	"github.com/branchml/djia30/internal/metrics"
	"github.com/branchml/djia30/internal/model"
	"github.com/branchml/djia30/internal/nn"
	"github.com/branchml/djia30/internal/plot"
)

// Params are the hyper-parameters, as recorded in metrics.json "params".
type Params struct {
	Hidden       []int   `json:"hidden"`
	LearningRate float64 `json:"learning_rate"`
	BatchSize    int     `json:"batch_size"`
	Epochs       int     `json:"epochs"`
	Patience     int     `json:"patience"`
	Seed         int64   `json:"seed"`
}

// DefaultParams are the train component's flag defaults.
func DefaultParams() Params {
	return Params{Hidden: []int{32, 16}, LearningRate: 0.001, BatchSize: 256, Epochs: 30, Patience: 5, Seed: 42}
}

// ParseHidden parses "32,16" into [32 16]; every size must be a positive int.
// An empty string means no hidden layer (logistic regression).
func ParseHidden(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return []int{}, nil
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad --hidden %q: want comma-separated positive integers such as 32,16", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// Options configures Run.
type Options struct {
	Dataset       string // prepare-data's output folder
	ModelBasePath string // TF Serving base path; the version goes to <base>/<version>
	ModelVersion  int64  // positive
	ModelName     string // default "djia30"
	Params        Params
	MetricsOut    string // optional extra copy of metrics.json
	CurvesOut     string // optional extra copy of training_curves.png
}

// SplitScores holds Scores for the three splits.
type SplitScores struct {
	Train      metrics.Scores `json:"train"`
	Validation metrics.Scores `json:"validation"`
	Test       metrics.Scores `json:"test"`
}

// Baselines are the two reference predictors.
type Baselines struct {
	// AlwaysBullish predicts "up" for every row with probability = the train
	// split's share of label 1 (accuracy = share of label 1, AUC 0.5).
	AlwaysBullish SplitScores `json:"always_bullish"`
	// SameAsToday predicts tomorrow's direction = today's (up when the raw
	// 1-day return is > 0), with probability 1-1e-15 for up and 1e-15 for
	// down (hard labels clipped like scikit-learn's log_loss), so its log loss
	// is large by construction.
	SameAsToday SplitScores `json:"same_as_today"`
}

// Metrics is the content of metrics.json. Field order is the file's key order
// and other stages depend on it.
type Metrics struct {
	ModelName    string         `json:"model_name"`
	ModelVersion int64          `json:"model_version"`
	Train        metrics.Scores `json:"train"`
	Validation   metrics.Scores `json:"validation"`
	Test         metrics.Scores `json:"test"`
	Baselines    Baselines      `json:"baselines"`
	EpochsRun    int            `json:"epochs_run"`
	BestEpoch    int            `json:"best_epoch"`
	Params       Params         `json:"params"`
}

// Result is what Run produced.
type Result struct {
	Metrics    Metrics
	VersionDir string
	History    nn.History
}

// Run trains and writes the model version. Input problems (missing or bad
// dataset files) are *dataset.InputError values.
func Run(o Options) (*Result, error) {
	if o.ModelName == "" {
		o.ModelName = "djia30"
	}
	if o.ModelVersion <= 0 {
		return nil, &dataset.InputError{Msg: fmt.Sprintf("--model-version %d: want a positive integer", o.ModelVersion)}
	}
	if o.ModelBasePath == "" {
		return nil, &dataset.InputError{Msg: "--model-base-path is required"}
	}
	schema, err := dataset.ReadSchema(o.Dataset)
	if err != nil {
		return nil, err
	}
	splits := map[string]*dataset.Split{}
	for _, name := range dataset.Splits {
		s, err := dataset.ReadSplit(o.Dataset, name)
		if err != nil {
			return nil, err
		}
		if len(s.Features) != len(schema.Features) {
			return nil, &dataset.InputError{File: filepath.Join(o.Dataset, name+".csv"), Line: 1, Msg: "columns do not match schema.json features"}
		}
		for i, f := range schema.Features {
			if s.Features[i] != f.Name {
				return nil, &dataset.InputError{File: filepath.Join(o.Dataset, name+".csv"), Line: 1, Msg: fmt.Sprintf("column %d is %q, schema.json says %q", i+3, s.Features[i], f.Name)}
			}
		}
		splits[name] = s
	}
	tr, va, te := splits[dataset.SplitTrain], splits[dataset.SplitValidation], splits[dataset.SplitTest]
	if tr.Rows() == 0 || va.Rows() == 0 {
		return nil, &dataset.InputError{File: o.Dataset, Msg: "train and validation splits must not be empty"}
	}
	p := o.Params
	f := len(schema.Features)
	net, hist, err := nn.Train(nn.Config{Hidden: p.Hidden, LearningRate: p.LearningRate, BatchSize: p.BatchSize,
		Epochs: p.Epochs, Patience: p.Patience, Seed: p.Seed}, f, tr.X, tr.Y, va.X, va.Y)
	if err != nil {
		return nil, err
	}
	m := Metrics{ModelName: o.ModelName, ModelVersion: o.ModelVersion, EpochsRun: len(hist.Epochs), BestEpoch: hist.BestEpoch, Params: p}
	if m.Params.Hidden == nil {
		m.Params.Hidden = []int{}
	}
	m.Train = metrics.Compute(net.Predict(tr.X), tr.Y)
	m.Validation = metrics.Compute(net.Predict(va.X), va.Y)
	m.Test = metrics.Compute(net.Predict(te.X), te.Y)
	base := mean(tr.Y)
	for _, c := range []struct {
		s   *dataset.Split
		dst [2]*metrics.Scores
	}{
		{tr, [2]*metrics.Scores{&m.Baselines.AlwaysBullish.Train, &m.Baselines.SameAsToday.Train}},
		{va, [2]*metrics.Scores{&m.Baselines.AlwaysBullish.Validation, &m.Baselines.SameAsToday.Validation}},
		{te, [2]*metrics.Scores{&m.Baselines.AlwaysBullish.Test, &m.Baselines.SameAsToday.Test}},
	} {
		*c.dst[0] = AlwaysBullish(base, c.s.Y)
		*c.dst[1] = SameAsToday(c.s.Ret1Raw, c.s.Y)
	}

	mf := model.File{Format: model.Format, FormatVersion: model.FormatVersion, ModelName: o.ModelName, ModelVersion: o.ModelVersion}
	for _, fs := range schema.Features {
		mf.Features = append(mf.Features, fs.Name)
		mf.Normalization.Mean = append(mf.Normalization.Mean, fs.Mean)
		mf.Normalization.Std = append(mf.Normalization.Std, fs.Std)
	}
	for _, l := range net.Layers {
		in, out := l.W.Dims()
		ml := model.Layer{Activation: l.Activation, Inputs: in, Outputs: out, Bias: append([]float64(nil), l.B...)}
		for i := 0; i < in; i++ {
			ml.Weights = append(ml.Weights, append([]float64(nil), l.W.RawRowView(i)...))
		}
		mf.Layers = append(mf.Layers, ml)
	}
	if _, err := model.Compile(mf); err != nil {
		return nil, err
	}
	modelJSON, err := json.MarshalIndent(mf, "", " ")
	if err != nil {
		return nil, err
	}
	sig, err := model.Signature(mf.Features)
	if err != nil {
		return nil, err
	}
	metricsJSON, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	metricsJSON = append(metricsJSON, '\n')
	png, err := Curves(hist)
	if err != nil {
		return nil, err
	}
	dir, err := model.WriteVersion(o.ModelBasePath, o.ModelVersion, map[string][]byte{
		model.ModelFile: append(modelJSON, '\n'), model.SignatureFile: sig,
		model.MetricsFile: metricsJSON, model.CurvesFile: png,
	})
	if err != nil {
		return nil, err
	}
	for _, c := range []struct {
		path string
		data []byte
	}{{o.MetricsOut, metricsJSON}, {o.CurvesOut, png}} {
		if c.path == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
			return nil, err
		}
		if err := dataset.WriteFileAtomic(c.path, c.data); err != nil {
			return nil, err
		}
	}
	return &Result{Metrics: m, VersionDir: dir, History: hist}, nil
}

// AlwaysBullish scores the constant "up" predictor with probability base
// (the train split's share of label 1): accuracy is the share of label 1 in y,
// AUC 0.5, log loss of the constant probability.
func AlwaysBullish(base float64, y []float64) metrics.Scores {
	p := make([]float64, len(y))
	for i := range p {
		p[i] = base
	}
	s := metrics.Compute(p, y)
	s.Accuracy = mean(y)
	return s
}

// SameAsToday scores the predictor "tomorrow moves like today": up when
// ret1Raw[i] > 0, with probability 1-metrics.Eps for up and metrics.Eps for
// down (hard labels, clipped).
func SameAsToday(ret1Raw, y []float64) metrics.Scores {
	p := make([]float64, len(y))
	for i, r := range ret1Raw {
		p[i] = metrics.Eps
		if r > 0 {
			p[i] = 1 - metrics.Eps
		}
	}
	return metrics.Compute(p, y)
}

// Curves renders the training curves PNG: log loss and AUC per epoch for the
// train and validation splits.
func Curves(h nn.History) ([]byte, error) {
	var tl, vl, ta, vaa []float64
	for _, e := range h.Epochs {
		tl, vl = append(tl, e.TrainLoss), append(vl, e.ValidationLoss)
		ta, vaa = append(ta, e.TrainAUC), append(vaa, e.ValidationAUC)
	}
	return plot.Curves([]plot.Panel{
		{Title: "LOG LOSS", Series: []plot.Series{{Name: "TRAIN", Color: plot.Blue, Y: tl}, {Name: "VALIDATION", Color: plot.Orange, Y: vl}}},
		{Title: "AUC", Series: []plot.Series{{Name: "TRAIN", Color: plot.Blue, Y: ta}, {Name: "VALIDATION", Color: plot.Orange, Y: vaa}}},
	})
}

func mean(y []float64) float64 {
	if len(y) == 0 {
		return 0
	}
	var s float64
	for _, v := range y {
		s += v
	}
	return s / float64(len(y))
}
