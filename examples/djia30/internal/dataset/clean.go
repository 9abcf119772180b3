package dataset

import (
	"math"
	"sort"
)

// CleaningStats counts what Clean changed. All counts are rows.
type CleaningStats struct {
	InputRows             int `json:"input_rows"`
	DuplicateDatesDropped int `json:"duplicate_dates_dropped"`
	MissingCloseDropped   int `json:"missing_close_dropped"`
	OpenFilledFromClose   int `json:"open_filled_from_close"`
	HighFilledFromClose   int `json:"high_filled_from_close"`
	LowFilledFromClose    int `json:"low_filled_from_close"`
	RowsWithFilledPrices  int `json:"rows_with_filled_prices"`
	ZeroPricesAsMissing   int `json:"zero_prices_as_missing"`
	ZeroVolumeFlagged     int `json:"zero_volume_flagged"`
	CleanRows             int `json:"clean_rows"`
}

// Series is the cleaned daily history of one ticker, sorted by date, one entry
// per trading day present in the data (missing days are not invented).
// ZeroVolume[i] flags a day whose Volume was 0 or empty (kept as 0).
type Series struct {
	Ticker     string
	Date       []string
	Open       []float64
	High       []float64
	Low        []float64
	Close      []float64
	Volume     []float64
	ZeroVolume []bool
}

// Len returns the number of trading days in s.
func (s *Series) Len() int { return len(s.Date) }

// Clean applies the cleaning rule and groups rows by ticker. The rule, per
// ticker: sort by date (stable, so the first occurrence in file order wins);
// drop rows whose date repeats an earlier row; treat a price of 0 as empty; drop rows with an empty Close;
// fill an empty Open, High or Low from the same day's Close; keep a zero or
// empty Volume as 0 and flag it (the volume z-score uses it as is); never invent
// missing trading days. It returns the series sorted by ticker and the counts.
func Clean(rows []Row) ([]*Series, CleaningStats) {
	st := CleaningStats{InputRows: len(rows)}
	byTicker := map[string][]Row{}
	for _, r := range rows {
		byTicker[r.Name] = append(byTicker[r.Name], r)
	}
	tickers := make([]string, 0, len(byTicker))
	for t := range byTicker {
		tickers = append(tickers, t)
	}
	sort.Strings(tickers)
	out := make([]*Series, 0, len(tickers))
	for _, t := range tickers {
		rs := byTicker[t]
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Day < rs[j].Day })
		s := &Series{Ticker: t}
		var last int32 = -1 << 30
		for _, r := range rs {
			st.ZeroPricesAsMissing += r.ZeroPrices
			if r.Day == last {
				st.DuplicateDatesDropped++
				continue
			}
			last = r.Day
			if !r.HasClose {
				st.MissingCloseDropped++
				continue
			}
			filled := false
			if math.IsNaN(r.Open) {
				r.Open = r.Close
				st.OpenFilledFromClose++
				filled = true
			}
			if math.IsNaN(r.High) {
				r.High = r.Close
				st.HighFilledFromClose++
				filled = true
			}
			if math.IsNaN(r.Low) {
				r.Low = r.Close
				st.LowFilledFromClose++
				filled = true
			}
			if filled {
				st.RowsWithFilledPrices++
			}
			s.Date = append(s.Date, r.Date)
			s.Open = append(s.Open, r.Open)
			s.High = append(s.High, r.High)
			s.Low = append(s.Low, r.Low)
			s.Close = append(s.Close, r.Close)
			s.Volume = append(s.Volume, r.Volume)
			s.ZeroVolume = append(s.ZeroVolume, r.Volume == 0)
			if r.Volume == 0 {
				st.ZeroVolumeFlagged++
			}
		}
		st.CleanRows += s.Len()
		out = append(out, s)
	}
	return out, st
}
