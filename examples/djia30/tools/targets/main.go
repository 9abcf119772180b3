// Command targets compares candidate next-day targets on the real DJIA 30
// data: for each, a logistic regression and the 16,8 network are trained on
// 2006–2015 (early stopping on 2016) with the example's features, and
// scored on the 2017 test split: AUC with a 95 % circular block-bootstrap
// interval (blocks of 5 trading days, 1000 resamples, seed 1, as the
// promotion gate resamples), persistence's AUC, and the log-loss gain over
// the best constant in hindsight with its interval. It prints the Markdown
// table of the example's README.
//
//	go run ./tools/targets --data ../../../shared/data/djia30
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"sort"

	"github.com/branchml/djia30/internal/dataset"
	"github.com/branchml/djia30/internal/metrics"
	"github.com/branchml/djia30/internal/nn"
)

// target labels day d of a series from the next day's return r (and the
// day's vol_20); ok false drops the row.
type target struct {
	name, rule string
	label      func(r, vol float64) (y float64, ok bool)
	// today is the same rule applied to today's return (persistence).
	today func(r, vol float64) float64
}

func b(c bool) float64 {
	if c {
		return 1
	}
	return 0
}

var targets = []target{
	{"up", "close(d+1) > close(d)", func(r, _ float64) (float64, bool) { return b(r > 0), true }, func(r, _ float64) float64 { return r }},
	{"outperform", "r(d+1) above the DJIA 30 median r(d+1)", nil, func(r, _ float64) float64 { return r }},
	{"large_move", "\\|r(d+1)\\| > vol_20(d)", func(r, v float64) (float64, bool) { return b(math.Abs(r) > v), true }, func(r, v float64) float64 { return math.Abs(r) / v }},
	{"large_drop", "r(d+1) < -vol_20(d)", func(r, v float64) (float64, bool) { return b(r < -v), true }, func(r, v float64) float64 { return -r / v }},
	{"drop_2pct", "r(d+1) < -2 %", func(r, _ float64) (float64, bool) { return b(r < -0.02), true }, func(r, _ float64) float64 { return -r }},
}

type row struct {
	date    string
	x       [dataset.NumFeatures]float64
	r, rNow float64 // next day's and today's return
	y       float64
}

func main() {
	data := flag.String("data", "", "folder of the per-ticker CSVs")
	flag.Parse()
	raw, err := dataset.Load(*data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "targets:", err)
		os.Exit(2)
	}
	series, _ := dataset.Clean(raw)
	var rows []*row
	byDate := map[string][]float64{}
	for _, s := range series {
		for i, e := range dataset.Features(s) {
			if !e.HasLabel {
				continue
			}
			d := i + dataset.Warmup
			r := &row{date: e.Date, x: e.Features, r: s.Close[d+1]/s.Close[d] - 1, rNow: e.Features[0]}
			rows = append(rows, r)
			byDate[e.Date] = append(byDate[e.Date], r.r)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].date < rows[j].date })
	median := map[string]float64{}
	for d, v := range byDate {
		sort.Float64s(v)
		n := len(v)
		median[d] = (v[(n-1)/2] + v[n/2]) / 2
	}
	fmt.Println("| target | rule (r = close-to-close return) | 2017 share of 1 | persistence AUC | logistic regression AUC [95 %] | network 16,8 AUC [95 %] | network log-loss gain over the 2017 prior [95 %] |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|")
	for _, t := range targets {
		var tr, va, te []*row
		for _, r := range rows {
			c := *r
			vol := c.x[4]
			ok := true
			if t.label == nil {
				c.y, ok = b(c.r > median[c.date]), c.r != median[c.date]
			} else {
				c.y, ok = t.label(c.r, vol)
			}
			if !ok || vol == 0 {
				continue
			}
			switch {
			case c.date <= "2015-12-31":
				tr = append(tr, &c)
			case c.date <= "2016-12-31":
				va = append(va, &c)
			default:
				te = append(te, &c)
			}
		}
		norm := fit(tr)
		xt, yt := norm(tr)
		xv, yv := norm(va)
		xe, ye := norm(te)
		dates := make([]string, len(te))
		pers := make([]float64, len(te))
		for i, r := range te {
			dates[i], pers[i] = r.date, t.today(r.rNow, r.x[4])
		}
		var cells []string
		var net []float64
		for _, c := range []nn.Config{{Hidden: []int{}, LearningRate: 0.01, BatchSize: 256, Epochs: 30, Patience: 5, Seed: 42},
			{Hidden: []int{16, 8}, LearningRate: 0.001, BatchSize: 64, Epochs: 30, Patience: 5, Seed: 42}} {
			m, _, err := nn.Train(c, dataset.NumFeatures, xt, yt, xv, yv)
			if err != nil {
				fmt.Fprintln(os.Stderr, "targets:", err)
				os.Exit(1)
			}
			p := m.Predict(xe)
			lo, hi := boot(dates, func(w []float64) float64 { return wAUC(p, ye, w) })
			cells = append(cells, fmt.Sprintf("%.4f [%.4f, %.4f]", metrics.AUC(p, ye), lo, hi))
			net = p
		}
		gain := func(w []float64) float64 { return wPriorLoss(ye, w) - wLoss(net, ye, w) }
		glo, ghi := boot(dates, gain)
		fmt.Printf("| %s | %s | %.3f | %.4f | %s | %s | %+.4f [%+.4f, %+.4f] |\n", t.name, t.rule, mean(ye), metrics.AUC(pers, ye), cells[0], cells[1],
			gain(nil), glo, ghi)
	}
}

// fit returns the z-scoring fitted on tr, applied to a split.
func fit(tr []*row) func([]*row) ([]float64, []float64) {
	var m, s [dataset.NumFeatures]float64
	for _, r := range tr {
		for k, v := range r.x {
			m[k] += v / float64(len(tr))
		}
	}
	for _, r := range tr {
		for k, v := range r.x {
			s[k] += (v - m[k]) * (v - m[k]) / float64(len(tr))
		}
	}
	return func(rs []*row) ([]float64, []float64) {
		var x, y []float64
		for _, r := range rs {
			for k, v := range r.x {
				x = append(x, (v-m[k])/math.Sqrt(s[k]))
			}
			y = append(y, r.y)
		}
		return x, y
	}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func wt(w []float64, i int) float64 {
	if w == nil {
		return 1
	}
	return w[i]
}

// wAUC is the weighted Mann-Whitney AUC (ties count half).
func wAUC(p, y, w []float64) float64 {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return p[idx[a]] < p[idx[b]] })
	var num, negBelow, pos, neg float64
	for i := 0; i < len(idx); {
		j := i
		var pg, ng float64
		for ; j < len(idx) && p[idx[j]] == p[idx[i]]; j++ {
			if y[idx[j]] == 1 {
				pg += wt(w, idx[j])
			} else {
				ng += wt(w, idx[j])
			}
		}
		num += pg * (negBelow + ng/2)
		negBelow, pos, neg, i = negBelow+ng, pos+pg, neg+ng, j
	}
	return num / (pos * neg)
}

func wLoss(p, y, w []float64) float64 {
	var s, t float64
	for i := range p {
		q := math.Min(math.Max(p[i], metrics.Eps), 1-metrics.Eps)
		s -= wt(w, i) * (y[i]*math.Log(q) + (1-y[i])*math.Log(1-q))
		t += wt(w, i)
	}
	return s / t
}

func wPriorLoss(y, w []float64) float64 {
	var s, t float64
	for i := range y {
		s, t = s+wt(w, i)*y[i], t+wt(w, i)
	}
	r := s / t
	return -(r*math.Log(r) + (1-r)*math.Log(1-r))
}

// boot is the 95 % percentile interval of stat over 1000 circular
// block-bootstrap resamples of the dates (blocks of 5 trading days).
func boot(dates []string, stat func(w []float64) float64) (float64, float64) {
	var days []string
	rowsOf := map[string][]int{}
	for i, d := range dates {
		if rowsOf[d] == nil {
			days = append(days, d)
		}
		rowsOf[d] = append(rowsOf[d], i)
	}
	state := uint64(1)
	next := func() uint64 {
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
	const L, B = 5, 1000
	w := make([]float64, len(dates))
	var stats []float64
	for range B {
		clear(w)
		for taken := 0; taken < len(days); {
			s := int(next() % uint64(len(days)))
			for k := 0; k < L && taken < len(days); k++ {
				for _, i := range rowsOf[days[(s+k)%len(days)]] {
					w[i]++
				}
				taken++
			}
		}
		stats = append(stats, stat(w))
	}
	sort.Float64s(stats)
	q := func(p float64) float64 {
		h := p * float64(B-1)
		i := int(h)
		return stats[i] + (h-float64(i))*(stats[i+1]-stats[i])
	}
	return q(0.025), q(0.975)
}
