package kpicmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/internal/agent"
)

const config = `apiVersion: branchml.dev/v1
project: p
branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}
training:
  gate: {split: test, key: [date, ticker], block: date, resamples: 500}
  kpis:
    - {metric: auc, baseline: prior, margin: 0.05}
    - {metric: auc, champion: true}
    - {metric: test.rows, op: ">=", value: 8}
`

// rows are 10 dates × 2 tickers; the model ranks every pair right, the
// champion ranks at random.
func predictions(model bool) string {
	var b strings.Builder
	b.WriteString("split,date,ticker,label,model\n")
	for d := 0; d < 10; d++ {
		for k, tk := range []string{"A", "B"} {
			y := (d + k) % 2
			p := 0.2 + 0.6*float64(y)
			if !model {
				p = 0.5
			}
			fmt.Fprintf(&b, "test,d%d,%s,%d,%s\n", d, tk, y, strconv.FormatFloat(p, 'g', -1, 64))
		}
	}
	return b.String()
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	app := cli.NewApp("branchml", "test", Command())
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), app, append([]string{"branchml", "kpi", "check"}, args...), cli.Streams{Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "branchml.yaml")
	write(t, dir, "branchml.yaml", config)
	good, champ := filepath.Join(dir, "good"), filepath.Join(dir, "champ")
	write(t, good, "predictions.csv", predictions(true))
	write(t, good, "metrics.json", `{"model_version":2,"test":{"rows":20}}`)
	write(t, champ, "predictions.csv", predictions(false))
	write(t, champ, "metrics.json", `{"model_version":1,"test":{"rows":20}}`)

	// 0: better than the prior and than the champion.
	code, out, errs := run(t, "--config", cfg, "--metrics", good, "--champion", champ)
	if code != agent.ExitOK || !strings.Contains(out, "auc vs champion v1   1.0000     0.5000      +0.5000") || !strings.HasSuffix(strings.TrimSpace(out), "KPI gate passed") {
		t.Errorf("exit %d\n%s\n%s", code, out, errs)
	}
	// Without --champion the champion KPI is skipped.
	if code, out, _ := run(t, "--config", cfg, "--metrics", good); code != 0 || !strings.Contains(out, "skipped: no champion: pass --champion DIR") {
		t.Errorf("no champion: exit %d\n%s", code, out)
	}
	// 3: the champion's own predictions do not beat the prior.
	code, out, errs = run(t, "--config", cfg, "--metrics", champ, "-o", "json")
	var res agent.Result
	if code != agent.ExitGate || json.Unmarshal([]byte(out), &res) != nil || res.ExitCode != 3 ||
		!strings.Contains(errs, "auc vs prior: improvement +0.0000, 95% interval [+0.0000, +0.0000]: the lower bound does not clear the margin 0.05") {
		t.Errorf("exit %d\n%s\n%s", code, out, errs)
	}
	// 2: bad input.
	write(t, filepath.Join(dir, "bad"), "predictions.csv", "split,date,ticker,label,model\ntest,d0,A,2,0.5\n")
	write(t, filepath.Join(dir, "bad"), "metrics.json", `{}`)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", cfg}, "pass --metrics DIR"},
		{[]string{"--config", cfg, "--metrics", filepath.Join(dir, "missing")}, "point checks (KPIs with op) need the run's metrics.json"},
		{[]string{"--config", cfg, "--metrics", filepath.Join(dir, "bad")}, `line 2: label label = "2": want 0 or 1`},
		{[]string{"--config", filepath.Join(dir, "nope.yaml"), "--metrics", good}, "nope.yaml"},
	} {
		if code, _, errs := run(t, c.args...); code != agent.ExitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want 2 with %q:\n%s", c.args, code, c.want, errs)
		}
	}
}
