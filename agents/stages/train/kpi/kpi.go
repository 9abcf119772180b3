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
	// Value is the model's metric (on the gate split for a KPI with
	// confidence); Threshold, for a point check, the constant or the
	// baseline's value it is compared with (nil when missing).
	Value     *float64 `json:"value,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	// Against names the reference of a KPI with confidence: a baseline
	// column, "prior", "champion v3" or a constant. Reference is its metric
	// on the same rows; Improvement the model's gain over it (positive is
	// better, in the metric's unit); Low and High the confidence interval
	// of the improvement; Rows the examples compared.
	Against     string   `json:"against,omitempty"`
	Reference   *float64 `json:"reference,omitempty"`
	Improvement *float64 `json:"improvement,omitempty"`
	Low         *float64 `json:"low,omitempty"`
	High        *float64 `json:"high,omitempty"`
	Rows        int      `json:"rows,omitempty"`
	Passed      bool     `json:"passed"`
	// Skipped is a champion KPI without a champion (it counts as passed).
	Skipped bool `json:"skipped,omitempty"`
	// Reason says, for a failed or skipped check, why, naming the paths.
	Reason string `json:"reason,omitempty"`
}

// TableCell is one metric of one predictor on the gate split with its
// confidence interval.
type TableCell struct {
	// Predictor is "model", "champion", a baseline column or "prior".
	Predictor string  `json:"predictor"`
	Metric    string  `json:"metric"`
	Value     float64 `json:"value"`
	Low       float64 `json:"low"`
	High      float64 `json:"high"`
}

// Result is the gate's verdict over all KPIs.
type Result struct {
	// Verdict is Passed when every check passed (also with no KPIs), else Failed.
	Verdict string  `json:"verdict"`
	Checks  []Check `json:"checks"`
	// Reasons are the failed checks' reasons, in KPI order.
	Reasons []string `json:"reasons,omitempty"`

	// The gate split's statistics (when a KPI has confidence): the split,
	// its rows and bootstrap blocks, the resampling, the champion compared
	// with, and the metrics table.
	Split       string       `json:"split,omitempty"`
	Rows        int          `json:"rows,omitempty"`
	Block       string       `json:"block,omitempty"`
	BlockLength int          `json:"blockLength,omitempty"`
	Blocks      int          `json:"blocks,omitempty"`
	Confidence  float64      `json:"confidence,omitempty"`
	Resamples   int          `json:"resamples,omitempty"`
	Seed        int64        `json:"seed,omitempty"`
	Champion    *ChampionRef `json:"champion,omitempty"`
	Table       []TableCell  `json:"table,omitempty"`
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

// Evaluate checks KPIs that are point checks (with op) against metrics;
// see Decide for KPIs with confidence. A missing or non-numeric metric or
// baseline fails its check with a reason naming the path.
func Evaluate(metrics map[string]any, kpis []config.KPI) Result {
	res := Result{Verdict: Passed, Checks: []Check{}}
	for _, k := range kpis {
		c := pointCheck(metrics, k)
		if !c.Passed {
			res.Verdict = Failed
			res.Reasons = append(res.Reasons, c.Reason)
		}
		res.Checks = append(res.Checks, c)
	}
	return res
}

// pointCheck compares one metrics.json value with a constant or another
// metrics.json value.
func pointCheck(metrics map[string]any, k config.KPI) Check {
	c := Check{KPI: k}
	c.Reason = func() string {
		if k.Op == "" {
			return fmt.Sprintf("%s: a KPI without op is measured on training.gate.split (use Decide)", k.Metric)
		}
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
	return c
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
