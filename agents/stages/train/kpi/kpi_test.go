package kpi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/config"
)

const metricsJSON = `{"model_name":"djia30","train":{"accuracy":0.61,"auc":0.66,"log_loss":0.65,"rows":1000},
"validation":{"accuracy":0.55,"auc":0.58,"log_loss":0.69,"rows":250},
"test":{"accuracy":0.53,"auc":0.54,"log_loss":0.7,"rows":250},
"baselines":{"always_bullish":{"validation":{"accuracy":0.53,"auc":0.5,"log_loss":0.69}}}}`

func metrics(t testing.TB) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(metricsJSON), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func f(v float64) *float64 { return &v }

func TestEvaluate(t *testing.T) {
	m := metrics(t)
	pass := Evaluate(m, []config.KPI{
		{Metric: "validation.auc", Op: ">", Value: f(0.5)},
		{Metric: "validation.auc", Op: ">", Baseline: "baselines.always_bullish.validation.auc"},
		{Metric: "validation.log_loss", Op: "<=", Value: f(0.69)},
	})
	if pass.Verdict != Passed || len(pass.Reasons) != 0 || *pass.Checks[1].Threshold != 0.5 || *pass.Checks[0].Value != 0.58 {
		t.Errorf("pass = %+v", pass)
	}
	fail := Evaluate(m, []config.KPI{
		{Metric: "validation.auc", Op: ">=", Value: f(0.6)},
		{Metric: "validation.f1", Op: ">", Value: f(0.5)},
		{Metric: "test.accuracy", Op: ">", Baseline: "baselines.same_as_today.test.accuracy"},
		{Metric: "model_name", Op: ">", Value: f(1)},
		{Metric: "validation.auc", Op: "==", Value: f(1)},
		{Metric: "validation.auc.x", Op: ">", Value: f(1)},
	})
	want := []string{
		"validation.auc = 0.58 is not >= 0.6",
		"validation.f1 > …: validation.f1 is missing from metrics.json",
		"test.accuracy > baselines.same_as_today.test.accuracy: baselines.same_as_today is missing from metrics.json",
		"model_name > …: model_name is not a number in metrics.json",
		`validation.auc: unknown operator "==" (use >, >=, < or <=)`,
		"validation.auc.x > …: validation.auc is not an object in metrics.json",
	}
	if fail.Verdict != Failed || strings.Join(fail.Reasons, "\n") != strings.Join(want, "\n") {
		t.Errorf("reasons =\n%s\nwant\n%s", strings.Join(fail.Reasons, "\n"), strings.Join(want, "\n"))
	}
	if _, err := json.Marshal(fail); err != nil {
		t.Errorf("result does not marshal: %v", err)
	}
	if none := Evaluate(m, nil); none.Verdict != Passed {
		t.Errorf("no KPIs = %+v", none)
	}
}

func TestTableAndMarkdown(t *testing.T) {
	m := metrics(t)
	want := `| model | split | accuracy | AUC | log loss |
|---|---|---:|---:|---:|
| **model** | train | 0.6100 | 0.6600 | 0.6500 |
| **model** | validation | 0.5500 | 0.5800 | 0.6900 |
| **model** | test | 0.5300 | 0.5400 | 0.7000 |
| always_bullish | train | – | – | – |
| always_bullish | validation | 0.5300 | 0.5000 | 0.6900 |
| always_bullish | test | – | – | – |
`
	if got := Table(m); got != want {
		t.Errorf("table =\n%s\nwant\n%s", got, want)
	}
	r := Evaluate(m, []config.KPI{
		{Metric: "validation.auc", Op: ">", Baseline: "baselines.always_bullish.validation.auc"},
		{Metric: "validation.auc", Op: ">=", Value: f(0.6)},
	})
	wantMD := "| KPI | model | reference | improvement | 95% interval | margin | verdict |\n|---|---:|---:|---:|---:|---:|---|\n" +
		"| validation.auc > baselines.always_bullish.validation.auc | 0.5800 | 0.5000 | – | – | – | passed (point check) |\n" +
		"| validation.auc >= 0.6 | 0.5800 | 0.6000 | – | – | – | failed (point check) |\n"
	if got := r.Markdown(); got != wantMD {
		t.Errorf("markdown =\n%q\nwant\n%q", got, wantMD)
	}
}

func FuzzLookup(fz *testing.F) {
	fz.Add(metricsJSON, "validation.auc")
	fz.Add(`{"a":{"b":1}}`, "a..b")
	fz.Fuzz(func(t *testing.T, doc, path string) {
		var m map[string]any
		if json.Unmarshal([]byte(doc), &m) != nil {
			return
		}
		Lookup(m, path)
	})
}
