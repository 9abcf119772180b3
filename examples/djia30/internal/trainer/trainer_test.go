package trainer

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
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

func TestTrainingIsDeterministic(t *testing.T) {
	ds := prepared(t, "AAPL", "KO")
	var dirs []string
	var res []*Result
	for i := 0; i < 2; i++ {
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
	for _, f := range []string{model.ModelFile, model.SignatureFile, model.MetricsFile, model.CurvesFile} {
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
	t.Logf("validation: model acc %.4f auc %.4f | always_bullish acc %.4f auc %.4f | same_as_today acc %.4f auc %.4f",
		m.Validation.Accuracy, m.Validation.AUC, m.Baselines.AlwaysBullish.Validation.Accuracy, m.Baselines.AlwaysBullish.Validation.AUC,
		m.Baselines.SameAsToday.Validation.Accuracy, m.Baselines.SameAsToday.Validation.AUC)
	if m.Train.Rows != 2467+2468 {
		t.Errorf("train rows %d", m.Train.Rows)
	}
	if m.Validation.Rows != 2*252 || m.Test.Rows != 2*250 {
		t.Errorf("rows %d %d", m.Validation.Rows, m.Test.Rows)
	}
	if m.Baselines.AlwaysBullish.Validation.AUC != 0.5 || m.EpochsRun < 1 || m.BestEpoch < 1 || m.BestEpoch > m.EpochsRun {
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
	if got := strings.Join(keys(doc["baselines"]), ","); got != "always_bullish,same_as_today" {
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

func TestBaselines(t *testing.T) {
	y := []float64{1, 0, 1, 1}
	ab := AlwaysBullish(0.6, y)
	wantLL := -(3*math.Log(0.6) + math.Log(0.4)) / 4
	if ab.Accuracy != 0.75 || ab.AUC != 0.5 || math.Abs(ab.LogLoss-wantLL) > 1e-15 || ab.Rows != 4 {
		t.Errorf("always_bullish %+v", ab)
	}
	st := SameAsToday([]float64{0.01, 0.02, -0.01, 0.03}, y) // predicts 1,1,0,1
	if st.Accuracy != 0.5 || math.Abs(st.AUC-(2.0/3*0.5+(1.0/3)*0+0.5)/1) > 1 {
		t.Errorf("same_as_today %+v", st)
	}
	// AUC: positives scored (1,0,1) vs negative (1): pairs (1,1) tie .5, (0,1) 0, (1,1) .5 → 1/3
	if math.Abs(st.AUC-1.0/3) > 1e-12 {
		t.Errorf("same_as_today auc %v, want 1/3", st.AUC)
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
	os.WriteFile(filepath.Join(ds, "validation.csv"), []byte("date,ticker,ret_1,ret_5,ret_10,ret_20,vol_20,rsi_14,ma10_gap,ma50_gap,volume_z20,range,ret_1_raw,label\n2016-01-04,KO,1,2,3,4,5,6,7,8,9,x,0.1,1\n"), 0o644)
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
