package deploy_test

import (
	"testing"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/stages/deploy"
)

func TestWeight(t *testing.T) {
	stable := serving.VariantState{Variant: serving.Stable}
	canary := serving.VariantState{Variant: serving.Canary}
	for _, c := range []struct {
		name           string
		st             serving.State
		stable, canary int
	}{
		{"stable and a canary at 10%", serving.State{Variants: []serving.VariantState{stable, canary}, CanaryWeight: 10}, 90, 10},
		{"stable alone, a weight left over", serving.State{Variants: []serving.VariantState{stable}, CanaryWeight: 25}, 100, 25},
		{"canary at 100%", serving.State{Variants: []serving.VariantState{stable, canary}, CanaryWeight: 100}, 0, 100},
	} {
		if s, k := deploy.Weight(c.st, serving.Stable), deploy.Weight(c.st, serving.Canary); s != c.stable || k != c.canary {
			t.Errorf("%s: stable %d%%, canary %d%%; want %d%%, %d%%", c.name, s, k, c.stable, c.canary)
		}
	}
}
