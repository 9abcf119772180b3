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

// Outcome is how the canary analysis counts one answer. This is the one
// definition of a failed request for every serving backend: the local
// gateway reports HTTP statuses, TF Serving's metrics canonical codes that
// tfserving.HTTPStatus maps to the HTTP status its REST API answers with.
type Outcome int

// The outcomes.
const (
	// Success: 2xx (and 1xx/3xx, which TF Serving never sends).
	Success Outcome = iota
	// ServerError: 5xx, including the gateway's 502 (no answer from the
	// server) and 504, and 429 (RESOURCE_EXHAUSTED: the version cannot take
	// its share of the load). Always the variant's fault.
	ServerError
	// ClientError: any other 4xx. 400 (INVALID_ARGUMENT, FAILED_PRECONDITION,
	// OUT_OF_RANGE: TF Serving's answer to a body it cannot use) and 404
	// (unknown model, version or label) are what a bad request gets from
	// every version alike; they count against the canary only as far as
	// the canary answers them more often than the stable version does to
	// the same traffic in the same interval (a canary that rejects what the
	// stable version accepts fails; a client sending bad bodies to both
	// does not fail the canary).
	ClientError
	// Ignored: 499 (CANCELLED) and 408: the client gave up; neither success
	// nor failure, and not counted.
	Ignored
)

// Classify is the outcome of an answer with HTTP status code.
func Classify(code int) Outcome {
	switch {
	case code == 499 || code == 408:
		return Ignored
	case code == 429 || code >= 500 || code <= 0:
		return ServerError
	case code >= 400:
		return ClientError
	}
	return Success
}

// tally is a variant's counters sorted by Outcome.
type tally struct {
	counted, server, client uint64
}

func tallyOf(c tfserving.Counters) tally {
	var t tally
	var seen uint64
	for code, n := range c.Codes {
		seen += n
		switch Classify(code) {
		case Ignored:
			continue
		case ServerError:
			t.server += n
		case ClientError:
			t.client += n
		}
		t.counted += n
	}
	if c.Requests > seen {
		t.counted += c.Requests - seen // requests without a status: successes
	}
	return t
}

// Analysis is the verdict on one interval of a variant's traffic.
type Analysis struct {
	// Weight is the canary weight during the interval, in percent.
	Weight int `json:"weight"`
	// CanaryRequests are the canary's counted requests (Ignored left out).
	CanaryRequests uint64 `json:"canaryRequests"`
	// CanaryErrors are its failed requests: server errors plus the client
	// errors beyond the stable version's rate (see ClientError).
	CanaryErrors uint64 `json:"canaryErrors"`
	// CanaryClientErrors and StableClientErrors are the 4xx answers of each.
	CanaryClientErrors uint64 `json:"canaryClientErrors,omitempty"`
	StableRequests     uint64 `json:"stableRequests"`
	// StableErrors are the stable version's server errors.
	StableErrors       uint64  `json:"stableErrors"`
	StableClientErrors uint64  `json:"stableClientErrors,omitempty"`
	SuccessRate        float64 `json:"successRate"`
	// P99 is the canary's p99 latency in milliseconds.
	P99Millis float64 `json:"p99Millis"`
	// Share is the canary's measured share of all requests, in percent.
	Share float64 `json:"share"`
	// NoData, when set, says why the interval had too few canary requests
	// to judge: the analysis is inconclusive (it neither passes nor fails;
	// the rollout waits for traffic).
	NoData string `json:"noData,omitempty"`
	// Failures lists the checks that failed.
	Failures []string `json:"failures,omitempty"`
}

// Passed reports whether there was data and every check held.
func (a Analysis) Passed() bool { return a.NoData == "" && len(a.Failures) == 0 }

// Inconclusive reports whether the interval had too little traffic to judge.
func (a Analysis) Inconclusive() bool { return a.NoData != "" }

// analyse judges the canary's counters delta against p. stableClientRate
// is the stable version's 4xx rate (0..1) measured earlier in the
// rollout, used when the stable version got no traffic in this interval
// (the canary at 100%); < 0 when unknown.
func analyse(p Policy, weight int, canary, stable tfserving.Counters, stableClientRate float64) Analysis {
	tc, ts := tallyOf(canary), tallyOf(stable)
	a := Analysis{Weight: weight, CanaryRequests: tc.counted, CanaryClientErrors: tc.client,
		StableRequests: ts.counted, StableErrors: ts.server, StableClientErrors: ts.client, SuccessRate: 100}
	p99 := canary.Latency.Quantile(0.99)
	a.P99Millis = round2(float64(p99) / float64(time.Millisecond))
	if total := tc.counted + ts.counted; total > 0 {
		a.Share = round2(100 * float64(tc.counted) / float64(total))
	}
	if need := uint64(max(p.MinRequests, 1)); tc.counted < need {
		a.NoData = fmt.Sprintf("%d canary requests in the interval, need %d", tc.counted, need)
		return a
	}
	rate := stableClientRate
	if ts.counted > 0 {
		rate = float64(ts.client) / float64(ts.counted)
	}
	excess := tc.client
	if rate > 0 {
		expected := uint64(math.Round(rate * float64(tc.counted)))
		excess = tc.client - min(expected, tc.client)
	}
	a.CanaryErrors = tc.server + excess
	a.SuccessRate = round2(100 * float64(tc.counted-min(a.CanaryErrors, tc.counted)) / float64(tc.counted))
	if a.SuccessRate < p.SuccessRate {
		why := fmt.Sprintf("%d of %d failed", a.CanaryErrors, tc.counted)
		if excess > 0 {
			why += fmt.Sprintf(": %d server errors, %d client errors (4xx) beyond the stable version's rate", tc.server, excess)
		}
		a.Failures = append(a.Failures, fmt.Sprintf("success rate %.2f%% < %.2f%% (%s)", a.SuccessRate, p.SuccessRate, why))
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
