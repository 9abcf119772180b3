//go:build !race

// The calibration tests run a few hundred gates' statistics: single
// goroutine numerics the race detector has nothing to check in but slows
// thirteenfold, so they are built without it (make test-go runs them
// separately without -race; they take about 6 s).

package kpi

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/branchml/branchml/agents/config"
)

// synthetic is a time series of days × tickers with a day effect shared by
// the tickers of a day (they move together) and a persistent one (calm and
// turbulent weeks), so rows are dependent within a day and across days, as
// on the real data. Label 1 has probability sigmoid(b0 + day + effect·x).
type synthetic struct {
	days, tickers int
	x             []float64 // the one informative feature
	noise         [][]float64
	y             []float64
	dates         []string
	tick          []string
}

func makeSynthetic(rng *rand.Rand, days, tickers int, effect float64) *synthetic {
	return makeSynthetic2(rng, days, tickers, effect, 0)
}

// makeSynthetic2 gives the first noise feature a real effect too.
func makeSynthetic2(rng *rand.Rand, days, tickers int, effect, effect2 float64) *synthetic {
	s := &synthetic{days: days, tickers: tickers}
	regime := 0.0
	for d := 0; d < days; d++ {
		regime = 0.8*regime + 0.3*rng.NormFloat64()
		day := regime + 0.4*rng.NormFloat64()
		for t := 0; t < tickers; t++ {
			x, n0, n1 := rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()
			z := -0.9 + day + effect*x + effect2*n0
			y := 0.0
			if rng.Float64() < 1/(1+math.Exp(-z)) {
				y = 1
			}
			s.x = append(s.x, x)
			s.noise = append(s.noise, []float64{n0, n1})
			s.y = append(s.y, y)
			s.dates = append(s.dates, fmt.Sprintf("d%04d", d))
			s.tick = append(s.tick, fmt.Sprintf("t%02d", t))
		}
	}
	return s
}

// features of row i: the informative one and two noise features.
func (s *synthetic) features(i int) []float64 {
	return []float64{1, s.x[i], s.noise[i][0], s.noise[i][1]}
}

// fitLogistic fits a logistic regression by Newton's method (a handful of
// steps; the problem is small and well conditioned).
func fitLogistic(s *synthetic, y []float64) []float64 {
	return fitLogisticOn(s, y, 4)
}

// fitLogisticOn uses the first k features only (the others get weight 0).
func fitLogisticOn(s *synthetic, y []float64, k int) []float64 {
	beta := make([]float64, k)
	for it := 0; it < 6; it++ {
		g := make([]float64, k)
		h := make([][]float64, k)
		for a := range h {
			h[a] = make([]float64, k)
		}
		for i := range y {
			f := s.features(i)[:k]
			z := 0.0
			for a := range f {
				z += beta[a] * f[a]
			}
			p := 1 / (1 + math.Exp(-z))
			for a := range f {
				g[a] += (y[i] - p) * f[a]
				for b := range f {
					h[a][b] += p * (1 - p) * f[a] * f[b]
				}
			}
		}
		step := solve(h, g)
		for a := range beta {
			beta[a] += step[a]
		}
	}
	return append(beta, make([]float64, 4-k)...)
}

// solve solves h·x = g by Gaussian elimination with partial pivoting.
func solve(h [][]float64, g []float64) []float64 {
	n := len(g)
	a := make([][]float64, n)
	for i := range a {
		a[i] = append(append([]float64{}, h[i]...), g[i])
	}
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[p][c]) {
				p = r
			}
		}
		a[c], a[p] = a[p], a[c]
		for r := c + 1; r < n; r++ {
			f := a[r][c] / a[c][c]
			for k := c; k <= n; k++ {
				a[r][k] -= f * a[c][k]
			}
		}
	}
	x := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		v := a[r][n]
		for k := r + 1; k < n; k++ {
			v -= a[r][k] * x[k]
		}
		x[r] = v / a[r][r]
	}
	return x
}

func (s *synthetic) predict(beta []float64) []float64 {
	p := make([]float64, len(s.y))
	for i := range p {
		z := 0.0
		for a, f := range s.features(i) {
			z += beta[a] * f
		}
		p[i] = 1 / (1 + math.Exp(-z))
	}
	return p
}

// csvOf writes the gate split's predictions file: date, ticker, label and
// one column per predictor.
func csvOf(s *synthetic, cols map[string][]float64, order ...string) []byte {
	var b bytes.Buffer
	b.WriteString("date,ticker,label")
	for _, c := range order {
		b.WriteString("," + c)
	}
	b.WriteString("\n")
	for i := range s.y {
		fmt.Fprintf(&b, "%s,%s,%d", s.dates[i], s.tick[i], int(s.y[i]))
		for _, c := range order {
			b.WriteString("," + strconv.FormatFloat(cols[c][i], 'g', -1, 64))
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// calibrationGate is the gate as the example configures it, with fewer
// resamples (the decision barely depends on them beyond a few hundred).
func calibrationGate() config.Gate {
	return config.Gate{Split: "test", Label: "label", Score: "model", Key: []string{"date", "ticker"}, Block: "date", BlockLength: 5,
		Confidence: 0.95, Resamples: 400, Seed: 1}
}

var baselineKPIs = []config.KPI{
	{Metric: MetricAUC, Baseline: Prior, Margin: 0},
	{Metric: MetricLogLoss, Baseline: Prior, Margin: 0},
}

type tally struct{ models, gate, auc, logLoss int }

func (t *tally) add(tb testing.TB, s *synthetic, p []float64) {
	tb.Helper()
	pr, err := ParsePredictions("calibration", csvOf(s, map[string][]float64{"model": p}, "model"), "test")
	if err != nil {
		tb.Fatal(err)
	}
	r, err := Decide(Input{Gate: calibrationGate(), KPIs: baselineKPIs, Predictions: pr, NoTable: true})
	if err != nil {
		tb.Fatal(err)
	}
	t.models++
	if r.Verdict == Passed {
		t.gate++
	}
	if r.Checks[0].Passed {
		t.auc++
	}
	if r.Checks[1].Passed {
		t.logLoss++
	}
}

func (t tally) String() string {
	f := func(n int) string { return fmt.Sprintf("%d (%.1f %%)", n, 100*float64(n)/float64(t.models)) }
	return fmt.Sprintf("%d models: gate passed %s; auc KPI alone %s; log_loss KPI alone %s", t.models, f(t.gate), f(t.auc), f(t.logLoss))
}

// plantedEffect is the log-odds per standard deviation of x of the planted
// model's real effect.
const plantedEffect = 0.7

// The gate's calibration: no-skill models (fitted on shuffled labels,
// constants, noise) pass at most 5 % of the time, each KPI alone too; a
// model with a planted real effect passes at least 80 % of the time. Fixed
// seeds: the figures are the same on every run.
func TestCalibration(t *testing.T) {
	const days, tickers = 120, 10
	var noSkill, shuffled, constants, noise, planted tally
	for m := 0; m < 120; m++ {
		// No skill: the test labels do not depend on the features (only on
		// the day), whatever the model learnt.
		rng := rand.New(rand.NewPCG(uint64(m), 17))
		train := makeSynthetic(rng, 300, tickers, 0)
		test := makeSynthetic(rng, days, tickers, 0)
		// Shuffled labels: a model fitted on permuted train labels.
		y := append([]float64(nil), train.y...)
		rng.Shuffle(len(y), func(i, j int) { y[i], y[j] = y[j], y[i] })
		p := test.predict(fitLogistic(train, y))
		shuffled.add(t, test, p)
		noSkill.add(t, test, p)
		// Noise around the train base rate.
		base := meanOf(train.y)
		q := make([]float64, len(test.y))
		sd := 0.02 + 0.1*rng.Float64()
		for i := range q {
			q[i] = math.Min(math.Max(base+sd*rng.NormFloat64(), 0.01), 0.99)
		}
		noise.add(t, test, q)
		noSkill.add(t, test, q)
		if m%2 == 0 {
			// A constant: the train base rate or any other.
			c := base
			if m%4 == 0 {
				c = 0.05 + 0.9*rng.Float64()
			}
			k := make([]float64, len(test.y))
			for i := range k {
				k[i] = c
			}
			constants.add(t, test, k)
			noSkill.add(t, test, k)
		}
	}
	aucs := 0.0
	for m := 0; m < 100; m++ {
		// A planted effect: the label depends on x, the model is fitted on
		// the true train labels.
		rng := rand.New(rand.NewPCG(uint64(m), 29))
		train := makeSynthetic(rng, 300, tickers, plantedEffect)
		test := makeSynthetic(rng, days, tickers, plantedEffect)
		p := test.predict(fitLogistic(train, train.y))
		planted.add(t, test, p)
		aucs += newScorer(p, test.y).metric(MetricAUC, ones(len(p)))
	}
	t.Logf("planted effect %.2f: mean test AUC %.4f", plantedEffect, aucs/100)
	t.Logf("no skill:  %s", noSkill)
	t.Logf("  shuffled labels: %s", shuffled)
	t.Logf("  noise:           %s", noise)
	t.Logf("  constants:       %s", constants)
	t.Logf("planted:   %s", planted)
	if noSkill.models < 200 {
		t.Fatalf("only %d no-skill models", noSkill.models)
	}
	for _, c := range []struct {
		name string
		n    int
	}{{"gate", noSkill.gate}, {"auc KPI", noSkill.auc}, {"log_loss KPI", noSkill.logLoss}} {
		if rate := float64(c.n) / float64(noSkill.models); rate > 0.05 {
			t.Errorf("no-skill models: %s passed %.1f %% (%d of %d), want at most 5 %%", c.name, 100*rate, c.n, noSkill.models)
		}
	}
	if rate := float64(planted.gate) / float64(planted.models); rate < 0.8 {
		t.Errorf("planted effect: gate passed %.1f %%, want at least 80 %%", 100*rate)
	}
}

func meanOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// The champion comparison's calibration: a challenger as good as the
// champion (the same model fitted on another year of the same world)
// passes "auc vs champion" at most 5 % of the time; one that uses a real
// feature the champion lacks passes at least 80 %.
func TestCalibrationChampion(t *testing.T) {
	const days, tickers = 120, 10
	kpis := []config.KPI{{Metric: MetricAUC, Champion: true}}
	var equal, better tally
	for m := 0; m < 200; m++ {
		rng := rand.New(rand.NewPCG(uint64(m), 41))
		trainA := makeSynthetic2(rng, 300, tickers, 0.5, 0.45)
		trainB := makeSynthetic2(rng, 300, tickers, 0.5, 0.45)
		test := makeSynthetic2(rng, days, tickers, 0.5, 0.45)
		champ := test.predict(fitLogisticOn(trainA, trainA.y, 2))
		var chal []float64
		tl := &equal
		if m%2 == 0 {
			chal = test.predict(fitLogisticOn(trainB, trainB.y, 2))
		} else {
			chal, tl = test.predict(fitLogisticOn(trainB, trainB.y, 4)), &better
		}
		cols := map[string][]float64{"model": chal}
		pr, err := ParsePredictions("challenger", csvOf(test, cols, "model"), "test")
		if err != nil {
			t.Fatal(err)
		}
		cp, err := ParsePredictions("champion", csvOf(test, map[string][]float64{"model": champ}, "model"), "test")
		if err != nil {
			t.Fatal(err)
		}
		r, err := Decide(Input{Gate: calibrationGate(), KPIs: kpis, Predictions: pr, NoTable: true,
			Champion: &Champion{Ref: ChampionRef{Model: "m", Version: 1, RunID: "r1"}, Predictions: cp}})
		if err != nil {
			t.Fatal(err)
		}
		tl.models++
		if r.Verdict == Passed {
			tl.gate++
		}
	}
	t.Logf("as good as the champion: %d of %d passed (%.1f %%)", equal.gate, equal.models, 100*float64(equal.gate)/float64(equal.models))
	t.Logf("better than the champion: %d of %d passed (%.1f %%)", better.gate, better.models, 100*float64(better.gate)/float64(better.models))
	if rate := float64(equal.gate) / float64(equal.models); rate > 0.05 {
		t.Errorf("challengers as good as the champion passed %.1f %%, want at most 5 %%", 100*rate)
	}
	if rate := float64(better.gate) / float64(better.models); rate < 0.8 {
		t.Errorf("better challengers passed %.1f %%, want at least 80 %%", 100*rate)
	}
}

func ones(n int) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 1
	}
	return w
}
