package kpi

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
)

// bruteAUC is the weighted AUC by its definition: over all (positive,
// negative) pairs, the weight of those ranked right, ties counting half.
func bruteAUC(p, y, w []float64) float64 {
	var num, pos, neg float64
	for i := range p {
		if y[i] == 1 {
			pos += w[i]
		} else {
			neg += w[i]
		}
		for j := range p {
			if y[i] != 1 || y[j] != 0 {
				continue
			}
			switch {
			case p[i] > p[j]:
				num += w[i] * w[j]
			case p[i] == p[j]:
				num += w[i] * w[j] / 2
			}
		}
	}
	return num / (pos * neg)
}

func TestMetricsAgainstDefinitions(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 50; trial++ {
		n := 5 + rng.IntN(60)
		p, y, w := make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range p {
			p[i] = float64(rng.IntN(7)) / 6 // many ties, and 0 and 1
			y[i] = float64(rng.IntN(2))
			w[i] = float64(rng.IntN(3))
		}
		y[0], y[1], w[0], w[1] = 0, 1, 1, 1
		s := newScorer(p, y)
		if got, want := s.metric(MetricAUC, w), bruteAUC(p, y, w); math.Abs(got-want) > 1e-12 {
			t.Fatalf("trial %d: AUC %v, by definition %v", trial, got, want)
		}
		var ll, acc, br, tot, pos float64
		for i := range p {
			q := math.Min(math.Max(p[i], Eps), 1-Eps)
			ll += w[i] * -(y[i]*math.Log(q) + (1-y[i])*math.Log(1-q))
			if (p[i] > 0.5) == (y[i] == 1) {
				acc += w[i]
			}
			br += w[i] * (p[i] - y[i]) * (p[i] - y[i])
			tot += w[i]
			pos += w[i] * y[i]
		}
		for m, want := range map[string]float64{MetricLogLoss: ll / tot, MetricAccuracy: acc / tot, MetricBrier: br / tot} {
			if got := s.metric(m, w); math.Abs(got-want) > 1e-12 {
				t.Fatalf("trial %d: %s %v, want %v", trial, m, got, want)
			}
		}
		r := pos / tot
		if got, want := priorMetric(MetricLogLoss, y, w), -(r*math.Log(r) + (1-r)*math.Log(1-r)); math.Abs(got-want) > 1e-12 {
			t.Fatalf("prior log loss %v, want %v", got, want)
		}
	}
}

func TestResamplerBlocks(t *testing.T) {
	// 5 dates × 2 tickers; blocks of 2 consecutive dates.
	groups := []string{"d3", "d3", "d1", "d1", "d2", "d2", "d5", "d5", "d4", "d4"}
	r := newResampler(groups, 2, 7)
	if len(r.blocks) != 5 || r.blocks[0][0] != 2 || r.blocks[4][1] != 7 {
		t.Fatalf("blocks = %v", r.blocks)
	}
	w := make([]float64, len(groups))
	again := newResampler(groups, 2, 7)
	w2 := make([]float64, len(groups))
	for b := 0; b < 100; b++ {
		r.draw(w)
		again.draw(w2)
		sum := 0.0
		for i, v := range w {
			sum += v
			if v != w2[i] {
				t.Fatalf("resample %d differs for the same seed", b)
			}
			if j := i ^ 1; w[j] != v {
				t.Fatalf("resample %d split a date: %v", b, w)
			}
		}
		if sum != 10 {
			t.Fatalf("resample %d has %v rows, want 10 (5 dates drawn)", b, sum)
		}
	}
}

const gateCSV = `split,date,ticker,label,model,same_as_today
test,d1,A,1,0.9,0.6
test,d1,B,0,0.2,0.6
test,d2,A,0,0.4,0.3
test,d2,B,1,0.7,0.3
test,d3,A,1,0.6,0.6
test,d3,B,0,0.3,0.3
test,d4,A,0,0.6,0.6
test,d4,B,1,0.8,0.3
validation,d0,A,1,0.1,0.1
`

func gateConfig() config.Gate {
	return config.Gate{Split: "test", Label: "label", Score: "model", Key: []string{"date", "ticker"}, Block: "date", BlockLength: 1,
		Confidence: 0.9, Resamples: 500, Seed: 1}
}

func TestDecideExactValues(t *testing.T) {
	p, err := ParsePredictions("predictions", []byte(gateCSV), "test")
	if err != nil {
		t.Fatal(err)
	}
	champ, err := ParsePredictions("champion", []byte("date,ticker,label,model\nd1,A,1,0.8\nd1,B,0,0.3\nd2,A,0,0.5\nd2,B,1,0.4\nd3,A,1,0.5\nd9,A,1,0.5\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	kpis := []config.KPI{
		{Metric: MetricAUC, Baseline: "same_as_today", Margin: 0.01},
		{Metric: MetricLogLoss, Baseline: Prior},
		{Metric: MetricAUC, Champion: true},
		{Metric: MetricAccuracy, Value: f(0.9)},
	}
	r, err := Decide(Input{Gate: gateConfig(), KPIs: kpis, Predictions: p,
		Champion: &Champion{Ref: ChampionRef{Model: "m", Version: 1, RunID: "r1"}, Predictions: champ}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows != 8 || r.Blocks != 4 || r.Champion == nil || r.Champion.Rows != 5 {
		t.Fatalf("rows %d blocks %d champion %+v", r.Rows, r.Blocks, r.Champion)
	}
	// By hand: the model ranks 15.5 of 16 pairs right (0.6 ties 0.6 once);
	// same_as_today 10 of 16 (4 ties, 2 right... see below); the prior's log
	// loss is ln 2 at a share of 1/2.
	c := r.Checks
	if *c[0].Value != 15.5/16 {
		t.Errorf("model AUC = %v, want 15.5/16", *c[0].Value)
	}
	// same_as_today: positives 0.6,0.3,0.6,0.3; negatives 0.6,0.3,0.3,0.6.
	// Pairs: each 0.6 positive beats 2 negatives and ties 2 → 3; each 0.3
	// positive ties 2 → 1. (3+1+3+1)/16.
	if *c[0].Reference != 8.0/16 || *c[0].Improvement != 15.5/16-0.5 {
		t.Errorf("same_as_today AUC = %v, improvement %v", *c[0].Reference, *c[0].Improvement)
	}
	if math.Abs(*c[1].Reference-math.Ln2) > 1e-15 {
		t.Errorf("prior log loss = %v, want ln 2", *c[1].Reference)
	}
	// Champion: on the 5 shared rows (d1 A/B, d2 A/B, d3 A) the model's AUC
	// is 6/6, the champion's 0.8>0.3,0.8>0.5,0.4>0.3,0.4<0.5,0.5>0.3,0.5=0.5: 4.5/6.
	if *c[2].Value != 1 || *c[2].Reference != 4.5/6 || c[2].Rows != 5 || c[2].Against != "champion v1" {
		t.Errorf("champion check = %+v", c[2])
	}
	acc, thr := 7.0/8, 0.9
	if *c[3].Value != acc || c[3].Passed || *c[3].Improvement != acc-thr {
		t.Errorf("accuracy check = %+v", c[3])
	}
	for i, ch := range c {
		if ch.Low == nil || *ch.Low > *ch.Improvement+1e-12 || *ch.High < *ch.Improvement-1e-12 && i != 3 {
			t.Errorf("check %d: interval [%v, %v] of %v", i, deref(ch.Low), deref(ch.High), *ch.Improvement)
		}
		if ch.Passed != (*ch.Low > ch.KPI.Margin) {
			t.Errorf("check %d: passed %v with lower bound %v, margin %v", i, ch.Passed, *ch.Low, ch.KPI.Margin)
		}
	}
	if r.Verdict != Failed || len(r.Reasons) == 0 || !strings.Contains(r.Reasons[len(r.Reasons)-1], "accuracy vs 0.9: improvement -0.0250, 90% interval [") {
		t.Errorf("verdict %s reasons %q", r.Verdict, r.Reasons)
	}
	// The same input gives the same decision, to the last bit.
	again, _ := Decide(Input{Gate: gateConfig(), KPIs: kpis, Predictions: p,
		Champion: &Champion{Ref: ChampionRef{Model: "m", Version: 1, RunID: "r1"}, Predictions: champ}})
	if again.Text() != r.Text() || *again.Checks[0].Low != *r.Checks[0].Low {
		t.Errorf("not reproducible:\n%s\n%s", r.Text(), again.Text())
	}
	// The table has model, champion, same_as_today and prior side by side.
	text := r.Text()
	for _, want := range []string{
		"split test: 8 examples on 4 date values, resampled in circular blocks of 1",
		"metric                      model              champion v1",
		"champion v1",
		"same_as_today",
		"prior",
		"auc vs champion v1",
		"auc       0.9688 [",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	md := r.Markdown()
	if !strings.Contains(md, "| auc vs same_as_today | 0.9688 | 0.5000 | +0.4688 | [") {
		t.Errorf("markdown:\n%s", md)
	}
}

func deref(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}

func TestDecideChampionAndInputErrors(t *testing.T) {
	p, _ := ParsePredictions("predictions", []byte(gateCSV), "test")
	kpis := []config.KPI{{Metric: MetricAUC, Champion: true}}
	r, err := Decide(Input{Gate: gateConfig(), KPIs: kpis, Predictions: p, NoChampion: "no champion: nothing is deployed on deploy-model yet"})
	if err != nil || r.Verdict != Passed || !r.Checks[0].Skipped || !strings.Contains(r.Checks[0].Reason, "nothing is deployed") {
		t.Errorf("no champion: %+v %v", r, err)
	}
	other, _ := ParsePredictions("champion", []byte("date,ticker,label,model\nd1,A,0,0.8\nd1,B,0,0.3\n"), "")
	_, err = Decide(Input{Gate: gateConfig(), KPIs: kpis, Predictions: p, Champion: &Champion{Ref: ChampionRef{Version: 1}, Predictions: other}})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "the label differs on 1 of the examples") {
		t.Errorf("label mismatch: %v", err)
	}
	for _, c := range []struct {
		kpi  config.KPI
		want string
	}{
		{config.KPI{Metric: MetricAUC, Baseline: "always_bullish"}, `predictions: no column "always_bullish" (columns: split, date, ticker, label, model, same_as_today)`},
		{config.KPI{Metric: "f1", Value: f(0.5)}, `metric "f1": use auc, accuracy, log_loss or brier`},
		{config.KPI{Metric: MetricAUC, Baseline: "model"}, `baseline "model": name a baseline column`},
	} {
		if _, err := Decide(Input{Gate: gateConfig(), KPIs: []config.KPI{c.kpi}, Predictions: p}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.kpi, err, c.want)
		}
	}
}

func TestParsePredictionsErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "empty file"},
		{"a,a\n1,2\n", `line 1: column "a" appears twice`},
		{"label,model\n1,0.5\n1\n", "line 3: wrong number of fields"},
		{"split,label,model\nvalidation,1,0.5\n", `no rows of split "test" (the file has validation)`},
		{"label,model\n", "no rows"},
	} {
		if _, err := ParsePredictions("p", []byte(c.in), "test"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.in, err, c.want)
		}
	}
	p, _ := ParsePredictions("p", []byte("date,label,model\nd1,2,0.5\nd1,1,1.5\n"), "test")
	if _, err := p.Labels("label"); err == nil || err.Error() != `p: line 2: label label = "2": want 0 or 1` {
		t.Errorf("labels: %v", err)
	}
	if _, err := p.Probabilities("model"); err == nil || err.Error() != `p: line 3: model = "1.5" is not a probability in [0, 1]` {
		t.Errorf("probabilities: %v", err)
	}
	if _, err := p.Keys([]string{"date"}); err == nil || !strings.Contains(err.Error(), "line 3: key (date) repeats line 2") {
		t.Errorf("keys: %v", err)
	}
}

func FuzzParsePredictions(fz *testing.F) {
	fz.Add([]byte(gateCSV), "test")
	fz.Add([]byte("a,b\n\"x\ny\",1\n"), "")
	fz.Fuzz(func(t *testing.T, data []byte, split string) {
		p, err := ParsePredictions("fuzz", data, split)
		if err != nil {
			return
		}
		for _, h := range p.Header {
			if v, err := p.Text(h); err != nil || len(v) != p.Rows() {
				t.Fatalf("column %q: %d values for %d rows (%v)", h, len(v), p.Rows(), err)
			}
			p.Probabilities(h)
			p.Labels(h)
		}
		p.Keys(p.Header)
	})
}

// fakeForge serves files by branch and path.
type fakeForge struct {
	forge.Forge
	files map[string]string
}

func (f *fakeForge) ReadFile(_ context.Context, ref, path string) ([]byte, error) {
	if s, ok := f.files[ref+":"+path]; ok {
		return []byte(s), nil
	}
	return nil, forge.ErrNotFound
}

func TestFindChampion(t *testing.T) {
	ctx := context.Background()
	spec := "apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 2, volume: v, path: djia30}\nrunId: run-2\nsourceCommit: abc\n"
	f := &fakeForge{files: map[string]string{}}
	if c, why, err := FindChampion(ctx, f, "deploy-model", "djia30"); c != nil || err != nil || why != "no champion: nothing is deployed on deploy-model yet" {
		t.Errorf("empty branch: %v %q %v", c, why, err)
	}
	f.files["deploy-model:"+records.DeploySpecPath] = spec
	if c, _, err := FindChampion(ctx, f, "deploy-model", "djia30"); err != nil || c.RunID != "run-2" || c.Version != 2 || c.SourceCommit != "abc" {
		t.Errorf("spec only: %+v %v", c, err)
	}
	if c, why, err := FindChampion(ctx, f, "deploy-model", "other"); c != nil || err != nil || !strings.Contains(why, `deploys model "djia30", not "other"`) {
		t.Errorf("other model: %v %q %v", c, why, err)
	}
	f.files["deploy-model:"+records.DeployStatusPath] = `{"model":"djia30","phase":"Succeeded","stableVersion":2}`
	if c, _, err := FindChampion(ctx, f, "deploy-model", "djia30"); err != nil || c.RunID != "run-2" {
		t.Errorf("serving: %+v %v", c, err)
	}
	f.files["deploy-model:"+records.DeployStatusPath] = `{"model":"djia30","phase":"RolledBack","stableVersion":1}`
	if _, _, err := FindChampion(ctx, f, "deploy-model", "djia30"); !errors.Is(err, ErrChampionUnknown) || !strings.Contains(err.Error(), "serves djia30 v1 but deploy.yaml names v2") {
		t.Errorf("rolled back: %v", err)
	}
}
