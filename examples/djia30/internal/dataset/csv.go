// Package dataset turns the Kaggle "DJIA 30 Stock Time Series" CSVs into the
// example's training data: it reads and validates the CSVs, cleans them,
// computes past-only technical features and a next-day direction label, splits
// chronologically, fits a z-score normalization on the training split and writes
// train.csv, validation.csv, test.csv, schema.json and stats.json.
//
// Input format (Kaggle archive layout, dataset szrlee/stock-time-series-20050101-to-20171231):
// a header line with the columns Date,Open,High,Low,Close,Volume,Name (any
// order, extra columns ignored), then one row per ticker and trading day; Date
// is YYYY-MM-DD, prices are in US dollars, Volume is a share count, Name is the
// ticker. Open, High, Low and Volume may be empty.
package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// InputError is a problem with the input data (bad row, missing column, empty
// file, unknown ticker). File is the path of the offending file ("" when the
// problem is not tied to a file) and Line its 1-based line number (0 when not
// tied to a line). Commands map it to exit code 2.
type InputError struct {
	File string
	Line int
	Msg  string
}

// Error returns "file:line: msg" (or "file: msg" when Line is 0).
func (e *InputError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	default:
		return e.Msg
	}
}

// IsInputError reports whether err is (or wraps) an *InputError.
func IsInputError(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}

// Columns are the required CSV columns, in the Kaggle files' order.
var Columns = []string{"Date", "Open", "High", "Low", "Close", "Volume", "Name"}

// Header maps each required column to its 0-based index in a CSV line.
type Header struct {
	idx    [7]int // Date, Open, High, Low, Close, Volume, Name
	fields int
}

// ParseHeader parses a header line. It fails when a required column is missing
// or duplicated; the error message names the column.
func ParseHeader(line string) (Header, error) {
	var h Header
	for i := range h.idx {
		h.idx[i] = -1
	}
	fields := strings.Split(strings.TrimRight(line, "\r"), ",")
	h.fields = len(fields)
	for i, f := range fields {
		f = strings.TrimSpace(strings.TrimPrefix(f, "\ufeff"))
		for j, c := range Columns {
			if strings.EqualFold(f, c) {
				if h.idx[j] >= 0 {
					return h, fmt.Errorf("duplicate column %q", c)
				}
				h.idx[j] = i
			}
		}
	}
	var missing []string
	for j, c := range Columns {
		if h.idx[j] < 0 {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return h, fmt.Errorf("missing column(s) %s (want header %s)", strings.Join(missing, ","), strings.Join(Columns, ","))
	}
	return h, nil
}

// DefaultHeader is the header of the Kaggle files: Date,Open,High,Low,Close,Volume,Name.
var DefaultHeader = Header{idx: [7]int{0, 1, 2, 3, 4, 5, 6}, fields: 7}

// Row is one parsed CSV row. Prices are US dollars; an empty Open, High or Low
// is NaN (filled later by Clean), and so is a price of 0; Close is NaN only
// when the field was empty or 0 (HasClose false). Volume is a share count (empty = 0).
type Row struct {
	Date     string // YYYY-MM-DD
	Day      int32  // days since 1970-01-01, for ordering
	Open     float64
	High     float64
	Low      float64
	Close    float64
	Volume   float64
	Name     string
	HasClose bool
	// ZeroPrices counts Open/High/Low/Close fields that were 0 (a data
	// error in the source, e.g. HD 2009-04-17 Low 0.0); they are treated as
	// empty.
	ZeroPrices int
}

// ParseRow parses one data line according to h. Errors describe the field
// (the caller adds file and line). Quoted fields are not supported (the Kaggle
// files have none).
func ParseRow(h Header, line string) (Row, error) {
	var r Row
	line = strings.TrimRight(line, "\r")
	var fields [16]string
	n := 0
	for {
		i := strings.IndexByte(line, ',')
		if n >= len(fields) {
			return r, fmt.Errorf("too many fields (want %d)", h.fields)
		}
		if i < 0 {
			fields[n] = line
			n++
			break
		}
		fields[n] = line[:i]
		n++
		line = line[i+1:]
	}
	if n != h.fields {
		return r, fmt.Errorf("got %d fields, want %d", n, h.fields)
	}
	date := fields[h.idx[0]]
	day, err := parseDate(date)
	if err != nil {
		return r, err
	}
	r.Date, r.Day = date, day
	r.Name = strings.TrimSpace(fields[h.idx[6]])
	if r.Name == "" {
		return r, errors.New("empty Name (ticker)")
	}
	for k, dst := range []*float64{&r.Open, &r.High, &r.Low, &r.Close} {
		s := fields[h.idx[1+k]]
		if s == "" {
			*dst = math.NaN()
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return r, fmt.Errorf("bad %s %q: want a non-negative number", Columns[1+k], s)
		}
		if v == 0 {
			r.ZeroPrices++
			v = math.NaN()
		}
		*dst = v
	}
	r.HasClose = !math.IsNaN(r.Close)
	if s := fields[h.idx[5]]; s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return r, fmt.Errorf("bad Volume %q: want a non-negative number", s)
		}
		r.Volume = v
	}
	return r, nil
}

// parseDate parses YYYY-MM-DD into days since 1970-01-01.
func parseDate(s string) (int32, error) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return 0, fmt.Errorf("bad Date %q: want YYYY-MM-DD", s)
	}
	num := func(b string) int {
		v := 0
		for i := 0; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	y, m, d := num(s[:4]), num(s[5:7]), num(s[8:])
	if y < 1900 || m < 1 || m > 12 || d < 1 || d > daysIn(y, m) {
		return 0, fmt.Errorf("bad Date %q: want YYYY-MM-DD", s)
	}
	// days from civil (Howard Hinnant's algorithm)
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int32(era*146097 + doe - 719468), nil
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// ParseFile parses the bytes of one CSV file (header + rows). name is used in
// error messages. It fails with an *InputError naming name and the line on an
// empty file, a missing column or a bad row. Blank lines are skipped.
func ParseFile(name string, data []byte) ([]Row, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &InputError{File: name, Msg: "empty file (want a header " + strings.Join(Columns, ",") + ")"}
	}
	lineNo := 0
	next := func() (string, bool) {
		if len(data) == 0 {
			return "", false
		}
		i := bytes.IndexByte(data, '\n')
		var l []byte
		if i < 0 {
			l, data = data, nil
		} else {
			l, data = data[:i], data[i+1:]
		}
		lineNo++
		return string(l), true
	}
	hl, _ := next()
	h, err := ParseHeader(hl)
	if err != nil {
		return nil, &InputError{File: name, Line: 1, Msg: err.Error()}
	}
	rows := make([]Row, 0, bytes.Count(data, []byte{'\n'})+1)
	for {
		l, ok := next()
		if !ok {
			break
		}
		if strings.TrimSpace(l) == "" {
			continue
		}
		r, err := ParseRow(h, l)
		if err != nil {
			return nil, &InputError{File: name, Line: lineNo, Msg: err.Error()}
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, &InputError{File: name, Line: lineNo, Msg: "no data rows"}
	}
	return rows, nil
}
