package kpi

import (
	"fmt"
	"math"
	"strconv"

	"github.com/branchml/branchml/agents/config"
)

// ChampionRef names the model serving on the deploy branch, whose
// predictions the challenger is compared with.
type ChampionRef struct {
	Model        string `json:"model"`
	Version      int64  `json:"version"`
	RunID        string `json:"runId,omitempty"`
	SourceCommit string `json:"sourceCommit,omitempty"`
	// Rows is how many gate rows both predicted (set by Decide).
	Rows int `json:"rows,omitempty"`
}

// String is "v3 (run r-42)".
func (c ChampionRef) String() string {
	s := fmt.Sprintf("v%d", c.Version)
	if c.RunID != "" {
		s += " (run " + c.RunID + ")"
	}
	return s
}

// Champion is the serving model and its predictions of the gate split.
type Champion struct {
	Ref         ChampionRef
	Predictions *Predictions
}

// Input is what Decide decides on.
type Input struct {
	Gate config.Gate
	KPIs []config.KPI
	// Metrics is the run's metrics.json (for point checks; may be nil).
	Metrics map[string]any
	// Predictions of the gate split by the challenger (nil when no KPI has
	// confidence).
	Predictions *Predictions
	// Champion is nil when none serves; NoChampion then says why, and
	// champion KPIs are skipped with it as their reason.
	Champion   *Champion
	NoChampion string
	// NoTable skips the metrics table (Result.Table): only the KPIs'
	// metrics are resampled.
	NoTable bool
}

// HasConfidenceKPIs reports whether any KPI is measured on the gate split.
func HasConfidenceKPIs(kpis []config.KPI) bool {
	for _, k := range kpis {
		if k.Op == "" {
			return true
		}
	}
	return false
}

// NeedsChampion reports whether any KPI compares with the champion.
func NeedsChampion(kpis []config.KPI) bool {
	for _, k := range kpis {
		if k.Op == "" && k.Champion {
			return true
		}
	}
	return false
}

// ChampionName is the predictor name of the champion in tables.
const ChampionName = "champion"

// view is one predictor on a set of rows (all, or those the champion
// predicted too).
type view struct {
	pred   string
	masked bool
}

type gateData struct {
	y      []float64
	preds  map[string]*scorer
	mask   []bool // rows the champion predicted (nil: all, or no champion)
	blocks []string
}

// weights are one resample's row weights, and the same restricted to the
// rows the champion predicted.
type weights struct{ all, masked []float64 }

// set fills masked from all.
func (g *gateData) set(w *weights) {
	if g.mask == nil {
		w.masked = w.all
		return
	}
	if len(w.masked) != len(w.all) {
		w.masked = make([]float64, len(w.all))
	}
	for i, v := range w.all {
		if g.mask[i] {
			w.masked[i] = v
		} else {
			w.masked[i] = 0
		}
	}
}

// ones are the weights of the sample itself.
func (g *gateData) ones() *weights {
	w := &weights{all: make([]float64, len(g.y))}
	for i := range w.all {
		w.all[i] = 1
	}
	g.set(w)
	return w
}

func (g *gateData) value(v view, m string, w *weights) float64 {
	ws := w.all
	if v.masked {
		ws = w.masked
	}
	if v.pred == Prior {
		return priorMetric(m, g.y, ws)
	}
	return g.preds[v.pred].metric(m, ws)
}

// Decide evaluates every KPI: point checks on in.Metrics, KPIs with
// confidence on in.Predictions (and the champion's). It returns an
// *InputError when the predictions cannot be evaluated (a missing column,
// a bad label, labels that disagree with the champion's on the same
// example); a KPI that is not met is a Failed verdict, not an error.
func Decide(in Input) (Result, error) {
	res := Result{Verdict: Passed, Checks: []Check{}}
	var g *gateData
	if HasConfidenceKPIs(in.KPIs) {
		var err error
		if g, err = prepare(in, &res); err != nil {
			return Result{}, err
		}
	}
	type pending struct {
		i         int
		model, rf view
		dir       float64
		value     *float64
	}
	var todo []pending
	for i, k := range in.KPIs {
		var c Check
		switch {
		case k.Op != "":
			c = pointCheck(in.Metrics, k)
		case k.Champion && in.Champion == nil:
			c = Check{KPI: k, Against: ChampionName, Passed: true, Skipped: true, Reason: "skipped: " + in.NoChampion}
		default:
			higher, ok := HigherIsBetter(k.Metric)
			if !ok {
				return Result{}, &InputError{What: "training.kpis", Msg: fmt.Sprintf("metric %q: use auc, accuracy, log_loss or brier", k.Metric)}
			}
			p := pending{i: i, model: view{pred: in.Gate.Score}, dir: -1}
			if higher {
				p.dir = 1
			}
			switch {
			case k.Champion:
				p.model.masked = g.mask != nil
				p.rf = view{pred: ChampionName, masked: g.mask != nil}
				c.Against = ChampionName + " " + in.Champion.Ref.Short()
			case k.Baseline != "":
				p.rf = view{pred: k.Baseline}
				c.Against = k.Baseline
			case k.Value != nil:
				p.value = k.Value
				c.Against = strconv.FormatFloat(*k.Value, 'g', -1, 64)
			default:
				return Result{}, &InputError{What: "training.kpis", Msg: fmt.Sprintf("metric %s: give baseline, champion or value to compare with", k.Metric)}
			}
			c.KPI = k
			todo = append(todo, p)
		}
		res.Checks = append(res.Checks, c)
	}
	if g != nil {
		// The views every KPI and the table need, resampled together.
		views := map[view][]string{}
		add := func(v view, ms ...string) {
			for _, m := range ms {
				if !contains(views[v], m) {
					views[v] = append(views[v], m)
				}
			}
		}
		table := tableViews(in, g)
		if in.NoTable {
			table = nil
		}
		for _, row := range table {
			add(row, Metrics...)
		}
		for _, p := range todo {
			m := in.KPIs[p.i].Metric
			add(p.model, m)
			if p.value == nil {
				add(p.rf, m)
			}
		}
		type vm struct {
			v view
			m string
		}
		boot := map[vm][]float64{}
		n := len(g.y)
		w := &weights{all: make([]float64, n)}
		rs := newResampler(g.blocks, in.Gate.BlockLength, in.Gate.Seed)
		res.Blocks = len(rs.blocks)
		for b := 0; b < in.Gate.Resamples; b++ {
			rs.draw(w.all)
			g.set(w)
			for v, ms := range views {
				for _, m := range ms {
					boot[vm{v, m}] = append(boot[vm{v, m}], g.value(v, m, w))
				}
			}
		}
		conf := in.Gate.Confidence
		one := g.ones()
		for _, v := range table {
			for _, m := range Metrics {
				lo, hi, err := interval(boot[vm{v, m}], conf)
				if err != nil {
					return Result{}, &InputError{What: "gate split", Msg: err.Error()}
				}
				name := v.pred
				if v.pred == in.Gate.Score {
					name = ModelName
				}
				res.Table = append(res.Table, TableCell{Predictor: name, Metric: m, Value: g.value(v, m, one), Low: lo, High: hi})
			}
		}
		for _, p := range todo {
			k := in.KPIs[p.i]
			c := &res.Checks[p.i]
			val := g.value(p.model, k.Metric, one)
			ref := 0.0
			if p.value != nil {
				ref = *p.value
			} else {
				ref = g.value(p.rf, k.Metric, one)
			}
			mv := boot[vm{p.model, k.Metric}]
			diffs := make([]float64, len(mv))
			for b := range mv {
				r := ref
				if p.value == nil {
					r = boot[vm{p.rf, k.Metric}][b]
				}
				diffs[b] = p.dir * (mv[b] - r)
			}
			lo, hi, err := interval(diffs, conf)
			if err != nil {
				return Result{}, &InputError{What: "gate split", Msg: err.Error()}
			}
			imp := p.dir * (val - ref)
			c.Value, c.Reference, c.Improvement, c.Low, c.High = &val, &ref, &imp, &lo, &hi
			c.Rows = n
			if p.model.masked {
				c.Rows = in.Champion.Ref.Rows
			}
			c.Passed = lo > k.Margin
			if !c.Passed {
				c.Reason = fmt.Sprintf("%s vs %s: improvement %s, %s%% interval [%s, %s]: the lower bound does not clear the margin %s",
					k.Metric, c.Against, signed(imp), pct(conf), signed(lo), signed(hi), strconv.FormatFloat(k.Margin, 'g', -1, 64))
			}
		}
	}
	for _, c := range res.Checks {
		if !c.Passed {
			res.Verdict = Failed
			res.Reasons = append(res.Reasons, c.Reason)
		}
	}
	return res, nil
}

// ModelName is the challenger's predictor name in tables.
const ModelName = "model"

// Short is "v3".
func (c ChampionRef) Short() string { return fmt.Sprintf("v%d", c.Version) }

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// tableViews are the predictors of the metrics table: the model, the
// champion (on the rows it predicted), each baseline a KPI names, prior.
func tableViews(in Input, g *gateData) []view {
	out := []view{{pred: in.Gate.Score}}
	if in.Champion != nil {
		out = append(out, view{pred: ChampionName, masked: g.mask != nil})
	}
	seen := map[string]bool{in.Gate.Score: true, ChampionName: true}
	for _, k := range in.KPIs {
		if k.Op == "" && k.Baseline != "" && !seen[k.Baseline] {
			seen[k.Baseline] = true
			out = append(out, view{pred: k.Baseline})
		}
	}
	if !seen[Prior] {
		out = append(out, view{pred: Prior})
	}
	return out
}

// prepare reads the labels and the predictors the KPIs name, pairs the
// champion's rows with the challenger's, and fills the gate fields of res.
func prepare(in Input, res *Result) (*gateData, error) {
	gc := in.Gate
	if in.Predictions == nil {
		return nil, &InputError{What: "gate split " + gc.Split, Msg: "no predictions: the pipeline must write them (training.gate.predictions)"}
	}
	if gc.Resamples <= 0 || gc.Confidence <= 0 || gc.Confidence >= 1 {
		return nil, &InputError{What: "training.gate", Msg: fmt.Sprintf("resamples %d and confidence %g: want resamples > 0 and 0 < confidence < 1", gc.Resamples, gc.Confidence)}
	}
	p := in.Predictions
	y, err := p.Labels(gc.Label)
	if err != nil {
		return nil, err
	}
	g := &gateData{y: y, preds: map[string]*scorer{}}
	load := func(col string) error {
		if col == Prior || g.preds[col] != nil {
			return nil
		}
		v, err := p.Probabilities(col)
		if err != nil {
			return err
		}
		g.preds[col] = newScorer(v, y)
		return nil
	}
	if err := load(gc.Score); err != nil {
		return nil, err
	}
	for _, k := range in.KPIs {
		if k.Op == "" && k.Baseline != "" {
			if k.Baseline == ChampionName || k.Baseline == gc.Score {
				return nil, &InputError{What: "training.kpis", Msg: fmt.Sprintf("baseline %q: name a baseline column, or set champion: true", k.Baseline)}
			}
			if err := load(k.Baseline); err != nil {
				return nil, err
			}
		}
	}
	if gc.Block != "" {
		if g.blocks, err = p.Text(gc.Block); err != nil {
			return nil, err
		}
	} else {
		g.blocks, _ = p.Keys(nil)
	}
	res.Split, res.Rows, res.Confidence, res.Resamples, res.Seed = gc.Split, p.Rows(), gc.Confidence, gc.Resamples, gc.Seed
	res.Block, res.BlockLength = gc.Block, max(gc.BlockLength, 1)
	if in.Champion != nil && NeedsChampion(in.KPIs) {
		cp, mask, rows, err := pair(gc, p, y, in.Champion.Predictions)
		if err != nil {
			return nil, err
		}
		if rows < p.Rows() {
			g.mask = mask
		}
		g.preds[ChampionName] = newScorer(cp, y)
		ref := in.Champion.Ref
		ref.Rows = rows
		in.Champion.Ref = ref
		res.Champion = &ref
	}
	return g, nil
}

// pair aligns the champion's probabilities with the challenger's rows by
// the key columns: cp[i] is the champion's prediction of row i where
// mask[i]; rows counts them. The champion's label of a shared example must
// be the challenger's.
func pair(gc config.Gate, p *Predictions, y []float64, champ *Predictions) (cp []float64, mask []bool, rows int, err error) {
	if champ == nil {
		return nil, nil, 0, &InputError{What: "champion", Msg: "no predictions"}
	}
	cy, err := champ.Labels(gc.Label)
	if err != nil {
		return nil, nil, 0, err
	}
	cs, err := champ.Probabilities(gc.Score)
	if err != nil {
		return nil, nil, 0, err
	}
	if len(gc.Key) == 0 && champ.Rows() != p.Rows() {
		return nil, nil, 0, &InputError{What: champ.What, Msg: fmt.Sprintf("%d rows, the challenger's %d: without training.gate.key rows are paired by position", champ.Rows(), p.Rows())}
	}
	ck, err := champ.Keys(gc.Key)
	if err != nil {
		return nil, nil, 0, err
	}
	keys, err := p.Keys(gc.Key)
	if err != nil {
		return nil, nil, 0, err
	}
	at := make(map[string]int, len(ck))
	for i, k := range ck {
		at[k] = i
	}
	cp, mask = make([]float64, len(y)), make([]bool, len(y))
	differ := 0
	for i, k := range keys {
		j, ok := at[k]
		if !ok {
			continue
		}
		if cy[j] != y[i] {
			differ++
			continue
		}
		cp[i], mask[i] = cs[j], true
		rows++
	}
	if differ > 0 {
		return nil, nil, 0, &InputError{What: champ.What, Msg: fmt.Sprintf("the label differs on %d of the examples both predicted: the champion was trained for another target; compare with baselines only (remove champion KPIs) until it is replaced", differ)}
	}
	if rows == 0 {
		return nil, nil, 0, &InputError{What: champ.What, Msg: fmt.Sprintf("no example in common with the challenger's gate split (key %v)", gc.Key)}
	}
	return cp, mask, rows, nil
}

// signed formats v with a sign and 4 decimals ("+0.0123", "-0.0040").
func signed(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%+.4f", v)
}

func pct(c float64) string { return strconv.FormatFloat(c*100, 'g', -1, 64) }
