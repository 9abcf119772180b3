package dataset

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/branchml/djia30/internal/datadir"
)

func tickerDir(t testing.TB) string {
	t.Helper()
	d, ok := datadir.TickerDir()
	if !ok {
		t.Skip(datadir.SkipMessage)
	}
	return d
}

// realRows loads the real per-ticker data once per test binary.
var realRowsCache []Row

func realRows(t testing.TB) []Row {
	t.Helper()
	d := tickerDir(t)
	if realRowsCache == nil {
		rows, err := Load(d)
		if err != nil {
			t.Fatal(err)
		}
		realRowsCache = rows
	}
	return append([]Row(nil), realRowsCache...)
}

func TestPrepareRealDataExactCounts(t *testing.T) {
	out := t.TempDir()
	res, err := PrepareRows(Options{Input: "real", Output: out}, realRows(t))
	if err != nil {
		t.Fatal(err)
	}
	st := res.Stats
	want := map[string]int{"train": 76500, "validation": 7812, "test": 7750, "total": 92062}
	for k, v := range want {
		if st.Rows[k] != v {
			t.Errorf("rows[%s] = %d, want %d", k, st.Rows[k], v)
		}
	}
	wantClean := CleaningStats{InputRows: 93612, OpenFilledFromClose: 25, HighFilledFromClose: 10, LowFilledFromClose: 21,
		RowsWithFilledPrices: 26, ZeroPricesAsMissing: 1, ZeroVolumeFlagged: 1, CleanRows: 93612}
	if st.Cleaning != wantClean {
		t.Errorf("cleaning = %+v, want %+v", st.Cleaning, wantClean)
	}
	// 31 tickers × 49 warm-up days; one unlabeled last day per ticker
	if st.Dropped["warmup"] != 31*49 || st.Dropped["no_label"] != 31 {
		t.Errorf("dropped = %v", st.Dropped)
	}
	if len(st.Tickers) != 31 {
		t.Errorf("%d tickers, want 31", len(st.Tickers))
	}
	if got := st.Tickers["AAPL"]; got != (TickerStats{CleanRows: 3019, Train: 2467, Validation: 252, Test: 250}) {
		t.Errorf("AAPL = %+v", got)
	}
	if got := st.DateRange["train"]; got != [2]string{"2006-03-15", "2015-12-31"} {
		t.Errorf("train range %v", got)
	}
	if got := st.DateRange["test"]; got != [2]string{"2017-01-03", "2017-12-28"} {
		t.Errorf("test range %v", got)
	}
	// files: header + rows, no temp files left behind
	ents, _ := os.ReadDir(out)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "schema.json,stats.json,test.csv,train.csv,validation.csv" {
		t.Errorf("output files %v", names)
	}
	for sp, n := range map[string]int{"train": 76500, "validation": 7812, "test": 7750} {
		s, err := ReadSplit(out, sp)
		if err != nil {
			t.Fatal(err)
		}
		if s.Rows() != n || len(s.X) != n*NumFeatures {
			t.Errorf("%s.csv: %d rows", sp, s.Rows())
		}
	}
	// normalization fitted on train: the train split has mean 0 and std 1 per feature
	tr, _ := ReadSplit(out, "train")
	for k := 0; k < NumFeatures; k++ {
		var m, q float64
		for i := 0; i < tr.Rows(); i++ {
			m += tr.X[i*NumFeatures+k]
		}
		m /= float64(tr.Rows())
		for i := 0; i < tr.Rows(); i++ {
			d := tr.X[i*NumFeatures+k] - m
			q += d * d
		}
		if math.Abs(m) > 1e-9 || math.Abs(math.Sqrt(q/float64(tr.Rows()))-1) > 1e-9 {
			t.Errorf("feature %s on train: mean %g std %g", FeatureNames[k], m, math.Sqrt(q/float64(tr.Rows())))
		}
	}
	sc, err := ReadSchema(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Features) != NumFeatures || sc.Features[5].Name != "rsi_14" || sc.Features[5].Std <= 0 {
		t.Errorf("schema features %+v", sc.Features)
	}
}

// csvLines returns the data lines of a real per-ticker file, split in fields.
func csvLines(t *testing.T, ticker string) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tickerDir(t), ticker+"_2006-01-01_to_2018-01-01.csv"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		out = append(out, strings.Split(l, ","))
	}
	return out
}

func rawExample(t *testing.T, ticker, date string) Example {
	t.Helper()
	rows, err := Load(filepath.Join(tickerDir(t), ticker+"_2006-01-01_to_2018-01-01.csv"))
	if err != nil {
		t.Fatal(err)
	}
	series, _ := Clean(rows)
	for _, e := range Features(series[0]) {
		if e.Date == date {
			return e
		}
	}
	t.Fatalf("%s %s not found", ticker, date)
	return Example{}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

func TestHandComputedFeaturesKO20100601(t *testing.T) {
	// KO_2006-01-01_to_2018-01-01.csv lines 1101..1112 (closes):
	// 2010-05-17 26.7, 05-18 26.55, 05-19 26.56, 05-20 25.77, 05-21 25.8,
	// 05-24 25.73, 05-25 25.31, 05-26 25.04, 05-27 25.62, 05-28 25.7,
	// 2010-06-01 25.56,26.06,25.36,25.64 (O,H,L,C), 2010-06-02 close 26.2
	e := rawExample(t, "KO", "2010-06-01")
	ma10 := (26.55 + 26.56 + 25.77 + 25.8 + 25.73 + 25.31 + 25.04 + 25.62 + 25.7 + 25.64) / 10
	want := map[string]float64{
		"ret_1":    25.64/25.70 - 1,
		"ret_5":    25.64/25.73 - 1,
		"ret_10":   25.64/26.7 - 1,
		"ma10_gap": 25.64/ma10 - 1,
		"range":    (26.06 - 25.36) / 25.64,
	}
	for i, name := range FeatureNames {
		if w, ok := want[name]; ok && !near(e.Features[i], w) {
			t.Errorf("%s = %.15g, want %.15g", name, e.Features[i], w)
		}
	}
	if !e.HasLabel {
		t.Errorf("2010-06-01 has no label")
	}

	// the window features, recomputed here from the CSV lines directly
	lines := csvLines(t, "KO")
	d := -1
	var c, v []float64
	for i, f := range lines {
		cl, _ := strconv.ParseFloat(f[4], 64)
		vo, _ := strconv.ParseFloat(f[5], 64)
		c, v = append(c, cl), append(v, vo)
		if f[0] == "2010-06-01" {
			d = i
		}
	}
	var rs []float64
	for j := d - 19; j <= d; j++ {
		rs = append(rs, c[j]/c[j-1]-1)
	}
	sd := func(xs []float64) (float64, float64) {
		m := 0.0
		for _, x := range xs {
			m += x
		}
		m /= float64(len(xs))
		q := 0.0
		for _, x := range xs {
			q += (x - m) * (x - m)
		}
		return m, math.Sqrt(q / float64(len(xs)))
	}
	_, vol := sd(rs)
	vm, vs := sd(v[d-19 : d+1])
	var ma50 float64
	for j := d - 49; j <= d; j++ {
		ma50 += c[j]
	}
	ma50 /= 50
	// Wilder RSI(14) over the whole history up to d
	var g, l float64
	for j := 1; j <= 14; j++ {
		ch := c[j] - c[j-1]
		if ch > 0 {
			g += ch
		} else {
			l -= ch
		}
	}
	g, l = g/14, l/14
	for j := 15; j <= d; j++ {
		ch := c[j] - c[j-1]
		up, down := 0.0, 0.0
		if ch > 0 {
			up = ch
		} else {
			down = -ch
		}
		g, l = (g*13+up)/14, (l*13+down)/14
	}
	rsi := 100 - 100/(1+g/l)
	want2 := map[string]float64{"vol_20": vol, "volume_z20": (v[d] - vm) / vs, "ma50_gap": c[d]/ma50 - 1, "rsi_14": rsi, "ret_20": c[d]/c[d-20] - 1}
	for i, name := range FeatureNames {
		if w, ok := want2[name]; ok && math.Abs(e.Features[i]-w) > 1e-9*math.Max(1, math.Abs(w)) {
			t.Errorf("%s = %.15g, want %.15g", name, e.Features[i], w)
		}
	}
	if rsi < 0 || rsi > 100 {
		t.Errorf("rsi %g out of range", rsi)
	}
	// Label: tomorrow's |return| (26.2/25.64 - 1 = 2.18 %) against vol_20;
	// label_today: today's |return| (25.64/25.70 - 1) against vol_20 of the
	// day before (the 20 returns ending 2010-05-28).
	var prev []float64
	for j := d - 20; j <= d-1; j++ {
		prev = append(prev, c[j]/c[j-1]-1)
	}
	_, volPrev := sd(prev)
	wantLabel, wantToday := 0, 0
	if math.Abs(26.2/25.64-1) > vol {
		wantLabel = 1
	}
	if math.Abs(25.64/25.70-1) > volPrev {
		wantToday = 1
	}
	if e.Label != wantLabel || e.LabelToday != wantToday {
		t.Errorf("label %d label_today %d, want %d and %d (vol_20 %.5f, the day before %.5f)", e.Label, e.LabelToday, wantLabel, wantToday, vol, volPrev)
	}
	t.Logf("KO 2010-06-01: vol_20 %.5f, label %d; the day before %.5f, label_today %d", vol, e.Label, volPrev, e.LabelToday)
}

func TestCleaningRealGapRows(t *testing.T) {
	rows := realRows(t)
	series, _ := Clean(rows)
	find := func(ticker, date string) (s *Series, i int) {
		for _, s := range series {
			if s.Ticker != ticker {
				continue
			}
			for i, d := range s.Date {
				if d == date {
					return s, i
				}
			}
		}
		t.Fatalf("%s %s missing after cleaning", ticker, date)
		return nil, 0
	}
	// DIS 2012-08-01: ",,,,49.14,0" → O=H=L=Close, volume 0 kept and flagged
	s, i := find("DIS", "2012-08-01")
	if s.Open[i] != 49.14 || s.High[i] != 49.14 || s.Low[i] != 49.14 || s.Volume[i] != 0 || !s.ZeroVolume[i] {
		t.Errorf("DIS 2012-08-01 = %v %v %v %v %v", s.Open[i], s.High[i], s.Low[i], s.Volume[i], s.ZeroVolume[i])
	}
	// HD 2009-04-17: Low 0.0 → treated as missing, filled from close 26.1
	s, i = find("HD", "2009-04-17")
	if s.Low[i] != 26.1 || s.High[i] != 26.47 || s.Open[i] != 26.16 {
		t.Errorf("HD 2009-04-17 = %v %v %v", s.Open[i], s.High[i], s.Low[i])
	}
	// AXP 2017-07-31: ",,85.7,,85.23" → Open and Low from close
	s, i = find("AXP", "2017-07-31")
	if s.Open[i] != 85.23 || s.High[i] != 85.7 || s.Low[i] != 85.23 {
		t.Errorf("AXP 2017-07-31 = %v %v %v", s.Open[i], s.High[i], s.Low[i])
	}
	// feature row of the gap day: range 0 for DIS
	for _, e := range Features(mustSeries(t, series, "DIS")) {
		if e.Date == "2012-08-01" && e.Features[9] != 0 {
			t.Errorf("DIS 2012-08-01 range = %g, want 0", e.Features[9])
		}
	}
}

func mustSeries(t *testing.T, ss []*Series, ticker string) *Series {
	for _, s := range ss {
		if s.Ticker == ticker {
			return s
		}
	}
	t.Fatalf("no %s", ticker)
	return nil
}

func TestCleanDuplicatesAndMissingClose(t *testing.T) {
	data := "Date,Open,High,Low,Close,Volume,Name\n" +
		"2010-01-05,1,2,1,1.5,100,X\n" +
		"2010-01-04,1,2,1,1.4,100,X\n" +
		"2010-01-05,9,9,9,9,9,X\n" + // duplicate date: first occurrence wins
		"2010-01-06,1,2,1,,100,X\n" // no close: dropped
	rows, err := ParseFile("t.csv", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	ss, st := Clean(rows)
	if st.DuplicateDatesDropped != 1 || st.MissingCloseDropped != 1 || st.CleanRows != 2 {
		t.Errorf("stats %+v", st)
	}
	if got := ss[0].Close; len(got) != 2 || got[0] != 1.4 || got[1] != 1.5 {
		t.Errorf("closes %v", got)
	}
}

func TestNoLeakage(t *testing.T) {
	const cut = "2012-06-29"
	all := realRows(t)
	var trunc []Row
	for _, r := range all {
		if r.Date <= cut {
			trunc = append(trunc, r)
		}
	}
	full, _ := Clean(all)
	part, _ := Clean(trunc)
	compared := 0
	for k := range part {
		fe := Features(full[k])
		pe := Features(part[k])
		for i, e := range pe {
			if fe[i].Date != e.Date || fe[i].Features != e.Features {
				t.Fatalf("%s %s: features differ after truncation", e.Ticker, e.Date)
			}
			if fe[i].LabelToday != e.LabelToday {
				t.Fatalf("%s %s: label_today differs after truncation", e.Ticker, e.Date)
			}
			if e.HasLabel && fe[i].Label != e.Label {
				t.Fatalf("%s %s: label differs", e.Ticker, e.Date)
			}
			compared++
		}
		if last := pe[len(pe)-1]; last.Date != cut || last.HasLabel {
			t.Errorf("%s: last truncated row %s has label %v", last.Ticker, last.Date, last.HasLabel)
		}
	}
	if compared < 30000 {
		t.Errorf("compared only %d rows", compared)
	}
}

func TestMerged2017File(t *testing.T) {
	p, ok := datadir.Merged2017()
	if !ok {
		t.Skip(datadir.SkipMessage)
	}
	res, err := Prepare(Options{Input: p, TrainEnd: "2017-06-30", ValidationEnd: "2017-09-29"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stats.Cleaning.InputRows != 7781 || len(res.Stats.Tickers) != 31 {
		t.Errorf("input rows %d tickers %d", res.Stats.Cleaning.InputRows, len(res.Stats.Tickers))
	}
	// default split: 2017 has no training rows → input error
	if _, err := Prepare(Options{Input: p}); !IsInputError(err) {
		t.Errorf("default split on 2017 data: %v", err)
	}
}

func TestTickersFilter(t *testing.T) {
	res, err := PrepareRows(Options{Input: "real", Tickers: []string{"AAPL", "KO"}}, realRows(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Stats.Rows["train"] != 2467+2468 || len(res.Stats.Tickers) != 2 {
		t.Errorf("rows %v", res.Stats.Rows)
	}
	_, err = PrepareRows(Options{Input: "in", Tickers: []string{"AAPL", "TSLA"}}, realRows(t))
	if err == nil || !IsInputError(err) || !strings.Contains(err.Error(), `unknown ticker "TSLA"`) || !strings.HasPrefix(err.Error(), "in: ") {
		t.Errorf("unknown ticker error = %v", err)
	}
}

func TestMalformedInputsNamedByFileAndLine(t *testing.T) {
	const hdr = "Date,Open,High,Low,Close,Volume,Name\n"
	cases := []struct{ name, data, want string }{
		{"bad_number.csv", hdr + "2010-01-04,1,2,1,1.5,100,X\n2010-01-05,1,abc,1,1.5,100,X\n", "bad_number.csv:3: bad High \"abc\""},
		{"missing_col.csv", "Date,Open,High,Low,Volume,Name\n2010-01-04,1,2,1,100,X\n", "missing_col.csv:1: missing column(s) Close"},
		{"empty.csv", "", "empty.csv: empty file"},
		{"header_only.csv", hdr, "header_only.csv:1: no data rows"},
		{"fields.csv", hdr + "2010-01-04,1,2,1,1.5,100\n", "fields.csv:2: got 6 fields, want 7"},
		{"date.csv", hdr + "2010-01-04,1,2,1,1.5,100,X\n\n2010-13-04,1,2,1,1.5,100,X\n", "date.csv:4: bad Date \"2010-13-04\""},
		{"neg.csv", hdr + "2010-01-04,1,2,1,-1.5,100,X\n", "neg.csv:2: bad Close \"-1.5\""},
		{"name.csv", hdr + "2010-01-04,1,2,1,1.5,100,\n", "name.csv:2: empty Name"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		p := filepath.Join(dir, c.name)
		if err := os.WriteFile(p, []byte(c.data), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Prepare(Options{Input: p})
		if err == nil || !IsInputError(err) || !strings.HasPrefix(err.Error(), filepath.Join(dir, c.want)) {
			t.Errorf("%s: err = %v, want prefix %s", c.name, err, filepath.Join(dir, c.want))
		}
	}
	if _, err := Prepare(Options{Input: filepath.Join(dir, "nope")}); !IsInputError(err) {
		t.Errorf("missing input: %v", err)
	}
}

func TestParseDate(t *testing.T) {
	for s, want := range map[string]int32{"1970-01-01": 0, "2006-01-03": 13151, "2016-02-29": 16860} {
		if got, err := parseDate(s); err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"2015-02-29", "2006-1-03", "abcd-01-01", "2006-01-32"} {
		if _, err := parseDate(s); err == nil {
			t.Errorf("%s: no error", s)
		}
	}
}

func TestStatsJSONShape(t *testing.T) {
	out := t.TempDir()
	if _, err := PrepareRows(Options{Input: "x", Output: out, Tickers: []string{"KO"}}, realRows(t)); err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	b, _ := os.ReadFile(filepath.Join(out, "stats.json"))
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rows", "tickers", "cleaning", "dropped", "date_range", "positives"} {
		if _, ok := m[k]; !ok {
			t.Errorf("stats.json lacks %q", k)
		}
	}
}

func FuzzParseRow(f *testing.F) {
	f.Add("2006-01-03,10.34,10.68,10.32,10.68,201853036,AAPL")
	f.Add("2012-08-01,,,,49.14,0,DIS")
	f.Add("2009-04-17,26.16,26.47,0.0,26.1,21671267,HD")
	f.Add("2010-02-30,1,1,1,1,1,X")
	f.Add(",,,,,,")
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseRow(DefaultHeader, line)
		if err != nil {
			return
		}
		if r.Name == "" || len(r.Date) != 10 {
			t.Fatalf("accepted row without name/date: %q", line)
		}
		for _, v := range []float64{r.Open, r.High, r.Low, r.Close} {
			if !math.IsNaN(v) && (v <= 0 || math.IsInf(v, 0)) {
				t.Fatalf("accepted bad price %v in %q", v, line)
			}
		}
		if r.HasClose == math.IsNaN(r.Close) || r.Volume < 0 {
			t.Fatalf("inconsistent row %+v", r)
		}
	})
}

func BenchmarkPrepare(b *testing.B) {
	d := tickerDir(b)
	out := b.TempDir()
	for b.Loop() {
		if _, err := Prepare(Options{Input: d, Output: out}); err != nil {
			b.Fatal(err)
		}
	}
}
