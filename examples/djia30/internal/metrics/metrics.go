// Package metrics computes binary classification metrics: accuracy, ROC AUC
// and log loss. Labels are 0 or 1; probabilities are P(label = 1) in [0, 1].
package metrics

import (
	"math"
	"sort"
)

// Eps clips probabilities to [Eps, 1-Eps] in LogLoss (scikit-learn's default).
const Eps = 1e-15

// Scores is one split's metrics, as they appear in metrics.json.
type Scores struct {
	Accuracy float64 `json:"accuracy"` // fraction of rows with (p > 0.5) == label
	AUC      float64 `json:"auc"`      // ROC AUC; 0.5 for a constant predictor
	LogLoss  float64 `json:"log_loss"` // mean binary cross-entropy in nats
	Rows     int     `json:"rows"`
}

// Compute returns the Scores of probabilities p against labels y (same length).
func Compute(p, y []float64) Scores {
	return Scores{Accuracy: Accuracy(p, y), AUC: AUC(p, y), LogLoss: LogLoss(p, y), Rows: len(y)}
}

// Accuracy is the fraction of rows where (p[i] > 0.5) equals y[i] == 1; 0 for
// no rows.
func Accuracy(p, y []float64) float64 {
	if len(y) == 0 {
		return 0
	}
	ok := 0
	for i := range y {
		if (p[i] > 0.5) == (y[i] == 1) {
			ok++
		}
	}
	return float64(ok) / float64(len(y))
}

// LogLoss is the mean of -(y log p + (1-y) log(1-p)) with p clipped to
// [Eps, 1-Eps]; 0 for no rows.
func LogLoss(p, y []float64) float64 {
	if len(y) == 0 {
		return 0
	}
	var s float64
	for i := range y {
		q := math.Min(math.Max(p[i], Eps), 1-Eps)
		if y[i] == 1 {
			s -= math.Log(q)
		} else {
			s -= math.Log(1 - q)
		}
	}
	return s / float64(len(y))
}

// AUC is the area under the ROC curve, computed as the Mann-Whitney statistic
// with tied scores given half credit (average ranks). It is 0.5 when all
// scores are equal or when one class is absent.
func AUC(p, y []float64) float64 {
	n := len(y)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return p[idx[a]] < p[idx[b]] })
	var pos, neg, rankSum float64
	for i := 0; i < n; {
		j := i
		for j < n && p[idx[j]] == p[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			if y[idx[k]] == 1 {
				rankSum += avg
				pos++
			} else {
				neg++
			}
		}
		i = j
	}
	if pos == 0 || neg == 0 {
		return 0.5
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}
