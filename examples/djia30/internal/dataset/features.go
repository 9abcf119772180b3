package dataset

import "math"

// FeatureNames are the model's input features, in order. All are computed per
// ticker from trading-day rows up to and including the row's date (past data
// only); d is the row's index in the ticker's cleaned series:
//
//	ret_1, ret_5, ret_10, ret_20  close[d]/close[d-k] - 1 (fraction, not percent)
//	vol_20      population standard deviation of the 20 daily returns ending at d
//	rsi_14      Wilder's RSI(14), 0..100: first average gain/loss is the mean of
//	            the first 14 changes, then avg = (13*avg + change)/14; 100 when
//	            the average loss is 0 (50 when both are 0)
//	ma10_gap    close[d]/mean(close[d-9..d]) - 1
//	ma50_gap    close[d]/mean(close[d-49..d]) - 1
//	volume_z20  (volume[d] - mean)/std over volume[d-19..d] (population std; 0 when std is 0)
//	range       (high[d] - low[d]) / close[d]
var FeatureNames = []string{
	"ret_1", "ret_5", "ret_10", "ret_20", "vol_20", "rsi_14",
	"ma10_gap", "ma50_gap", "volume_z20", "range",
}

// NumFeatures is len(FeatureNames).
const NumFeatures = 10

// Warmup is the number of leading trading days of each ticker that have too
// little history for every feature (MA(50) needs 50 closes); the first feature
// row is the ticker's 50th trading day (index 49).
const Warmup = 49

// Example is one feature row: a ticker on a date with raw (unnormalized)
// features, the label and the same rule applied to today (for the
// same_as_today baseline; not a model input).
//
// Label is 1 when the next trading day is a large move for the ticker: the
// absolute close-to-close return from day d to d+1 exceeds vol_20 of day d
// (the standard deviation of the ticker's last 20 daily returns, its
// recent typical move); else 0. HasLabel is false on the ticker's last day.
// LabelToday is the same rule one day earlier: 1 when |ret_1| of day d
// exceeds vol_20 of day d-1, known at the close of day d.
type Example struct {
	Date       string
	Ticker     string
	Features   [NumFeatures]float64
	LabelToday int
	Label      int
	HasLabel   bool
}

// LabelRule is the label's definition in words (schema.json label_rule).
const LabelRule = "1 when the next trading day's absolute close-to-close return of the same ticker exceeds vol_20 of this day " +
	"(the population std of its last 20 daily returns), else 0"

// Features computes one Example per trading day of s from index Warmup on
// (rows without enough history are not returned). The last day is returned with
// HasLabel false; callers drop it. Values depend only on s[0..d].
func Features(s *Series) []Example {
	n := s.Len()
	if n <= Warmup {
		return nil
	}
	c, v := s.Close, s.Volume
	out := make([]Example, 0, n-Warmup)
	// Wilder RSI state
	var avgGain, avgLoss float64
	rsiAt := make([]float64, n)
	for d := 1; d < n; d++ {
		ch := c[d] - c[d-1]
		g, l := math.Max(ch, 0), math.Max(-ch, 0)
		switch {
		case d < 14:
			avgGain += g
			avgLoss += l
		case d == 14:
			avgGain = (avgGain + g) / 14
			avgLoss = (avgLoss + l) / 14
		default:
			avgGain = (avgGain*13 + g) / 14
			avgLoss = (avgLoss*13 + l) / 14
		}
		if d >= 14 {
			rsiAt[d] = rsi(avgGain, avgLoss)
		}
	}
	for d := Warmup; d < n; d++ {
		var e Example
		e.Date, e.Ticker = s.Date[d], s.Ticker
		f := &e.Features
		f[0] = c[d]/c[d-1] - 1
		f[1] = c[d]/c[d-5] - 1
		f[2] = c[d]/c[d-10] - 1
		f[3] = c[d]/c[d-20] - 1
		f[4] = vol20(c, d)
		f[5] = rsiAt[d]
		m10, _ := meanStd(c[d-9 : d+1])
		f[6] = c[d]/m10 - 1
		m50, _ := meanStd(c[d-49 : d+1])
		f[7] = c[d]/m50 - 1
		vm, vs := meanStd(v[d-19 : d+1])
		if vs > 0 {
			f[8] = (v[d] - vm) / vs
		}
		f[9] = (s.High[d] - s.Low[d]) / c[d]
		if math.Abs(f[0]) > vol20(c, d-1) {
			e.LabelToday = 1
		}
		if d+1 < n {
			e.HasLabel = true
			if math.Abs(c[d+1]/c[d]-1) > f[4] {
				e.Label = 1
			}
		}
		out = append(out, e)
	}
	return out
}

// vol20 is the population standard deviation of the 20 daily returns of c
// ending at day d (d >= 20).
func vol20(c []float64, d int) float64 {
	var rs [20]float64
	for k := 0; k < 20; k++ {
		j := d - 19 + k
		rs[k] = c[j]/c[j-1] - 1
	}
	_, sd := meanStd(rs[:])
	return sd
}

func rsi(gain, loss float64) float64 {
	if loss == 0 {
		if gain == 0 {
			return 50
		}
		return 100
	}
	return 100 - 100/(1+gain/loss)
}

// meanStd returns the mean and population standard deviation of xs.
func meanStd(xs []float64) (mean, std float64) {
	var s float64
	for _, x := range xs {
		s += x
	}
	mean = s / float64(len(xs))
	var q float64
	for _, x := range xs {
		q += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(q / float64(len(xs)))
}
