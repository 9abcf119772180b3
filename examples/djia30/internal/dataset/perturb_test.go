package dataset

import (
	"math/rand"
	"testing"
)

// Perturbing every price and volume after day t changes no feature and no
// label_today of any day up to t, and no label before t (the label of day t
// is about day t+1 by definition); perturbing every row after the train end
// changes no normalization parameter (fitted on train only).
func TestPerturbAfterTChangesNothingBefore(t *testing.T) {
	all := realRows(t)
	rng := rand.New(rand.NewSource(1))
	for _, cut := range []string{"2009-03-09", "2012-06-29", "2015-12-31", "2016-12-30"} {
		pert := append([]Row(nil), all...)
		for i := range pert {
			if pert[i].Date > cut {
				f := 0.5 + rng.Float64()
				pert[i].Open *= f
				pert[i].High *= f * 1.1
				pert[i].Low *= f * 0.9
				pert[i].Close *= 0.5 + rng.Float64()
				pert[i].Volume *= rng.Float64() * 3
			}
		}
		orig, _ := Clean(all)
		moved, _ := Clean(pert)
		compared := 0
		for k := range orig {
			a, b := Features(orig[k]), Features(moved[k])
			for i := range a {
				if a[i].Date > cut {
					break
				}
				if a[i].Features != b[i].Features || a[i].LabelToday != b[i].LabelToday {
					t.Fatalf("cut %s: %s %s: features changed by prices after the cut", cut, a[i].Ticker, a[i].Date)
				}
				if a[i].Date < cut && a[i].Label != b[i].Label {
					t.Fatalf("cut %s: %s %s: label changed by prices after the next day", cut, a[i].Ticker, a[i].Date)
				}
				compared++
			}
		}
		if compared < 20000 {
			t.Errorf("cut %s: compared only %d rows", cut, compared)
		}
		if cut == "2015-12-31" {
			p1, err := PrepareRows(Options{Input: "real"}, all)
			if err != nil {
				t.Fatal(err)
			}
			p2, err := PrepareRows(Options{Input: "perturbed"}, pert)
			if err != nil {
				t.Fatal(err)
			}
			for i := range p1.Schema.Features {
				if p1.Schema.Features[i] != p2.Schema.Features[i] {
					t.Errorf("normalization of %s changed by data after the train end: %+v vs %+v", p1.Schema.Features[i].Name, p1.Schema.Features[i], p2.Schema.Features[i])
				}
			}
			if len(p1.Splits[SplitTrain]) != len(p2.Splits[SplitTrain]) {
				t.Fatalf("train rows differ")
			}
			for i, e := range p1.Splits[SplitTrain] {
				o := p2.Splits[SplitTrain][i]
				if e.Date == cut {
					// The last train day's label is the first validation day's move.
					o.Label = e.Label
				}
				if e != o {
					t.Fatalf("train row %s %s changed by data after the train end", e.Ticker, e.Date)
				}
			}
		}
	}
}
