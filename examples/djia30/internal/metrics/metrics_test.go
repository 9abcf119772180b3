package metrics

import (
	"math"
	"math/rand"
	"sort"
	"testing"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/integrate"
	"gonum.org/v1/gonum/stat"
)

func TestAUC(t *testing.T) {
	// positives scored .8,.4 ; negatives .6,.2: pairs (.8>.6)(.8>.2)(.4<.6)(.4>.2) → 3/4
	if got := AUC([]float64{0.8, 0.6, 0.4, 0.2}, []float64{1, 0, 1, 0}); got != 0.75 {
		t.Errorf("AUC = %v, want 0.75", got)
	}
	if got := AUC([]float64{0.5, 0.5, 0.5}, []float64{1, 0, 1}); got != 0.5 {
		t.Errorf("constant AUC = %v", got)
	}
	if got := AUC([]float64{0.1, 0.9}, []float64{1, 1}); got != 0.5 {
		t.Errorf("one-class AUC = %v", got)
	}
}

func TestLogLossAccuracy(t *testing.T) {
	p, y := []float64{0.9, 0.2, 0.6}, []float64{1, 0, 0}
	want := -(math.Log(0.9) + math.Log(0.8) + math.Log(0.4)) / 3
	if got := LogLoss(p, y); math.Abs(got-want) > 1e-15 {
		t.Errorf("log loss %v, want %v", got, want)
	}
	if got := Accuracy(p, y); got != 2.0/3 {
		t.Errorf("accuracy %v", got)
	}
	if got := LogLoss([]float64{0}, []float64{1}); math.Abs(got-(-math.Log(Eps))) > 1e-9 {
		t.Errorf("clipped log loss %v", got)
	}
}

// The metrics against an independent computation on fixed data: AUC as the
// area under gonum's ROC curve (trapezoidal rule), log loss and accuracy
// from their definitions with gonum/floats.
func TestMetricsAgainstGonum(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	n := 2000
	p, y := make([]float64, n), make([]float64, n)
	for i := range p {
		p[i] = float64(rng.Intn(200)) / 199 // ties, 0 and 1 included
		if rng.Float64() < 0.3+0.4*p[i] {
			y[i] = 1
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return p[idx[a]] < p[idx[b]] })
	sp, cls := make([]float64, n), make([]bool, n)
	for k, i := range idx {
		sp[k], cls[k] = p[i], y[i] == 1
	}
	tpr, fpr, _ := stat.ROC(nil, sp, cls, nil)
	want := integrate.Trapezoidal(fpr, tpr)
	if got := AUC(p, y); math.Abs(got-want) > 1e-11 {
		t.Errorf("AUC %.15f, gonum ROC area %.15f", got, want)
	}
	ll := make([]float64, n)
	correct := 0.0
	for i := range p {
		q := math.Min(math.Max(p[i], Eps), 1-Eps)
		ll[i] = -(y[i]*math.Log(q) + (1-y[i])*math.Log(1-q))
		if (p[i] > 0.5) == (y[i] == 1) {
			correct++
		}
	}
	if got, want := LogLoss(p, y), floats.Sum(ll)/float64(n); math.Abs(got-want) > 1e-11 {
		t.Errorf("log loss %.15f, want %.15f", got, want)
	}
	if got := Accuracy(p, y); got != correct/float64(n) {
		t.Errorf("accuracy %v, want %v", got, correct/float64(n))
	}
}
