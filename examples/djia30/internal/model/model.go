// Package model is the example's on-disk model format and its inference.
//
// A model version lives in TF Serving's layout, <base_path>/<version>/, where
// version is a positive int64 directory name. The directory holds:
//
//	model.json           this package's File: format name and version, feature
//	                     names in order, z-score normalization, layer weights
//	signature.json       the serving signature (TF Serving SignatureDefMap JSON)
//	metrics.json         written by the train component
//	training_curves.png  written by the train component
//
// Inputs to Predict are RAW feature values in the order of File.Features; the
// model applies its own normalization, then the network.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
)

// Format is the value of File.Format.
const Format = "branchml.djia30.ffnn"

// FormatVersion is the value of File.FormatVersion this package reads and writes.
const FormatVersion = 1

// File names inside a version directory.
const (
	ModelFile     = "model.json"
	SignatureFile = "signature.json"
	MetricsFile   = "metrics.json"
	CurvesFile    = "training_curves.png"
	// PredictionsFile holds the per-example predictions of the gate split
	// (the promotion gate's input, see the example's README).
	PredictionsFile = "predictions.csv"
)

// File is the content of model.json.
type File struct {
	Format        string        `json:"format"`
	FormatVersion int           `json:"format_version"`
	ModelName     string        `json:"model_name"`
	ModelVersion  int64         `json:"model_version"`
	Features      []string      `json:"features"`      // input order, length F
	Normalization Normalization `json:"normalization"` // applied to raw inputs
	Layers        []Layer       `json:"layers"`        // input layer first
}

// Normalization is the z-score applied to raw inputs: x' = (x - Mean[i]) / Std[i];
// both have length F and come from prepare-data's schema.json (fitted on train).
type Normalization struct {
	Mean []float64 `json:"mean"`
	Std  []float64 `json:"std"`
}

// Layer is a dense layer: out = act(in·W + Bias). Weights has Inputs rows of
// Outputs values (Weights[i][j] connects input i to unit j). Activation is
// "relu" or "sigmoid"; the last layer is one sigmoid unit giving P(up).
type Layer struct {
	Activation string      `json:"activation"`
	Inputs     int         `json:"inputs"`
	Outputs    int         `json:"outputs"`
	Weights    [][]float64 `json:"weights"`
	Bias       []float64   `json:"bias"`
}

// Validate checks that the shapes are consistent and the format is known.
func (f *File) Validate() error {
	if f.Format != Format || f.FormatVersion != FormatVersion {
		return fmt.Errorf("model: format %q version %d, want %q version %d", f.Format, f.FormatVersion, Format, FormatVersion)
	}
	n := len(f.Features)
	if n == 0 || len(f.Normalization.Mean) != n || len(f.Normalization.Std) != n {
		return fmt.Errorf("model: %d features but %d means and %d stds", n, len(f.Normalization.Mean), len(f.Normalization.Std))
	}
	for i, s := range f.Normalization.Std {
		if s == 0 || math.IsNaN(s) {
			return fmt.Errorf("model: std of feature %s is %v", f.Features[i], s)
		}
	}
	if len(f.Layers) == 0 {
		return errors.New("model: no layers")
	}
	in := n
	for k, l := range f.Layers {
		if l.Inputs != in || l.Outputs <= 0 || len(l.Weights) != l.Inputs || len(l.Bias) != l.Outputs {
			return fmt.Errorf("model: layer %d: shape mismatch (inputs %d, want %d)", k, l.Inputs, in)
		}
		for _, row := range l.Weights {
			if len(row) != l.Outputs {
				return fmt.Errorf("model: layer %d: weight row has %d values, want %d", k, len(row), l.Outputs)
			}
		}
		if l.Activation != "relu" && l.Activation != "sigmoid" {
			return fmt.Errorf("model: layer %d: unknown activation %q", k, l.Activation)
		}
		in = l.Outputs
	}
	if in != 1 || f.Layers[len(f.Layers)-1].Activation != "sigmoid" {
		return errors.New("model: last layer must be one sigmoid unit")
	}
	return nil
}

// Model is a loaded, validated model ready for Predict. It is immutable and
// safe for concurrent use.
type Model struct {
	File      File
	Signature json.RawMessage // content of signature.json
	// Signatures holds the signature names in signature.json's signature_def.
	Signatures map[string]bool
	Version    int64
	Dir        string
	// flattened for inference
	mean, invStd []float64
	ws, bs       [][]float64
	acts         []bool // true = relu
	maxWidth     int
}

// Compile validates f and prepares it for inference.
func Compile(f File) (*Model, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	m := &Model{File: f, mean: f.Normalization.Mean, maxWidth: len(f.Features)}
	for _, s := range f.Normalization.Std {
		m.invStd = append(m.invStd, 1/s)
	}
	for _, l := range f.Layers {
		w := make([]float64, 0, l.Inputs*l.Outputs)
		for _, row := range l.Weights {
			w = append(w, row...)
		}
		m.ws = append(m.ws, w)
		m.bs = append(m.bs, l.Bias)
		m.acts = append(m.acts, l.Activation == "relu")
		m.maxWidth = max(m.maxWidth, l.Outputs)
	}
	return m, nil
}

// NumFeatures returns F, the number of inputs per instance.
func (m *Model) NumFeatures() int { return len(m.File.Features) }

// Predict returns P(up) for each instance of raw feature values (each of
// length F, in File.Features order). It fails when an instance has the wrong
// length or a non-finite value.
func (m *Model) Predict(instances [][]float64) ([]float64, error) {
	f := m.NumFeatures()
	out := make([]float64, len(instances))
	a := make([]float64, m.maxWidth)
	b := make([]float64, m.maxWidth)
	for i, x := range instances {
		if len(x) != f {
			return nil, fmt.Errorf("instance %d has %d features, want %d", i, len(x), f)
		}
		for k, v := range x {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("instance %d feature %d is not finite", i, k)
			}
			a[k] = (v - m.mean[k]) * m.invStd[k]
		}
		in := f
		for l, w := range m.ws {
			bias := m.bs[l]
			outN := len(bias)
			copy(b[:outN], bias)
			for p := 0; p < in; p++ {
				ap := a[p]
				if ap == 0 {
					continue
				}
				row := w[p*outN : (p+1)*outN]
				for j, wv := range row {
					b[j] += ap * wv
				}
			}
			if m.acts[l] {
				for j := 0; j < outN; j++ {
					if b[j] < 0 {
						b[j] = 0
					}
				}
			} else {
				for j := 0; j < outN; j++ {
					b[j] = sigmoid(b[j])
				}
			}
			a, b = b, a
			in = outN
		}
		out[i] = a[0]
	}
	return out, nil
}

func sigmoid(v float64) float64 {
	if v >= 0 {
		return 1 / (1 + math.Exp(-v))
	}
	e := math.Exp(v)
	return e / (1 + e)
}

// Load reads and compiles the model in the version directory dir
// (<base_path>/<version>); the version is the directory's name.
func Load(dir string) (*Model, error) {
	v, err := strconv.ParseInt(filepath.Base(dir), 10, 64)
	if err != nil || v <= 0 {
		return nil, fmt.Errorf("model: %s: directory name is not a positive version number", dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, ModelFile))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("model: %s: %w", filepath.Join(dir, ModelFile), err)
	}
	m, err := Compile(f)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, dir)
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	var sd struct {
		SignatureDef map[string]json.RawMessage `json:"signature_def"`
	}
	if err := json.Unmarshal(sig, &sd); err != nil {
		return nil, fmt.Errorf("model: %s: %w", filepath.Join(dir, SignatureFile), err)
	}
	m.Signatures = map[string]bool{}
	for name := range sd.SignatureDef {
		m.Signatures[name] = true
	}
	m.Signature, m.Version, m.Dir = sig, v, dir
	return m, nil
}

// WriteVersion creates <base>/<version>/ holding files (name → content)
// atomically: the files are written into a hidden temp directory in base
// (".tmp-<version>-*", which a server ignores because it is not a number) that
// is then renamed to <version>. It fails if the version directory exists.
func WriteVersion(base string, version int64, files map[string][]byte) (string, error) {
	if version <= 0 {
		return "", fmt.Errorf("model: version %d: want a positive integer", version)
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	final := filepath.Join(base, strconv.FormatInt(version, 10))
	if _, err := os.Stat(final); err == nil {
		return "", fmt.Errorf("model: %s already exists (model versions are immutable; pick a new --model-version)", final)
	}
	tmp, err := os.MkdirTemp(base, ".tmp-"+strconv.FormatInt(version, 10)+"-")
	if err != nil {
		return "", err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return final, nil
}

// Serving signature names and output names (see Signature).
const (
	// DefaultSignature ("serving_default") has one output, OutputProbability.
	DefaultSignature = "serving_default"
	// LabelSignature ("predict_label") has two outputs, OutputProbability
	// and OutputLabel.
	LabelSignature = "predict_label"

	OutputProbability = "probability" // DT_FLOAT [-1, 1]: P(up)
	OutputLabel       = "label"       // DT_INT64 [-1]: 1 when P(up) > 0.5, else 0
)

// Label is the class of a probability: 1 (up) when p > 0.5, else 0, the
// threshold of metrics.json's accuracy.
func Label(p float64) int64 {
	if p > 0.5 {
		return 1
	}
	return 0
}

// Signature returns the signature.json content for a model with the given
// feature names: TF Serving's SignatureDefMap JSON (as in a GetModelMetadata
// response's metadata.signature_def) with two signatures, both with input
// "features" DT_FLOAT [-1, F] and method tensorflow/serving/predict:
//
//	serving_default  one output: "probability" DT_FLOAT [-1, 1]
//	predict_label    two outputs: "probability" DT_FLOAT [-1, 1] and
//	                 "label" DT_INT64 [-1] (1 when probability > 0.5)
//
// The extra key "feature_names" lists the input columns in order.
func Signature(features []string) ([]byte, error) {
	type dim struct {
		Size string `json:"size"`
		Name string `json:"name"`
	}
	type shape struct {
		Dim         []dim `json:"dim"`
		UnknownRank bool  `json:"unknown_rank"`
	}
	type tensor struct {
		Dtype       string `json:"dtype"`
		TensorShape shape  `json:"tensor_shape"`
		Name        string `json:"name"`
	}
	type sigdef struct {
		Inputs     map[string]tensor `json:"inputs"`
		Outputs    map[string]tensor `json:"outputs"`
		MethodName string            `json:"method_name"`
	}
	f := strconv.Itoa(len(features))
	input := func(sig string) map[string]tensor {
		return map[string]tensor{"features": {Dtype: "DT_FLOAT", Name: sig + "_features:0",
			TensorShape: shape{Dim: []dim{{"-1", ""}, {f, ""}}}}}
	}
	prob := tensor{Dtype: "DT_FLOAT", Name: "StatefulPartitionedCall:0", TensorShape: shape{Dim: []dim{{"-1", ""}, {"1", ""}}}}
	doc := struct {
		SignatureDef map[string]sigdef `json:"signature_def"`
		FeatureNames []string          `json:"feature_names"`
	}{
		SignatureDef: map[string]sigdef{
			DefaultSignature: {
				Inputs:     input(DefaultSignature),
				Outputs:    map[string]tensor{OutputProbability: prob},
				MethodName: "tensorflow/serving/predict",
			},
			LabelSignature: {
				Inputs: input(LabelSignature),
				Outputs: map[string]tensor{
					OutputProbability: {Dtype: "DT_FLOAT", Name: "StatefulPartitionedCall_1:0", TensorShape: prob.TensorShape},
					OutputLabel:       {Dtype: "DT_INT64", Name: "StatefulPartitionedCall_1:1", TensorShape: shape{Dim: []dim{{"-1", ""}}}},
				},
				MethodName: "tensorflow/serving/predict",
			},
		},
		FeatureNames: features,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n'), err
}
