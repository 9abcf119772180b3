// Package trainer is the train component: it reads prepare-data's output,
// trains the network (package nn), scores it and two baselines, and writes a
// model version in TF Serving's layout (package model) with metrics.json,
// training_curves.png and predictions.csv (the per-example predictions of
// the gate split, for branchml's promotion gate).
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
	// PredictionsSplit is the split whose per-example predictions are
	// written (default "test"); it must not be train (fitting) or validation
	// (early stopping): the gate needs a split the model never saw.
	PredictionsSplit string
	PredictionsOut   string // optional extra copy of predictions.csv
}

// SplitScores holds Scores for the three splits.
type SplitScores struct {
	Train      metrics.Scores `json:"train"`
	Validation metrics.Scores `json:"validation"`
	Test       metrics.Scores `json:"test"`
}

// Baselines are the two reference predictors, both fitted on the train
// split only.
type Baselines struct {
	// BaseRate predicts the train split's share of label 1 for every row
	// (AUC 0.5).
	BaseRate SplitScores `json:"base_rate"`
	// SameAsToday is persistence: "tomorrow is a large move when today was
	// one", as a probability: the train split's share of large moves after a
	// large-move day, and after a calm day (label_today 1 or 0).
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
	if o.PredictionsSplit == "" {
		o.PredictionsSplit = dataset.SplitTest
	}
	gate, ok := splits[o.PredictionsSplit]
	switch {
	case o.PredictionsSplit == dataset.SplitTrain || o.PredictionsSplit == dataset.SplitValidation:
		return nil, &dataset.InputError{Msg: fmt.Sprintf("--predictions-split %s: the model is fitted on train and early-stopped on validation; the gate needs a held-out split (test)", o.PredictionsSplit)}
	case !ok:
		return nil, &dataset.InputError{Msg: fmt.Sprintf("--predictions-split %q: want test", o.PredictionsSplit)}
	case gate.Rows() == 0:
		return nil, &dataset.InputError{File: o.Dataset, Msg: "the " + o.PredictionsSplit + " split is empty: the gate has nothing to measure"}
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
	bl := FitBaselines(tr)
	for _, c := range []struct {
		s   *dataset.Split
		dst [2]*metrics.Scores
	}{
		{tr, [2]*metrics.Scores{&m.Baselines.BaseRate.Train, &m.Baselines.SameAsToday.Train}},
		{va, [2]*metrics.Scores{&m.Baselines.BaseRate.Validation, &m.Baselines.SameAsToday.Validation}},
		{te, [2]*metrics.Scores{&m.Baselines.BaseRate.Test, &m.Baselines.SameAsToday.Test}},
	} {
		*c.dst[0] = metrics.Compute(bl.BaseRate(c.s), c.s.Y)
		*c.dst[1] = metrics.Compute(bl.SameAsToday(c.s), c.s.Y)
	}
	preds := Predictions(o.PredictionsSplit, gate, net.Predict(gate.X), bl)

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
		model.MetricsFile: metricsJSON, model.CurvesFile: png, model.PredictionsFile: preds,
	})
	if err != nil {
		return nil, err
	}
	for _, c := range []struct {
		path string
		data []byte
	}{{o.MetricsOut, metricsJSON}, {o.CurvesOut, png}, {o.PredictionsOut, preds}} {
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

// Baseline holds the two baselines' parameters, fitted on the train split.
type Baseline struct {
	// Rate is the train share of label 1; AfterLarge and AfterCalm the train
	// shares of label 1 among rows with label_today 1 and 0.
	Rate, AfterLarge, AfterCalm float64
}

// FitBaselines fits both baselines on tr.
func FitBaselines(tr *dataset.Split) Baseline {
	var large, largeY, calm, calmY float64
	for i, y := range tr.Y {
		if tr.LabelToday[i] == 1 {
			large, largeY = large+1, largeY+y
		} else {
			calm, calmY = calm+1, calmY+y
		}
	}
	b := Baseline{Rate: mean(tr.Y), AfterLarge: largeY / max(large, 1), AfterCalm: calmY / max(calm, 1)}
	return b
}

// BaseRate is the base_rate baseline's probability for every row of s.
func (b Baseline) BaseRate(s *dataset.Split) []float64 {
	p := make([]float64, s.Rows())
	for i := range p {
		p[i] = b.Rate
	}
	return p
}

// SameAsToday is the same_as_today baseline's probability for each row of s.
func (b Baseline) SameAsToday(s *dataset.Split) []float64 {
	p := make([]float64, s.Rows())
	for i, t := range s.LabelToday {
		p[i] = b.AfterCalm
		if t == 1 {
			p[i] = b.AfterLarge
		}
	}
	return p
}

// PredictionsHeader is the header line of predictions.csv.
const PredictionsHeader = "split,date,ticker,label,model,base_rate,same_as_today"

// Predictions renders predictions.csv: one row per example of the split s
// (named split) with its label, the model's probability p and both
// baselines' probabilities, floats in the shortest form that round-trips.
func Predictions(split string, s *dataset.Split, p []float64, b Baseline) []byte {
	base, same := b.BaseRate(s), b.SameAsToday(s)
	out := make([]byte, 0, 80*s.Rows()+len(PredictionsHeader)+1)
	out = append(out, PredictionsHeader+"\n"...)
	for i := range p {
		out = append(out, split...)
		out = append(out, ',')
		out = append(out, s.Dates[i]...)
		out = append(out, ',')
		out = append(out, s.Tickers[i]...)
		out = append(out, ',')
		out = strconv.AppendInt(out, int64(s.Y[i]), 10)
		for _, v := range []float64{p[i], base[i], same[i]} {
			out = append(out, ',')
			out = strconv.AppendFloat(out, v, 'g', -1, 64)
		}
		out = append(out, '\n')
	}
	return out
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
