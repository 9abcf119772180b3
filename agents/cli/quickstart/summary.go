package quickstart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
	"github.com/branchml/branchml/agents/stages/train/kpi"
)

// PassSummary is one pass of the flow: the change it carried, the gate's
// decision on its model (champion and challenger side by side), and what
// happened on deploy-model.
type PassSummary struct {
	Pass     int           `json:"pass"`
	Change   string        `json:"change"`
	Model    string        `json:"model"`
	RunID    string        `json:"runId"`
	Gate     *kpi.Result   `json:"gate,omitempty"`
	Blocked  bool          `json:"blocked"`
	Deploy   string        `json:"deploy"`
	Duration time.Duration `json:"duration"`
}

// readTrain takes the run, the model and the gate from the train stage's
// outputs (the Result of agents/stages/train as JSON).
func (p *PassSummary) readTrain(outputs any) {
	raw, err := json.Marshal(outputs)
	if err != nil {
		return
	}
	var o struct {
		RunID string            `json:"runId"`
		Model *records.ModelRef `json:"model"`
		Gate  *kpi.Result       `json:"gate"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return
	}
	p.RunID, p.Gate = o.RunID, o.Gate
	if o.Model != nil {
		p.Model = fmt.Sprintf("%s v%d", o.Model.Name, o.Model.Version)
	}
}

// renderPasses writes each pass: its change, time, verdict, the gate's
// tables and the deploy outcome.
func (r *run) renderPasses(w io.Writer) {
	for _, p := range r.sum.Passes {
		verdict := "no KPI gate"
		if p.Gate != nil {
			verdict = "KPI gate " + p.Gate.Verdict
		}
		fmt.Fprintf(w, "Pass %d (%.1fs): %s\n  %s (run %s): %s\n", p.Pass, p.Duration.Seconds(), p.Change, p.Model, p.RunID, verdict)
		if p.Gate != nil {
			for _, why := range p.Gate.Reasons {
				fmt.Fprintf(w, "  not met: %s\n", why)
			}
			fmt.Fprintf(w, "%s", indent(indent(p.Gate.Text())))
		}
		fmt.Fprintf(w, "  deploy-model: %s\n\n", p.Deploy)
	}
}

// facts are the records the stages wrote back, read from the branches.
type facts struct {
	Pipeline records.PipelineLock
	Run      records.RunRecord
	Lineage  *lineage.Record
	Lineages []*lineage.Record
	Deploy   records.DeployStatus
}

func (r *run) readFacts(ctx context.Context) (*facts, error) {
	f := &facts{}
	for _, x := range []struct {
		ref, path string
		v         any
	}{
		{"refs/heads/kf-pipeline", records.PipelineLockPath, &f.Pipeline},
		{"refs/heads/training", records.TrainingLockPath, &f.Run},
		{"refs/heads/deploy-model", records.DeployStatusPath, &f.Deploy},
	} {
		raw, err := r.repo.show(ctx, x.ref, x.path)
		if err != nil {
			return nil, err
		}
		if raw == "" {
			return nil, fmt.Errorf("%s has no %s", strings.TrimPrefix(x.ref, "refs/heads/"), x.path)
		}
		if err := json.Unmarshal([]byte(raw), x.v); err != nil {
			return nil, fmt.Errorf("%s: %w", x.path, err)
		}
	}
	list, err := git(ctx, r.repo.Remote, "ls-tree", "--name-only", "refs/heads/training", records.LineageDir+"/")
	if err != nil {
		return nil, err
	}
	for _, p := range strings.Fields(list) {
		raw, err := r.repo.show(ctx, "refs/heads/training", p)
		if err != nil {
			return nil, err
		}
		rec, err := lineage.Parse([]byte(raw))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		f.Lineages = append(f.Lineages, rec)
		if rec.ID == f.Run.LineageID {
			f.Lineage = rec
		}
	}
	if f.Lineage == nil {
		return nil, fmt.Errorf("training has no lineage record %s", f.Run.LineageID)
	}
	return f, nil
}

// render writes the end-of-run summary as text.
func (r *run) render(w io.Writer, f *facts, p *Prediction) {
	fmt.Fprintf(w, "\n== branchml quickstart: summary\n\nTime per stage:\n")
	for _, s := range r.sum.Stages {
		fmt.Fprintf(w, "  %-10s %6.1fs  %s\n", s.Name, s.Duration.Seconds(), s.Summary)
	}
	fmt.Fprintf(w, "  %-10s %6.1fs\n\n", "total", r.sum.Total.Seconds())
	fmt.Fprintf(w, "Pipeline: %s (ID %s), version %s (ID %s), spec %s\n", f.Pipeline.PipelineName, f.Pipeline.PipelineID, f.Pipeline.VersionName, f.Pipeline.VersionID, f.Pipeline.SpecHash)
	fmt.Fprintf(w, "Run:      %s %s, experiment %s, model %s v%d, KPI gate %s\n\n", f.Run.RunID, f.Run.State, f.Run.Experiment, f.Run.Model.Name, f.Run.Model.Version, f.Run.Gate)
	r.renderPasses(w)
	fmt.Fprintf(w, "Metrics of the latest run beside the baselines (metrics.json):\n%s\n", indent(kpi.Table(f.Run.Metrics)))
	fmt.Fprintf(w, "Lineage:\n")
	var lb bytes.Buffer
	lineage.Show(&lb, f.Lineage)
	fmt.Fprintf(w, "%s\n", indent(lb.String()))
	if kc := r.env["BRANCHML_BACKENDS_STORAGE_KUBECONFIG"]; kc != "" {
		d, m := f.Lineage.Data, f.Lineage.Model.Snapshot
		fmt.Fprintf(w, "CSI VolumeSnapshots: %s/%s (content %s), %s/%s (content %s)\n"+
			"  the test bed stops with the quickstart and keeps its state; while it runs (make k8s-up is another one):\n"+
			"  kubectl --kubeconfig %s get volumesnapshots,pvc\n\n",
			d.Namespace, d.Snapshot, d.Handle, m.Namespace, m.Snapshot, m.Handle, kc)
	}
	if f.Deploy.CanaryWeight > 0 {
		fmt.Fprintf(w, "Deployment of %s: %s, stable v%d, canary v%d at %d%%\n", f.Deploy.Model, f.Deploy.Phase, f.Deploy.StableVersion, f.Deploy.CanaryVersion, f.Deploy.CanaryWeight)
	} else {
		fmt.Fprintf(w, "Deployment of %s: %s, v%d serves 100%% of the traffic\n", f.Deploy.Model, f.Deploy.Phase, f.Deploy.StableVersion)
	}
	for _, ev := range f.Deploy.History {
		fmt.Fprintf(w, "  %s  v%d  weight %3d%%  %-16s %s\n", ev.Time.Format("15:04:05.000"), ev.Version, ev.Weight, ev.Event, ev.Message)
	}
	fmt.Fprintf(w, "\nTo run the agents by hand on this workdir (README.md, \"Running an agent by hand\"), paste:\n%s", r.exports())
	if p != nil {
		fmt.Fprintf(w, "\nPrediction: POST %s\n  request:  %s\n  response: %s\n  → P(%s moves more than its 20-day σ on the trading day after %s) = %.4f (it actually %s)\n",
			p.URL, p.Request, p.Response, p.Ticker, p.Date, p.Probability, map[int]string{0: "did not", 1: "did"}[p.Actual])
	}
}

// report writes the Markdown report with the training curves and the
// lineage graph (Mermaid) into <workdir>/report/.
func (r *run) report(f *facts, p *Prediction, text string) (string, error) {
	dir := filepath.Join(r.opt.Workdir, "report")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# branchml quickstart report\n\n")
	fmt.Fprintf(&b, "Data: `%s`. Workdir: `%s`.\n\n", r.sum.Data, r.opt.Workdir)
	b.WriteString("## Stages\n\n| stage | seconds | summary |\n|---|---:|---|\n")
	for _, s := range r.sum.Stages {
		fmt.Fprintf(&b, "| %s | %.1f | %s |\n", s.Name, s.Duration.Seconds(), strings.ReplaceAll(s.Summary, "|", "\\|"))
	}
	fmt.Fprintf(&b, "| **total** | %.1f | |\n\n", r.sum.Total.Seconds())
	fmt.Fprintf(&b, "## Model %s v%d\n\nRun `%s` (%s) of pipeline version `%s`.\n\n", f.Run.Model.Name, f.Run.Model.Version, f.Run.RunID, f.Run.State, f.Pipeline.VersionName)
	b.WriteString(kpi.Table(f.Run.Metrics) + "\n")
	for _, p := range r.sum.Passes {
		fmt.Fprintf(&b, "## Pass %d: %s\n\n%s (run `%s`), %.1f s. deploy-model: %s\n\n", p.Pass, p.Change, p.Model, p.RunID, p.Duration.Seconds(), p.Deploy)
		if p.Gate != nil {
			fmt.Fprintf(&b, "KPI gate **%s**.\n\n%s\n", p.Gate.Verdict, p.Gate.Markdown())
		}
	}
	curves := filepath.Join(r.env["BRANCHML_BACKENDS_STATE_DIR"], "volumes", f.Run.Model.Volume, f.Run.Model.Path, fmt.Sprint(f.Run.Model.Version), "training_curves.png")
	if png, err := os.ReadFile(curves); err == nil {
		if err := atomicfile.WriteFile(filepath.Join(dir, "training_curves.png"), png, 0o644); err == nil {
			b.WriteString("![training curves](training_curves.png)\n\n")
		}
	}
	b.WriteString("## Lineage\n\n```\n")
	lineage.Show(&b, f.Lineage)
	b.WriteString("```\n\n```mermaid\n")
	lineage.Graph(&b, f.Lineages, "mermaid")
	b.WriteString("```\n\n## Deployment\n\n| time | version | weight | event | message |\n|---|---:|---:|---|---|\n")
	for _, ev := range f.Deploy.History {
		fmt.Fprintf(&b, "| %s | %d | %d%% | %s | %s |\n", ev.Time.Format("15:04:05.000"), ev.Version, ev.Weight, ev.Event, ev.Message)
	}
	if p != nil {
		fmt.Fprintf(&b, "\n## Prediction\n\n`POST %s`\n\n```json\n%s\n```\n\n```json\n%s\n```\n", p.URL, p.Request, p.Response)
	}
	b.WriteString("\n## Console summary\n\n```\n" + text + "```\n")
	path := filepath.Join(dir, "report.md")
	return path, atomicfile.WriteFile(path, []byte(b.String()), 0o644)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// exports is what a person pastes to run the agents by hand on this
// workdir (README.md, "Running an agent by hand"): the agents on PATH, the
// workdir, and the environment the quickstart gave every agent, as shell
// export lines.
func (r *run) exports() string {
	keys := make([]string, 0, len(r.env))
	for k := range r.env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	if r.opt.BinDir != "" {
		fmt.Fprintf(&b, "  export PATH=%s:\"$PATH\"\n", shellQuote(r.opt.BinDir))
	}
	fmt.Fprintf(&b, "  export %s=%s\n", WorkdirEnv, shellQuote(r.opt.Workdir))
	for _, k := range keys {
		fmt.Fprintf(&b, "  export %s=%s\n", k, shellQuote(r.env[k]))
	}
	return b.String()
}

// WorkdirEnv is the variable of the by-hand commands that names the
// quickstart's workdir (its summary exports it).
const WorkdirEnv = "QUICKSTART_WORKDIR"

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:@%+=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
