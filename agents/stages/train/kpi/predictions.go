package kpi

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// PredictionsFile is the name of the predictions CSV in a metrics
// directory (branchml kpi check --metrics DIR) and in a model version
// directory of the example.
const PredictionsFile = "predictions.csv"

// SplitColumn, when a predictions file has it, names each row's split; the
// gate keeps the rows of training.gate.split.
const SplitColumn = "split"

// MaxPredictionRows bounds the rows of one predictions file.
const MaxPredictionRows = 5_000_000

// InputError is a predictions file or a KPI that the gate cannot evaluate:
// a malformed file, a missing column, a label that is not 0 or 1. The
// stage reports it as a failed stage, kpi check as exit 2.
type InputError struct {
	// What names the input ("predictions of run r1", "champion's predictions").
	What string
	// Line is the 1-based CSV line (0 when not about one line).
	Line int
	Msg  string
}

func (e *InputError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d: %s", e.What, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.What, e.Msg)
}

// Predictions are the per-example predictions of the gate split: a CSV
// file with a header line, one row per example. Every column is kept as
// text; Numbers parses a score column on demand.
type Predictions struct {
	// What names the source in errors.
	What   string
	Header []string
	cols   map[string][]string
	// lines[i] is the CSV line of row i (for errors).
	lines []int
}

// ParsePredictions reads a predictions CSV (RFC 4180, as encoding/csv
// reads it). When split is not "" and the file has a "split" column, only
// the rows of that split are kept; a file without the column is taken to
// hold the split alone. It fails on an empty file, duplicate or empty
// column names, rows of the wrong width, more than MaxPredictionRows rows,
// or no row of split.
func ParsePredictions(what string, data []byte, split string) (*Predictions, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.ReuseRecord = false
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, &InputError{What: what, Msg: "empty file: want a header line and one row per example"}
	}
	if err != nil {
		return nil, csvError(what, err)
	}
	p := &Predictions{What: what, Header: header, cols: map[string][]string{}}
	for i, h := range header {
		h = strings.TrimSpace(h)
		header[i] = h
		if h == "" {
			return nil, &InputError{What: what, Line: 1, Msg: fmt.Sprintf("column %d has no name", i+1)}
		}
		if _, dup := p.cols[h]; dup {
			return nil, &InputError{What: what, Line: 1, Msg: fmt.Sprintf("column %q appears twice", h)}
		}
		p.cols[h] = nil
	}
	splitAt := slices.Index(header, SplitColumn)
	var seen []string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(what, err)
		}
		line, _ := r.FieldPos(0)
		if splitAt >= 0 && split != "" && rec[splitAt] != split {
			if !slices.Contains(seen, rec[splitAt]) && len(seen) < 10 {
				seen = append(seen, rec[splitAt])
			}
			continue
		}
		if len(p.lines) >= MaxPredictionRows {
			return nil, &InputError{What: what, Line: line, Msg: fmt.Sprintf("more than %d rows", MaxPredictionRows)}
		}
		for i, h := range header {
			p.cols[h] = append(p.cols[h], rec[i])
		}
		p.lines = append(p.lines, line)
	}
	if len(p.lines) == 0 {
		msg := "no rows"
		if len(seen) > 0 {
			msg = fmt.Sprintf("no rows of split %q (the file has %s)", split, strings.Join(seen, ", "))
		}
		return nil, &InputError{What: what, Msg: msg}
	}
	return p, nil
}

func csvError(what string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &InputError{What: what, Line: pe.Line, Msg: pe.Err.Error()}
	}
	return &InputError{What: what, Msg: err.Error()}
}

// Rows is the number of examples.
func (p *Predictions) Rows() int { return len(p.lines) }

// Has reports whether the file has column name.
func (p *Predictions) Has(name string) bool {
	_, ok := p.cols[name]
	return ok
}

// Text returns a column's values as written; an error names a missing
// column and the columns there are.
func (p *Predictions) Text(name string) ([]string, error) {
	v, ok := p.cols[name]
	if !ok {
		return nil, &InputError{What: p.What, Msg: fmt.Sprintf("no column %q (columns: %s)", name, strings.Join(p.Header, ", "))}
	}
	return v, nil
}

// Probabilities parses column name as probabilities: finite numbers in
// [0, 1].
func (p *Predictions) Probabilities(name string) ([]float64, error) {
	txt, err := p.Text(name)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(txt))
	for i, s := range txt {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 1 {
			return nil, &InputError{What: p.What, Line: p.lines[i], Msg: fmt.Sprintf("%s = %q is not a probability in [0, 1]", name, s)}
		}
		out[i] = v
	}
	return out, nil
}

// Labels parses column name as binary labels: 0 or 1 (also 0.0, 1.0, true,
// false).
func (p *Predictions) Labels(name string) ([]float64, error) {
	txt, err := p.Text(name)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(txt))
	for i, s := range txt {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "1", "1.0", "true":
			out[i] = 1
		case "0", "0.0", "false":
		default:
			return nil, &InputError{What: p.What, Line: p.lines[i], Msg: fmt.Sprintf("label %s = %q: want 0 or 1", name, s)}
		}
	}
	return out, nil
}

// Keys returns one string per row joining the values of cols (for pairing
// rows across files), or the row numbers when cols is empty. Duplicate
// keys are an error.
func (p *Predictions) Keys(cols []string) ([]string, error) {
	out := make([]string, p.Rows())
	if len(cols) == 0 {
		for i := range out {
			out[i] = strconv.Itoa(i)
		}
		return out, nil
	}
	parts := make([][]string, len(cols))
	for j, c := range cols {
		v, err := p.Text(c)
		if err != nil {
			return nil, err
		}
		parts[j] = v
	}
	seen := make(map[string]int, len(out))
	var b strings.Builder
	for i := range out {
		b.Reset()
		for j := range cols {
			if j > 0 {
				b.WriteByte(0)
			}
			b.WriteString(parts[j][i])
		}
		k := b.String()
		if first, dup := seen[k]; dup {
			return nil, &InputError{What: p.What, Line: p.lines[i], Msg: fmt.Sprintf("key (%s) repeats line %d: the key columns must identify an example", strings.Join(cols, ", "), p.lines[first])}
		}
		seen[k] = i
		out[i] = k
	}
	return out, nil
}
