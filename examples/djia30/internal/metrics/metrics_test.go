package metrics

import (
	"math"
	"testing"
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
