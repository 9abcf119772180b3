package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/config"
)

// Analysis is the verdict on one interval of a variant's traffic.
type Analysis struct {
	// Weight is the canary weight during the interval, in percent.
	Weight         int     `json:"weight"`
	CanaryRequests uint64  `json:"canaryRequests"`
	CanaryErrors   uint64  `json:"canaryErrors"`
	StableRequests uint64  `json:"stableRequests"`
	StableErrors   uint64  `json:"stableErrors"`
	SuccessRate    float64 `json:"successRate"`
	// P99 is the canary's p99 latency in milliseconds.
	P99Millis float64 `json:"p99Millis"`
	// Share is the canary's measured share of all requests, in percent.
	Share float64 `json:"share"`
	// Failures lists the checks that failed; empty means the analysis passed.
	Failures []string `json:"failures,omitempty"`
}

// Passed reports whether every check held.
func (a Analysis) Passed() bool { return len(a.Failures) == 0 }

// analyse judges the canary's counters delta against p.
func analyse(p Policy, weight int, canary, stable tfserving.Counters) Analysis {
	a := Analysis{Weight: weight, CanaryRequests: canary.Requests, CanaryErrors: canary.Errors,
		StableRequests: stable.Requests, StableErrors: stable.Errors, SuccessRate: round2(canary.SuccessRate())}
	p99 := canary.Latency.Quantile(0.99)
	a.P99Millis = round2(float64(p99) / float64(time.Millisecond))
	if total := canary.Requests + stable.Requests; total > 0 {
		a.Share = round2(100 * float64(canary.Requests) / float64(total))
	}
	if canary.Requests < uint64(max(p.MinRequests, 1)) {
		a.Failures = append(a.Failures, fmt.Sprintf("no data: %d canary requests, need %d", canary.Requests, max(p.MinRequests, 1)))
		return a
	}
	if a.SuccessRate < p.SuccessRate {
		a.Failures = append(a.Failures, fmt.Sprintf("success rate %.2f%% < %.2f%% (%d of %d failed)", a.SuccessRate, p.SuccessRate, canary.Errors, canary.Requests))
	}
	if p.MaxLatencyP99 > 0 && p99 > p.MaxLatencyP99 {
		a.Failures = append(a.Failures, fmt.Sprintf("p99 latency %v > %v", p99.Round(time.Microsecond), p.MaxLatencyP99))
	}
	return a
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// smoke runs every smoke test against variant v and returns the failures.
func smoke(ctx context.Context, b serving.Probe, v serving.Variant, tests []config.SmokeTest) []string {
	var out []string
	for _, st := range tests {
		body, err := json.Marshal(st.Request)
		if err != nil {
			out = append(out, fmt.Sprintf("smoke %s: request: %v", st.Name, err))
			continue
		}
		resp, err := b.Predict(ctx, v, body)
		if err != nil {
			out = append(out, fmt.Sprintf("smoke %s: %v", st.Name, err))
			continue
		}
		if len(st.Expect) == 0 {
			continue
		}
		var got [][]float64
		if err := json.Unmarshal(resp.Predictions, &got); err != nil {
			var flat []float64
			if json.Unmarshal(resp.Predictions, &flat) != nil {
				out = append(out, fmt.Sprintf("smoke %s: predictions %s are not a list of numbers", st.Name, resp.Predictions))
				continue
			}
			for _, f := range flat {
				got = append(got, []float64{f})
			}
		}
		if msg := compare(got, st.Expect, st.Tolerance); msg != "" {
			out = append(out, fmt.Sprintf("smoke %s: %s", st.Name, msg))
		}
	}
	return out
}

func compare(got, want [][]float64, tol float64) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d predictions, want %d", len(got), len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			return fmt.Sprintf("prediction %d has %d values, want %d", i, len(got[i]), len(want[i]))
		}
		for j := range want[i] {
			if math.Abs(got[i][j]-want[i][j]) > tol {
				return fmt.Sprintf("prediction [%d][%d] = %v, want %v ± %v", i, j, got[i][j], want[i][j], tol)
			}
		}
	}
	return ""
}
