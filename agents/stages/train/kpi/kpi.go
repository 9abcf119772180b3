package kpi

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/branchml/branchml/agents/config"
)

// Verdicts of Result.Verdict, as written to records.RunRecord.Gate.
const (
	Passed = "passed"
	Failed = "failed"
)

// Check is one KPI's outcome.
type Check struct {
	KPI config.KPI `json:"kpi"`
	// Value is the metric's value; Threshold the constant or the baseline's
	// value it is compared with (nil when missing).
	Value     *float64 `json:"value,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	Passed    bool     `json:"passed"`
	// Reason says, for a failed check, what failed in words naming the paths.
	Reason string `json:"reason,omitempty"`
}

// Result is the gate's verdict over all KPIs.
type Result struct {
	// Verdict is Passed when every check passed (also with no KPIs), else Failed.
	Verdict string  `json:"verdict"`
	Checks  []Check `json:"checks"`
	// Reasons are the failed checks' reasons, in KPI order.
	Reasons []string `json:"reasons,omitempty"`
}

// Lookup returns the number at a dotted path ("validation.auc",
// "baselines.always_bullish.validation.auc") in metrics (a decoded JSON
// object). It fails naming the first missing key or a value that is not a
// number.
func Lookup(metrics map[string]any, path string) (float64, error) {
	if path == "" {
		return 0, fmt.Errorf("empty metric path")
	}
	var cur any = metrics
	keys := strings.Split(path, ".")
	for i, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return 0, fmt.Errorf("%s is not an object in metrics.json", strings.Join(keys[:i], "."))
		}
		v, ok := m[k]
		if !ok {
			return 0, fmt.Errorf("%s is missing from metrics.json", strings.Join(keys[:i+1], "."))
		}
		cur = v
	}
	switch v := cur.(type) {
	case float64:
		return v, nil
	case int:
		return float64(v), nil
	case json.Number:
		return v.Float64()
	}
	return 0, fmt.Errorf("%s is not a number in metrics.json", path)
}

func compare(op string, a, b float64) (bool, error) {
	switch op {
	case ">":
		return a > b, nil
	case ">=":
		return a >= b, nil
	case "<":
		return a < b, nil
	case "<=":
		return a <= b, nil
	}
	return false, fmt.Errorf("unknown operator %q (use >, >=, < or <=)", op)
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

// Evaluate checks every KPI against metrics. A missing or non-numeric metric
// or baseline fails its check with a reason naming the path.
func Evaluate(metrics map[string]any, kpis []config.KPI) Result {
	res := Result{Verdict: Passed, Checks: []Check{}}
	for _, k := range kpis {
		c := Check{KPI: k}
		c.Reason = func() string {
			v, err := Lookup(metrics, k.Metric)
			if err != nil {
				return fmt.Sprintf("%s %s …: %v", k.Metric, k.Op, err)
			}
			c.Value = &v
			what := ""
			switch {
			case k.Baseline != "" && k.Value != nil:
				return fmt.Sprintf("%s: give either value or baseline, not both", k.Metric)
			case k.Baseline != "":
				b, err := Lookup(metrics, k.Baseline)
				if err != nil {
					return fmt.Sprintf("%s %s %s: %v", k.Metric, k.Op, k.Baseline, err)
				}
				c.Threshold, what = &b, fmt.Sprintf("%s %s", k.Baseline, num(b))
			case k.Value != nil:
				t := *k.Value
				c.Threshold, what = &t, num(t)
			default:
				return fmt.Sprintf("%s: give a value or a baseline to compare with", k.Metric)
			}
			ok, err := compare(k.Op, *c.Value, *c.Threshold)
			if err != nil {
				return fmt.Sprintf("%s: %v", k.Metric, err)
			}
			if ok {
				c.Passed = true
				return ""
			}
			return fmt.Sprintf("%s = %s is not %s %s", k.Metric, num(v), k.Op, what)
		}()
		if !c.Passed {
			res.Verdict = Failed
			res.Reasons = append(res.Reasons, c.Reason)
		}
		res.Checks = append(res.Checks, c)
	}
	return res
}

// Table renders the metrics table of the promotion pull request (markdown):
// one row per split (train, validation, test) of the model and of each
// baseline under "baselines", columns accuracy, AUC and log loss. Splits or
// values that metrics.json lacks show as "–".
func Table(metrics map[string]any) string {
	var b strings.Builder
	b.WriteString("| model | split | accuracy | AUC | log loss |\n|---|---|---:|---:|---:|\n")
	row := func(model, prefix, split string) {
		cell := func(key string) string {
			v, err := Lookup(metrics, prefix+split+"."+key)
			if err != nil {
				return "–"
			}
			return strconv.FormatFloat(v, 'f', 4, 64)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", model, split, cell("accuracy"), cell("auc"), cell("log_loss"))
	}
	splits := []string{"train", "validation", "test"}
	for _, s := range splits {
		row("**model**", "", s)
	}
	if bl, ok := metrics["baselines"].(map[string]any); ok {
		names := make([]string, 0, len(bl))
		for n := range bl {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			for _, s := range splits {
				row(n, "baselines."+n+".", s)
			}
		}
	}
	return b.String()
}

// Markdown renders the gate's checks as a markdown list with ✅/❌.
func (r Result) Markdown() string {
	var b strings.Builder
	for _, c := range r.Checks {
		mark := "✅"
		if !c.Passed {
			mark = "❌"
		}
		rhs := c.KPI.Baseline
		if c.KPI.Value != nil {
			rhs = num(*c.KPI.Value)
		}
		fmt.Fprintf(&b, "- %s `%s %s %s`", mark, c.KPI.Metric, c.KPI.Op, rhs)
		if c.Value != nil {
			fmt.Fprintf(&b, " (%s", num(*c.Value))
			if c.KPI.Baseline != "" && c.Threshold != nil {
				fmt.Fprintf(&b, " vs %s", num(*c.Threshold))
			}
			b.WriteString(")")
		}
		if c.Reason != "" {
			b.WriteString(": " + c.Reason)
		}
		b.WriteString("\n")
	}
	return b.String()
}
