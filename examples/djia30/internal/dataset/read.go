package dataset

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ReadSchema reads <dir>/schema.json as written by Prepare.
func ReadSchema(dir string) (Schema, error) {
	var s Schema
	p := filepath.Join(dir, "schema.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return s, &InputError{File: p, Msg: err.Error()}
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, &InputError{File: p, Msg: "bad JSON: " + err.Error()}
	}
	if len(s.Features) == 0 {
		return s, &InputError{File: p, Msg: "no features"}
	}
	return s, nil
}

// Split is one split read back from its CSV: X is rows×F normalized features
// (row-major, F = len(Features)), LabelToday the label rule applied to each row's own day, Y the
// 0/1 labels.
type Split struct {
	Features []string
	X        []float64
	// LabelToday is each row's label rule applied to its own day (0 or 1).
	LabelToday []float64
	Y          []float64
	Dates      []string
	Tickers    []string
}

// Rows returns the number of rows.
func (s *Split) Rows() int { return len(s.Y) }

// ReadSplit reads <dir>/<name>.csv as written by Prepare. Bad rows fail with
// an *InputError naming the file and line.
func ReadSplit(dir, name string) (*Split, error) {
	p := filepath.Join(dir, name+".csv")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, &InputError{File: p, Msg: err.Error()}
	}
	lines := bytes.Split(b, []byte{'\n'})
	if len(lines) == 0 || len(bytes.TrimSpace(lines[0])) == 0 {
		return nil, &InputError{File: p, Msg: "empty file"}
	}
	header := strings.Split(strings.TrimSpace(string(lines[0])), ",")
	if len(header) < 4 || header[0] != "date" || header[1] != "ticker" || header[len(header)-1] != "label" || header[len(header)-2] != LabelTodayColumn {
		return nil, &InputError{File: p, Line: 1, Msg: "bad header: want date,ticker,<features...>," + LabelTodayColumn + ",label"}
	}
	nf := len(header) - 4
	s := &Split{Features: header[2 : 2+nf]}
	s.X = make([]float64, 0, nf*len(lines))
	for i, l := range lines[1:] {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		f := strings.Split(strings.TrimRight(string(l), "\r"), ",")
		if len(f) != len(header) {
			return nil, &InputError{File: p, Line: i + 2, Msg: fmt.Sprintf("got %d fields, want %d", len(f), len(header))}
		}
		s.Dates = append(s.Dates, f[0])
		s.Tickers = append(s.Tickers, f[1])
		for k := 0; k < nf+1; k++ {
			v, err := strconv.ParseFloat(f[2+k], 64)
			if err != nil {
				return nil, &InputError{File: p, Line: i + 2, Msg: fmt.Sprintf("bad %s %q", header[2+k], f[2+k])}
			}
			if k < nf {
				s.X = append(s.X, v)
			} else {
				s.LabelToday = append(s.LabelToday, v)
			}
		}
		switch f[len(f)-1] {
		case "0":
			s.Y = append(s.Y, 0)
		case "1":
			s.Y = append(s.Y, 1)
		default:
			return nil, &InputError{File: p, Line: i + 2, Msg: fmt.Sprintf("bad label %q: want 0 or 1", f[len(f)-1])}
		}
	}
	return s, nil
}
