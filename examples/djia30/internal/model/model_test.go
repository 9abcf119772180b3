package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func tiny() File {
	return File{Format: Format, FormatVersion: FormatVersion, Features: []string{"a", "b"},
		Normalization: Normalization{Mean: []float64{1, 2}, Std: []float64{2, 4}},
		Layers: []Layer{
			{Activation: "relu", Inputs: 2, Outputs: 2, Weights: [][]float64{{1, -1}, {1, 1}}, Bias: []float64{0, 0.5}},
			{Activation: "sigmoid", Inputs: 2, Outputs: 1, Weights: [][]float64{{1}, {-2}}, Bias: []float64{0.25}},
		}}
}

func TestPredictByHand(t *testing.T) {
	m, err := Compile(tiny())
	if err != nil {
		t.Fatal(err)
	}
	// x = (3, 6) → z = ((3-1)/2, (6-2)/4) = (1, 1); h = relu(1+1, -1+1+0.5) = (2, 0.5);
	// out = sigmoid(2 - 1 + 0.25) = sigmoid(1.25)
	p, err := m.Predict([][]float64{{3, 6}})
	if err != nil || math.Abs(p[0]-1/(1+math.Exp(-1.25))) > 1e-15 {
		t.Errorf("p = %v, %v", p, err)
	}
	if _, err := m.Predict([][]float64{{1}}); err == nil {
		t.Error("wrong width accepted")
	}
	if _, err := m.Predict([][]float64{{1, math.NaN()}}); err == nil {
		t.Error("NaN accepted")
	}
}

func TestValidate(t *testing.T) {
	for name, mut := range map[string]func(*File){
		"format":     func(f *File) { f.Format = "x" },
		"std zero":   func(f *File) { f.Normalization.Std[0] = 0 },
		"mean len":   func(f *File) { f.Normalization.Mean = nil },
		"layer rows": func(f *File) { f.Layers[0].Weights = f.Layers[0].Weights[:1] },
		"act":        func(f *File) { f.Layers[0].Activation = "tanh" },
		"last":       func(f *File) { f.Layers[1].Activation = "relu" },
		"no layers":  func(f *File) { f.Layers = nil },
	} {
		f := tiny()
		mut(&f)
		if err := f.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWriteVersionAndLoad(t *testing.T) {
	base := t.TempDir()
	mj, _ := json.Marshal(tiny())
	sig, _ := Signature([]string{"a", "b"})
	dir, err := WriteVersion(base, 7, map[string][]byte{ModelFile: mj, SignatureFile: sig})
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(base)
	if len(ents) != 1 || ents[0].Name() != "7" {
		t.Errorf("base has %v (temp dir left behind?)", ents)
	}
	m, err := Load(dir)
	if err != nil || m.Version != 7 || m.NumFeatures() != 2 {
		t.Fatalf("load: %v %v", m, err)
	}
	if !strings.Contains(string(m.Signature), `"feature_names"`) || !strings.Contains(string(m.Signature), `"size": "2"`) {
		t.Errorf("signature %s", m.Signature)
	}
	if len(m.Signatures) != 2 || !m.Signatures[DefaultSignature] || !m.Signatures[LabelSignature] {
		t.Errorf("signature names %v", m.Signatures)
	}
	if _, err := WriteVersion(base, 7, nil); err == nil {
		t.Error("overwrote an existing version")
	}
	if _, err := Load(filepath.Join(base, "x")); err == nil {
		t.Error("non-numeric dir loaded")
	}
}

func TestSignature(t *testing.T) {
	b, err := Signature([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	type tensor struct {
		Dtype       string `json:"dtype"`
		TensorShape struct {
			Dim []struct{ Size string } `json:"dim"`
		} `json:"tensor_shape"`
	}
	var doc struct {
		SignatureDef map[string]struct {
			Inputs     map[string]tensor `json:"inputs"`
			Outputs    map[string]tensor `json:"outputs"`
			MethodName string            `json:"method_name"`
		} `json:"signature_def"`
		FeatureNames []string `json:"feature_names"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	str := func(ts map[string]tensor) string {
		var parts []string
		for name, x := range ts {
			var dims []string
			for _, d := range x.TensorShape.Dim {
				dims = append(dims, d.Size)
			}
			parts = append(parts, name+":"+x.Dtype+"["+strings.Join(dims, ",")+"]")
		}
		sort.Strings(parts)
		return strings.Join(parts, " ")
	}
	want := map[string]string{
		DefaultSignature: "features:DT_FLOAT[-1,2] -> probability:DT_FLOAT[-1,1]",
		LabelSignature:   "features:DT_FLOAT[-1,2] -> label:DT_INT64[-1] probability:DT_FLOAT[-1,1]",
	}
	if len(doc.SignatureDef) != len(want) || strings.Join(doc.FeatureNames, ",") != "a,b" {
		t.Errorf("signature.json %s", b)
	}
	for name, w := range want {
		sd := doc.SignatureDef[name]
		if got := str(sd.Inputs) + " -> " + str(sd.Outputs); got != w || sd.MethodName != "tensorflow/serving/predict" {
			t.Errorf("%s: %s (%s), want %s", name, got, sd.MethodName, w)
		}
	}
}

func TestLabel(t *testing.T) {
	for p, want := range map[float64]int64{0: 0, 0.5: 0, 0.5000001: 1, 1: 1} {
		if got := Label(p); got != want {
			t.Errorf("Label(%v) = %d, want %d", p, got, want)
		}
	}
}
