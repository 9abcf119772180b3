package trainer

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/branchml/djia30/internal/datadir"
	"github.com/branchml/djia30/internal/dataset"
	"github.com/branchml/djia30/internal/model"
)

// prepared writes a prepare-data output for a few real tickers.
func prepared(t testing.TB, tickers ...string) string {
	t.Helper()
	d, ok := datadir.TickerDir()
	if !ok {
		t.Skip(datadir.SkipMessage)
	}
	// only the named tickers' files, linked into a temp folder (faster than filtering)
	in := t.TempDir()
	for _, tk := range tickers {
		name := tk + "_2006-01-01_to_2018-01-01.csv"
		if err := os.Symlink(filepath.Join(d, name), filepath.Join(in, name)); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	if _, err := dataset.Prepare(dataset.Options{Input: in, Output: out}); err != nil {
		t.Fatal(err)
	}
	return out
}

func smallParams() Params {
	p := DefaultParams()
	p.Epochs, p.Patience = 3, 2
	return p
}

// Retraining with the same data, flags and seed writes byte-identical
// files, whatever GOMAXPROCS is.
func TestTrainingIsDeterministic(t *testing.T) {
	ds := prepared(t, "AAPL", "KO")
	var dirs []string
	var res []*Result
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 4} {
		runtime.GOMAXPROCS(procs)
		base := t.TempDir()
		extra := filepath.Join(t.TempDir(), "out", "metrics.json")
		r, err := Run(Options{Dataset: ds, ModelBasePath: base, ModelVersion: 3, Params: smallParams(), MetricsOut: extra, CurvesOut: filepath.Join(filepath.Dir(extra), "c.png")})
		if err != nil {
			t.Fatal(err)
		}
		if r.VersionDir != filepath.Join(base, "3") {
			t.Errorf("version dir %s", r.VersionDir)
		}
		b1, _ := os.ReadFile(extra)
		b2, _ := os.ReadFile(filepath.Join(r.VersionDir, model.MetricsFile))
		if !bytes.Equal(b1, b2) || len(b1) == 0 {
			t.Error("--metrics-out copy differs from metrics.json")
		}
		dirs, res = append(dirs, r.VersionDir), append(res, r)
	}
	for _, f := range []string{model.ModelFile, model.SignatureFile, model.MetricsFile, model.CurvesFile, model.PredictionsFile} {
		a, err := os.ReadFile(filepath.Join(dirs[0], f))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dirs[1], f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two trainings with the same seed", f)
		}
	}
	m := res[0].Metrics
	t.Logf("validation: model acc %.4f auc %.4f | base_rate acc %.4f auc %.4f | same_as_today acc %.4f auc %.4f",
		m.Validation.Accuracy, m.Validation.AUC, m.Baselines.BaseRate.Validation.Accuracy, m.Baselines.BaseRate.Validation.AUC,
		m.Baselines.SameAsToday.Validation.Accuracy, m.Baselines.SameAsToday.Validation.AUC)
	if m.Train.Rows != 2467+2468 {
		t.Errorf("train rows %d", m.Train.Rows)
	}
	if m.Validation.Rows != 2*252 || m.Test.Rows != 2*250 {
		t.Errorf("rows %d %d", m.Validation.Rows, m.Test.Rows)
	}
	if m.Baselines.BaseRate.Validation.AUC != 0.5 || m.EpochsRun < 1 || m.BestEpoch < 1 || m.BestEpoch > m.EpochsRun {
		t.Errorf("metrics %+v", m)
	}
	// a different seed gives different weights
	r3, err := Run(Options{Dataset: ds, ModelBasePath: t.TempDir(), ModelVersion: 3, Params: func() Params { p := smallParams(); p.Seed = 7; return p }()})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dirs[0], model.ModelFile))
	b, _ := os.ReadFile(filepath.Join(r3.VersionDir, model.ModelFile))
	if bytes.Equal(a, b) {
		t.Error("seed 7 gave the same weights as seed 42")
	}
	// the version directory is immutable
	if _, err := Run(Options{Dataset: ds, ModelBasePath: filepath.Dir(dirs[0]), ModelVersion: 3, Params: smallParams()}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("re-training into an existing version: %v", err)
	}
}

func TestMetricsJSONShape(t *testing.T) {
	ds := prepared(t, "PG")
	r, err := Run(Options{Dataset: ds, ModelBasePath: t.TempDir(), ModelVersion: 1, Params: smallParams()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(r.VersionDir, model.MetricsFile))
	keys := func(raw []byte) []string {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.Token()
		var ks []string
		for dec.More() {
			k, _ := dec.Token()
			ks = append(ks, k.(string))
			var skip json.RawMessage
			dec.Decode(&skip)
		}
		return ks
	}
	if got := strings.Join(keys(b), ","); got != "model_name,model_version,train,validation,test,baselines,epochs_run,best_epoch,params" {
		t.Errorf("top-level keys %s", got)
	}
	var doc map[string]json.RawMessage
	json.Unmarshal(b, &doc)
	if got := strings.Join(keys(doc["train"]), ","); got != "accuracy,auc,log_loss,rows" {
		t.Errorf("scores keys %s", got)
	}
	if got := strings.Join(keys(doc["baselines"]), ","); got != "base_rate,same_as_today" {
		t.Errorf("baselines keys %s", got)
	}
	if got := strings.Join(keys(doc["params"]), ","); got != "hidden,learning_rate,batch_size,epochs,patience,seed" {
		t.Errorf("params keys %s", got)
	}
	if string(doc["model_name"]) != `"djia30"` || string(doc["model_version"]) != "1" {
		t.Errorf("name/version %s %s", doc["model_name"], doc["model_version"])
	}
}

func TestModelPredictMatchesNetwork(t *testing.T) {
	ds := prepared(t, "KO")
	r, err := Run(Options{Dataset: ds, ModelBasePath: t.TempDir(), ModelVersion: 1, Params: smallParams()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(r.VersionDir)
	if err != nil {
		t.Fatal(err)
	}
	te, _ := dataset.ReadSplit(ds, "test")
	sc, _ := dataset.ReadSchema(ds)
	// raw inputs = normalized*std + mean; the model must reproduce the test accuracy
	f := len(sc.Features)
	var inst [][]float64
	for i := 0; i < te.Rows(); i++ {
		row := make([]float64, f)
		for k := range row {
			row[k] = te.X[i*f+k]*sc.Features[k].Std + sc.Features[k].Mean
		}
		inst = append(inst, row)
	}
	p, err := m.Predict(inst)
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for i, v := range p {
		if (v > 0.5) == (te.Y[i] == 1) {
			ok++
		}
	}
	if acc := float64(ok) / float64(len(p)); math.Abs(acc-r.Metrics.Test.Accuracy) > 2.0/float64(len(p)) {
		t.Errorf("served accuracy %.5f, training reported %.5f", acc, r.Metrics.Test.Accuracy)
	}
}

func TestBaselinesAndPredictions(t *testing.T) {
	tr := &dataset.Split{Y: []float64{1, 0, 1, 1, 0}, LabelToday: []float64{1, 1, 0, 0, 0}}
	b := FitBaselines(tr)
	if b.Rate != 0.6 || b.AfterLarge != 0.5 || b.AfterCalm != 2.0/3 {
		t.Errorf("baselines %+v", b)
	}
	te := &dataset.Split{Y: []float64{1, 0}, LabelToday: []float64{0, 1}, Dates: []string{"2017-01-03", "2017-01-03"}, Tickers: []string{"AAPL", "KO"}}
	got := string(Predictions("test", te, []float64{0.25, 0.125}, b))
	want := "split,date,ticker,label,model,base_rate,same_as_today\n" +
		"test,2017-01-03,AAPL,1,0.25,0.6,0.6666666666666666\n" +
		"test,2017-01-03,KO,0,0.125,0.6,0.5\n"
	if got != want {
		t.Errorf("predictions.csv =\n%s\nwant\n%s", got, want)
	}
}

// The gate's predictions are the model's on the test split, and match the
// test metrics of metrics.json; no other split can be asked for.
func TestPredictionsFile(t *testing.T) {
	ds := prepared(t, "KO")
	out := filepath.Join(t.TempDir(), "artifact")
	r, err := Run(Options{Dataset: ds, ModelBasePath: t.TempDir(), ModelVersion: 1, Params: smallParams(), PredictionsOut: out})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(filepath.Join(r.VersionDir, model.PredictionsFile))
	lines := strings.Split(strings.TrimSpace(string(a)), "\n")
	if !bytes.Equal(a, b) || len(lines) != 1+r.Metrics.Test.Rows || lines[0] != PredictionsHeader || !strings.HasPrefix(lines[1], "test,2017-01-03,KO,") {
		t.Fatalf("predictions: %d lines, first %q", len(lines), lines[:2])
	}
	for _, split := range []string{"train", "validation", "holdout"} {
		_, err := Run(Options{Dataset: ds, ModelBasePath: t.TempDir(), ModelVersion: 1, Params: smallParams(), PredictionsSplit: split})
		if !dataset.IsInputError(err) || !strings.Contains(err.Error(), "--predictions-split") {
			t.Errorf("%s: %v", split, err)
		}
	}
}

func TestParseHidden(t *testing.T) {
	if h, err := ParseHidden("32, 16"); err != nil || len(h) != 2 || h[0] != 32 || h[1] != 16 {
		t.Errorf("%v %v", h, err)
	}
	for _, s := range []string{"32,", "a", "0", "-1"} {
		if _, err := ParseHidden(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestBadDataset(t *testing.T) {
	dir := t.TempDir()
	_, err := Run(Options{Dataset: dir, ModelBasePath: t.TempDir(), ModelVersion: 1, Params: smallParams()})
	if !dataset.IsInputError(err) {
		t.Errorf("missing dataset: %v", err)
	}
	ds := prepared(t, "KO")
	os.WriteFile(filepath.Join(ds, "validation.csv"), []byte("date,ticker,ret_1,ret_5,ret_10,ret_20,vol_20,rsi_14,ma10_gap,ma50_gap,volume_z20,range,label_today,label\n2016-01-04,KO,1,2,3,4,5,6,7,8,9,x,0,1\n"), 0o644)
	_, err = Run(Options{Dataset: ds, ModelBasePath: t.TempDir(), ModelVersion: 1, Params: smallParams()})
	if !dataset.IsInputError(err) || !strings.Contains(err.Error(), "validation.csv:2: bad range") {
		t.Errorf("bad row: %v", err)
	}
}

// BenchmarkTrainFull trains with the default parameters on the full real data.
func BenchmarkTrainFull(b *testing.B) {
	d, ok := datadir.TickerDir()
	if !ok {
		b.Skip(datadir.SkipMessage)
	}
	ds := b.TempDir()
	if _, err := dataset.Prepare(dataset.Options{Input: d, Output: ds}); err != nil {
		b.Fatal(err)
	}
	i := int64(0)
	for b.Loop() {
		i++
		r, err := Run(Options{Dataset: ds, ModelBasePath: b.TempDir(), ModelVersion: i, Params: DefaultParams()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.Metrics.EpochsRun), "epochs")
	}
}
