package dataset

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Split names, in order.
const (
	SplitTrain      = "train"
	SplitValidation = "validation"
	SplitTest       = "test"
)

// Splits are the split names in output order.
var Splits = []string{SplitTrain, SplitValidation, SplitTest}

// Options configures Prepare.
type Options struct {
	// Input is a folder of per-ticker CSVs or one merged CSV (see Load).
	Input string
	// Output is the folder that receives train.csv, validation.csv, test.csv,
	// schema.json and stats.json; it is created if needed.
	Output string
	// TrainEnd is the last date (YYYY-MM-DD, inclusive) of the training split;
	// default "2015-12-31".
	TrainEnd string
	// ValidationEnd is the last date (inclusive) of the validation split;
	// later rows are the test split; default "2016-12-31".
	ValidationEnd string
	// Tickers, when non-empty, keeps only these tickers; naming a ticker that
	// is not in the data is an *InputError.
	Tickers []string
}

// Stats is the content of stats.json.
type Stats struct {
	Rows      map[string]int         `json:"rows"` // per split, plus "total"
	Tickers   map[string]TickerStats `json:"tickers"`
	Cleaning  CleaningStats          `json:"cleaning"`
	Dropped   map[string]int         `json:"dropped"`    // "warmup" (too little history), "no_label" (last day)
	DateRange map[string][2]string   `json:"date_range"` // per split: first and last date
	Positives map[string]int         `json:"positives"`  // rows with label 1 per split
	Input     string                 `json:"input"`
}

// TickerStats counts one ticker's rows: clean input rows and rows per split.
type TickerStats struct {
	CleanRows  int `json:"clean_rows"`
	Train      int `json:"train"`
	Validation int `json:"validation"`
	Test       int `json:"test"`
}

// Schema is the content of schema.json: the columns of the split CSVs and the
// normalization fitted on the training split.
type Schema struct {
	Format        string          `json:"format"`         // "branchml.djia30.dataset"
	FormatVersion int             `json:"format_version"` // 1
	Columns       []Column        `json:"columns"`        // CSV columns in order
	Features      []FeatureSchema `json:"features"`       // model inputs in order
	Label         string          `json:"label"`          // "label"
	LabelRule     string          `json:"label_rule"`
	Normalization string          `json:"normalization"` // "zscore: (x-mean)/std, fitted on train"
	TrainEnd      string          `json:"train_end"`
	ValidationEnd string          `json:"validation_end"`
}

// Column is one CSV column: name and dtype ("string", "float64" or "int64").
type Column struct {
	Name  string `json:"name"`
	Dtype string `json:"dtype"`
}

// FeatureSchema is one model input: its position, dtype and the z-score
// parameters fitted on train (std is 1 when the train std is 0).
type FeatureSchema struct {
	Name  string  `json:"name"`
	Index int     `json:"index"`
	Dtype string  `json:"dtype"`
	Mean  float64 `json:"mean"`
	Std   float64 `json:"std"`
}

// LabelTodayColumn is the extra CSV column holding the label rule applied
// to the row's own day (used by the same_as_today baseline; not a model
// input).
const LabelTodayColumn = "label_today"

// Result is what Prepare produced, in memory.
type Result struct {
	Splits map[string][]Example // normalized features, sorted by (date, ticker)
	Schema Schema
	Stats  Stats
}

// Prepare runs the whole data step: Load, Clean, Features, chronological
// split, normalization fitted on train, and (when opts.Output is set) writes
// the five output files atomically. Data problems are *InputError values.
func Prepare(opts Options) (*Result, error) {
	if _, err := checkOptions(opts); err != nil {
		return nil, err
	}
	rows, err := Load(opts.Input)
	if err != nil {
		return nil, err
	}
	return PrepareRows(opts, rows)
}

// PrepareRows is Prepare on rows already loaded (see Load).
func PrepareRows(opts Options, rows []Row) (*Result, error) {
	opts, err := checkOptions(opts)
	if err != nil {
		return nil, err
	}
	if len(opts.Tickers) > 0 {
		have := map[string]bool{}
		for _, r := range rows {
			have[r.Name] = true
		}
		want := map[string]bool{}
		for _, t := range opts.Tickers {
			if !have[t] {
				known := make([]string, 0, len(have))
				for k := range have {
					known = append(known, k)
				}
				sort.Strings(known)
				return nil, &InputError{File: opts.Input, Msg: fmt.Sprintf("unknown ticker %q (the data has %s)", t, strings.Join(known, ","))}
			}
			want[t] = true
		}
		kept := rows[:0:0]
		for _, r := range rows {
			if want[r.Name] {
				kept = append(kept, r)
			}
		}
		rows = kept
	}
	return prepare(opts, rows)
}

// checkOptions fills defaults and validates the split dates.
func checkOptions(opts Options) (Options, error) {
	if opts.TrainEnd == "" {
		opts.TrainEnd = "2015-12-31"
	}
	if opts.ValidationEnd == "" {
		opts.ValidationEnd = "2016-12-31"
	}
	for _, d := range []string{opts.TrainEnd, opts.ValidationEnd} {
		if _, err := parseDate(d); err != nil {
			return opts, &InputError{Msg: "split date: " + err.Error()}
		}
	}
	if opts.ValidationEnd < opts.TrainEnd {
		return opts, &InputError{Msg: fmt.Sprintf("validation end %s is before train end %s", opts.ValidationEnd, opts.TrainEnd)}
	}
	return opts, nil
}

func prepare(opts Options, rows []Row) (*Result, error) {
	series, cst := Clean(rows)
	res := &Result{Splits: map[string][]Example{}}
	st := Stats{
		Rows: map[string]int{}, Tickers: map[string]TickerStats{}, Cleaning: cst,
		Dropped: map[string]int{}, DateRange: map[string][2]string{}, Positives: map[string]int{},
		Input: opts.Input,
	}
	for _, s := range series {
		ts := TickerStats{CleanRows: s.Len()}
		ex := Features(s)
		st.Dropped["warmup"] += s.Len() - len(ex)
		for _, e := range ex {
			if !e.HasLabel {
				st.Dropped["no_label"]++
				continue
			}
			sp := SplitTest
			switch {
			case e.Date <= opts.TrainEnd:
				sp = SplitTrain
				ts.Train++
			case e.Date <= opts.ValidationEnd:
				sp = SplitValidation
				ts.Validation++
			default:
				ts.Test++
			}
			res.Splits[sp] = append(res.Splits[sp], e)
		}
		st.Tickers[s.Ticker] = ts
	}
	if len(res.Splits[SplitTrain]) == 0 {
		return nil, &InputError{File: opts.Input, Msg: "no training rows (need more than 50 trading days per ticker up to --train-end " + opts.TrainEnd + ")"}
	}
	for _, sp := range Splits {
		ex := res.Splits[sp]
		sort.Slice(ex, func(i, j int) bool {
			if ex[i].Date != ex[j].Date {
				return ex[i].Date < ex[j].Date
			}
			return ex[i].Ticker < ex[j].Ticker
		})
		st.Rows[sp] = len(ex)
		st.Rows["total"] += len(ex)
		for _, e := range ex {
			st.Positives[sp] += e.Label
		}
		if len(ex) > 0 {
			st.DateRange[sp] = [2]string{ex[0].Date, ex[len(ex)-1].Date}
		}
	}
	mean, std := fitNormalization(res.Splits[SplitTrain])
	for _, sp := range Splits {
		ex := res.Splits[sp]
		for i := range ex {
			for k := range ex[i].Features {
				ex[i].Features[k] = (ex[i].Features[k] - mean[k]) / std[k]
			}
		}
	}
	res.Schema = makeSchema(mean, std, opts)
	res.Stats = st
	if opts.Output != "" {
		if err := res.Write(opts.Output); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func fitNormalization(train []Example) (mean, std [NumFeatures]float64) {
	n := float64(len(train))
	for _, e := range train {
		for k, v := range e.Features {
			mean[k] += v
		}
	}
	for k := range mean {
		mean[k] /= n
	}
	for _, e := range train {
		for k, v := range e.Features {
			d := v - mean[k]
			std[k] += d * d
		}
	}
	for k := range std {
		std[k] = math.Sqrt(std[k] / n)
		if std[k] == 0 {
			std[k] = 1
		}
	}
	return mean, std
}

func makeSchema(mean, std [NumFeatures]float64, opts Options) Schema {
	s := Schema{
		Format: "branchml.djia30.dataset", FormatVersion: 1,
		Label:         "label",
		LabelRule:     LabelRule,
		Normalization: "zscore: (x-mean)/std per feature, population std fitted on the train split; applied to all splits",
		TrainEnd:      opts.TrainEnd, ValidationEnd: opts.ValidationEnd,
	}
	s.Columns = append(s.Columns, Column{"date", "string"}, Column{"ticker", "string"})
	for i, f := range FeatureNames {
		s.Columns = append(s.Columns, Column{f, "float64"})
		s.Features = append(s.Features, FeatureSchema{Name: f, Index: i, Dtype: "float64", Mean: mean[i], Std: std[i]})
	}
	s.Columns = append(s.Columns, Column{LabelTodayColumn, "int64"}, Column{"label", "int64"})
	return s
}

// Write writes train.csv, validation.csv, test.csv, schema.json and
// stats.json into dir (created if missing), each atomically (temp file in dir,
// then rename). CSV floats use the shortest representation that round-trips.
func (r *Result) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	header := make([]string, 0, len(r.Schema.Columns))
	for _, c := range r.Schema.Columns {
		header = append(header, c.Name)
	}
	for _, sp := range Splits {
		ex := r.Splits[sp]
		buf := bytes.NewBuffer(make([]byte, 0, 200*len(ex)+100))
		buf.WriteString(strings.Join(header, ","))
		buf.WriteByte('\n')
		b := make([]byte, 0, 256)
		for i := range ex {
			b = appendExample(b[:0], &ex[i])
			buf.Write(b)
		}
		if err := WriteFileAtomic(filepath.Join(dir, sp+".csv"), buf.Bytes()); err != nil {
			return err
		}
	}
	for name, v := range map[string]any{"schema.json": r.Schema, "stats.json": r.Stats} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := WriteFileAtomic(filepath.Join(dir, name), append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

func appendExample(b []byte, e *Example) []byte {
	b = append(b, e.Date...)
	b = append(b, ',')
	b = append(b, e.Ticker...)
	for _, v := range e.Features {
		b = append(b, ',')
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(e.LabelToday), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(e.Label), 10)
	return append(b, '\n')
}

// WriteFileAtomic writes data to path through a temp file in the same folder
// and a rename, so readers see either the old or the new content.
func WriteFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
