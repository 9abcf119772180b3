package kpi

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
)

// Metrics of KPIs with confidence, as named in training.kpis[].metric.
const (
	MetricAUC      = "auc"
	MetricAccuracy = "accuracy"
	MetricLogLoss  = "log_loss"
	MetricBrier    = "brier"
)

// Metrics lists them in the order of the gate's tables.
var Metrics = []string{MetricAUC, MetricLogLoss, MetricAccuracy, MetricBrier}

// Prior is the built-in baseline: the constant prediction at the gate
// split's own share of label 1, recomputed on every resample (the best
// constant in hindsight; its AUC is 0.5).
const Prior = "prior"

// Eps clips probabilities to [Eps, 1-Eps] in the log loss.
const Eps = 1e-15

// HigherIsBetter reports the direction of a metric; ok is false for an
// unknown one.
func HigherIsBetter(metric string) (higher, ok bool) {
	switch metric {
	case MetricAUC, MetricAccuracy:
		return true, true
	case MetricLogLoss, MetricBrier:
		return false, true
	}
	return false, false
}

// scorer holds one predictor's per-row quantities, precomputed once so a
// resample costs one pass over the rows per metric.
type scorer struct {
	// order sorts the rows by probability ascending (ties in row order);
	// pos[j] says whether row order[j] has label 1 and last[j] whether it
	// ends a run of tied probabilities.
	order     []int32
	pos, last []bool
	// loss, correct, sq are each row's log loss, 0/1 accuracy at 0.5 and
	// squared error.
	loss, correct, sq []float64
}

func newScorer(p, y []float64) *scorer {
	n := len(p)
	s := &scorer{order: make([]int32, n), pos: make([]bool, n), last: make([]bool, n),
		loss: make([]float64, n), correct: make([]float64, n), sq: make([]float64, n)}
	for i := range s.order {
		s.order[i] = int32(i)
	}
	sort.SliceStable(s.order, func(a, b int) bool { return p[s.order[a]] < p[s.order[b]] })
	for j, k := range s.order {
		s.pos[j] = y[k] == 1
		s.last[j] = j == n-1 || p[s.order[j+1]] != p[k]
	}
	for i, v := range p {
		q := math.Min(math.Max(v, Eps), 1-Eps)
		if y[i] == 1 {
			s.loss[i] = -math.Log(q)
		} else {
			s.loss[i] = -math.Log(1 - q)
		}
		if (v > 0.5) == (y[i] == 1) {
			s.correct[i] = 1
		}
		s.sq[i] = (v - y[i]) * (v - y[i])
	}
	return s
}

// metric computes one metric over the rows weighted by w (a weight per
// row: a bootstrap count, 0 for rows left out). AUC is the Mann-Whitney
// statistic with ties given half credit (0.5 when a class has no weight);
// the others are weighted means (NaN when no row has weight).
func (s *scorer) metric(m string, w []float64) float64 {
	switch m {
	case MetricAUC:
		var negBelow, num, pos, neg, pg, ng float64
		for j, k := range s.order {
			if s.pos[j] {
				pg += w[k]
			} else {
				ng += w[k]
			}
			if s.last[j] {
				num += pg * (negBelow + ng/2)
				negBelow += ng
				pos += pg
				neg += ng
				pg, ng = 0, 0
			}
		}
		if pos == 0 || neg == 0 {
			return 0.5
		}
		return num / (pos * neg)
	case MetricLogLoss:
		return mean(s.loss, w)
	case MetricAccuracy:
		return mean(s.correct, w)
	case MetricBrier:
		return mean(s.sq, w)
	}
	panic("kpi: unknown metric " + m)
}

func mean(v, w []float64) float64 {
	var sum, tot float64
	for i, x := range v {
		sum += w[i] * x
		tot += w[i]
	}
	if tot == 0 {
		return math.NaN()
	}
	return sum / tot
}

// priorMetric is the metric of the constant prediction at the weighted
// share r of label 1.
func priorMetric(m string, y, w []float64) float64 {
	r := mean(y, w)
	switch m {
	case MetricAUC:
		return 0.5
	case MetricLogLoss:
		q := math.Min(math.Max(r, Eps), 1-Eps)
		return -(r*math.Log(q) + (1-r)*math.Log(1-q))
	case MetricAccuracy:
		if r > 0.5 {
			return r
		}
		return 1 - r
	case MetricBrier:
		return r * (1 - r)
	}
	panic("kpi: unknown metric " + m)
}

// resampler draws circular block bootstrap weights: the rows are grouped
// into blocks by a column's values in sorted order; a resample is
// ceil(D/L) runs of L consecutive blocks (wrapping around) from uniform
// random starts, truncated to D blocks, and a row's weight is how often
// its block was drawn. With L = 1 it is the cluster bootstrap; with one
// row per block the ordinary bootstrap. The generator is a fixed
// SplitMix64 stream from the seed, so a seed gives the same resamples on
// every platform and Go version.
type resampler struct {
	blocks [][]int32
	length int
	state  uint64
}

func newResampler(groups []string, length int, seed int64) *resampler {
	idx := map[string][]int32{}
	for i, g := range groups {
		idx[g] = append(idx[g], int32(i))
	}
	names := make([]string, 0, len(idx))
	for g := range idx {
		names = append(names, g)
	}
	slices.Sort(names)
	r := &resampler{length: max(length, 1), state: uint64(seed)}
	for _, g := range names {
		r.blocks = append(r.blocks, idx[g])
	}
	return r
}

func (r *resampler) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// draw fills w (one weight per row) with the next resample.
func (r *resampler) draw(w []float64) {
	clear(w)
	d := len(r.blocks)
	for taken := 0; taken < d; {
		start, _ := bits.Mul64(r.next(), uint64(d))
		for k := 0; k < r.length && taken < d; k++ {
			for _, row := range r.blocks[(int(start)+k)%d] {
				w[row]++
			}
			taken++
		}
	}
}

// quantile is the type 7 (linear interpolation) sample quantile of sorted x.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	h := q * float64(len(sorted)-1)
	lo := math.Floor(h)
	i := int(lo)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (h-lo)*(sorted[i+1]-sorted[i])
}

// interval is the percentile interval of the resampled statistics at
// two-sided confidence c; NaN values (an empty resample) are dropped.
func interval(stats []float64, c float64) (lo, hi float64, err error) {
	s := make([]float64, 0, len(stats))
	for _, v := range stats {
		if !math.IsNaN(v) {
			s = append(s, v)
		}
	}
	if len(s) < len(stats)/2 || len(s) == 0 {
		return 0, 0, fmt.Errorf("only %d of %d resamples had rows of both kinds", len(s), len(stats))
	}
	slices.Sort(s)
	return quantile(s, (1-c)/2), quantile(s, (1+c)/2), nil
}
