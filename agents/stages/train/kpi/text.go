package kpi

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// grid is a table rendered as Markdown or as aligned text.
type grid struct {
	head []string
	// right marks the columns aligned right (numbers).
	right []bool
	rows  [][]string
}

func (g grid) markdown() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(g.head, " | ") + " |\n|")
	for i := range g.head {
		if g.right[i] {
			b.WriteString("---:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	for _, r := range g.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

func (g grid) text() string {
	w := make([]int, len(g.head))
	for _, r := range append([][]string{g.head}, g.rows...) {
		for i, c := range r {
			w[i] = max(w[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range append([][]string{g.head}, g.rows...) {
		for i, c := range r {
			pad := strings.Repeat(" ", w[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if g.right[i] {
				b.WriteString(pad + c)
			} else if i < len(r)-1 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(c)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func f4(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.4f", *v)
}

func verdict(c Check) string {
	switch {
	case c.Skipped:
		return "skipped"
	case c.Passed:
		return "passed"
	}
	return "failed"
}

// kpiGrid is one row per KPI: what is compared, the model's value, the
// reference's, the improvement, its interval, the margin and the verdict.
func (r Result) kpiGrid() grid {
	g := grid{head: []string{"KPI", "model", "reference", "improvement", pct(r.confidence()) + "% interval", "margin", "verdict"},
		right: []bool{false, true, true, true, true, true, false}}
	for _, c := range r.Checks {
		k := c.KPI
		if k.Op != "" {
			rhs := k.Baseline
			if k.Value != nil {
				rhs = num(*k.Value)
			}
			g.rows = append(g.rows, []string{fmt.Sprintf("%s %s %s", k.Metric, k.Op, rhs), f4(c.Value), f4(c.Threshold), "–", "–", "–", verdict(c) + " (point check)"})
			continue
		}
		iv := "–"
		if c.Low != nil {
			iv = fmt.Sprintf("[%s, %s]", signed(*c.Low), signed(*c.High))
		}
		imp := "–"
		if c.Improvement != nil {
			imp = signed(*c.Improvement)
		}
		v := verdict(c)
		if c.Skipped {
			v = c.Reason
		}
		g.rows = append(g.rows, []string{k.Metric + " vs " + c.Against, f4(c.Value), f4(c.Reference), imp, iv, num(k.Margin), v})
	}
	return g
}

func (r Result) confidence() float64 {
	if r.Confidence == 0 {
		return 0.95
	}
	return r.Confidence
}

// predictors are the table's columns in order of first appearance.
func (r Result) predictors() []string {
	var out []string
	for _, c := range r.Table {
		if !contains(out, c.Predictor) {
			out = append(out, c.Predictor)
		}
	}
	return out
}

// metricsGrid is the gate split's metrics side by side: one row per
// metric, one column per predictor (model, champion, baselines, prior),
// each cell "value [low, high]".
func (r Result) metricsGrid() grid {
	preds := r.predictors()
	g := grid{head: []string{"metric"}, right: []bool{false}}
	for _, p := range preds {
		name := p
		if p == ChampionName && r.Champion != nil {
			name += " " + r.Champion.Short()
		}
		g.head = append(g.head, name)
		g.right = append(g.right, true)
	}
	for _, m := range Metrics {
		row := []string{m}
		for _, p := range preds {
			cell := "–"
			for _, c := range r.Table {
				if c.Predictor == p && c.Metric == m {
					cell = fmt.Sprintf("%.4f [%.4f, %.4f]", c.Value, c.Low, c.High)
				}
			}
			row = append(row, cell)
		}
		g.rows = append(g.rows, row)
	}
	return g
}

// about is one line saying where the gate measured.
func (r Result) about() string {
	if r.Split == "" {
		return ""
	}
	s := fmt.Sprintf("split %s: %d examples", r.Split, r.Rows)
	if r.Block != "" {
		s += fmt.Sprintf(" on %d %s values, resampled in circular blocks of %d", r.Blocks, r.Block, r.BlockLength)
	}
	s += fmt.Sprintf("; %s%% intervals from %d block-bootstrap resamples (seed %d)", pct(r.confidence()), r.Resamples, r.Seed)
	if r.Champion != nil {
		s += fmt.Sprintf("; champion %s on %d shared examples", r.Champion, r.Champion.Rows)
	}
	return s
}

// Markdown renders the gate for a pull request: where it measured, the
// metrics table side by side with intervals, and one row per KPI with
// value, reference, improvement, interval, margin and verdict.
func (r Result) Markdown() string {
	var b strings.Builder
	if a := r.about(); a != "" {
		b.WriteString("Measured on " + a + ".\n\n")
		b.WriteString(r.metricsGrid().markdown())
		b.WriteString("\n")
	}
	if len(r.Checks) > 0 {
		b.WriteString(r.kpiGrid().markdown())
	}
	return b.String()
}

// Text renders the same as aligned plain text, for logs and summaries.
func (r Result) Text() string {
	var b strings.Builder
	if a := r.about(); a != "" {
		b.WriteString(a + "\n\n")
		b.WriteString(r.metricsGrid().text())
		b.WriteString("\n")
	}
	if len(r.Checks) > 0 {
		b.WriteString(r.kpiGrid().text())
	}
	return b.String()
}
