package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/records"
)

// ABPolicy is a fixed-split experiment: the candidate gets Weight percent
// until Duration passed or Requests requests (both variants) were served,
// whichever comes first; Interval is how often that is checked.
type ABPolicy struct {
	Weight   int
	Duration time.Duration
	Requests int
	Interval time.Duration
	// Bounds judge each variant (MinRequests, SuccessRate, MaxLatencyP99 of
	// the canary policy).
	Bounds Policy
}

// ABReport is the side-by-side result of an A/B experiment.
type ABReport struct {
	Weight    int              `json:"weight"`
	Stable    records.ModelRef `json:"stable"`
	Candidate records.ModelRef `json:"candidate"`
	// StableAnalysis and CandidateAnalysis judge each variant on its own
	// traffic against the bounds.
	StableAnalysis    Analysis      `json:"stableAnalysis"`
	CandidateAnalysis Analysis      `json:"candidateAnalysis"`
	Elapsed           time.Duration `json:"elapsedNanos"`
	// Verdict is "candidate-better", "stable-better", "no-difference" or
	// "inconclusive" (a variant lacked data).
	Verdict string                `json:"verdict"`
	History []records.DeployEvent `json:"history"`
}

// RunAB runs an A/B experiment of candidate against the current stable,
// then routes all traffic back to stable and removes the candidate: the
// report is the result, and promotion needs a merge.
func RunAB(ctx context.Context, b serving.Backend, candidate records.ModelRef, p ABPolicy, opts ...Option) (ABReport, error) {
	o := newOptions(opts)
	rep := ABReport{Weight: p.Weight, Candidate: candidate}
	if p.Weight <= 0 || p.Weight >= 100 {
		return rep, fmt.Errorf("deploy.ab.weight = %d: give the candidate's share, 1..99", p.Weight)
	}
	if p.Duration <= 0 && p.Requests <= 0 {
		return rep, errors.New("deploy.ab: set duration or requests (or both) to end the experiment")
	}
	if p.Interval <= 0 {
		p.Interval = time.Second
	}
	ev := func(kind, msg string, w int) {
		rep.History = append(rep.History, records.DeployEvent{Time: o.clock.Now().UTC(), Version: candidate.Version, Weight: w, Event: kind, Message: msg})
	}
	st, err := b.State(ctx)
	if err != nil {
		return rep, &Error{Op: "read serving state", Err: err, Retriable: serving.IsTemporary(err)}
	}
	if s := st.Get(serving.Stable); s != nil {
		rep.Stable = s.Model
	}
	if err := b.Deploy(ctx, serving.Canary, candidate); err != nil {
		return rep, &Error{Op: fmt.Sprintf("deploy candidate %s v%d", candidate.Name, candidate.Version), Err: err, Retriable: serving.IsTemporary(err)}
	}
	baseC, err := b.Counters(ctx, serving.Canary)
	if err != nil {
		_ = b.Abort(context.WithoutCancel(ctx))
		return rep, &Error{Op: "read candidate metrics", Err: err, Retriable: serving.IsTemporary(err)}
	}
	baseS, _ := b.Counters(ctx, serving.Stable)
	if err := b.Route(ctx, p.Weight); err != nil {
		_ = b.Abort(context.WithoutCancel(ctx))
		return rep, &Error{Op: fmt.Sprintf("route %d%% to candidate", p.Weight), Err: err, Retriable: serving.IsTemporary(err)}
	}
	ev(EventStep, fmt.Sprintf("A/B: candidate v%d at %d%%", candidate.Version, p.Weight), p.Weight)
	start := o.clock.Now()
	var dc, ds tfserving.Counters
	for {
		select {
		case <-ctx.Done():
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			msg := fmt.Sprintf("A/B interrupted (%v): candidate v%d removed, stable v%d serves", ctx.Err(), candidate.Version, rep.Stable.Version)
			if err := b.Abort(actx); err != nil {
				msg = fmt.Sprintf("A/B interrupted (%v); removing candidate v%d failed: %v", ctx.Err(), candidate.Version, err)
			}
			cancel()
			ev(EventInterrupted, msg, 0)
			return rep, ctx.Err()
		case <-o.clock.After(p.Interval):
		}
		// A split that drifts (the stable's autoscaler) is restored at each
		// interval; a failure leaves it as it is.
		if rb, ok := b.(serving.Rebalancer); ok {
			if err := rb.Rebalance(ctx); err != nil {
				o.log.Warnf("keep the candidate at %d%%: %v", p.Weight, err)
			}
		}
		c, err1 := b.Counters(ctx, serving.Canary)
		s, err2 := b.Counters(ctx, serving.Stable)
		if err1 == nil && err2 == nil {
			dc, ds = c.Sub(baseC), s.Sub(baseS)
		}
		rep.Elapsed = o.clock.Now().Sub(start)
		if (p.Duration > 0 && rep.Elapsed >= p.Duration) || (p.Requests > 0 && dc.Requests+ds.Requests >= uint64(p.Requests)) {
			break
		}
	}
	rep.CandidateAnalysis = analyse(p.Bounds, p.Weight, dc, ds, -1)
	// Each variant's 4xx are measured against the other's rate.
	rep.StableAnalysis = analyse(p.Bounds, 100-p.Weight, ds, dc, -1)
	rep.Verdict = abVerdict(rep.StableAnalysis, rep.CandidateAnalysis)
	if err := b.Abort(ctx); err != nil {
		return rep, &Error{Op: "end A/B experiment", Err: err, Retriable: serving.IsTemporary(err)}
	}
	ev(EventRolledBack, fmt.Sprintf("A/B finished (%s): stable v%d serves 100%%", rep.Verdict, rep.Stable.Version), 0)
	return rep, nil
}

func abVerdict(s, c Analysis) string {
	switch {
	case s.Inconclusive() || c.Inconclusive():
		return "inconclusive"
	case c.Passed() && !s.Passed():
		return "candidate-better"
	case s.Passed() && !c.Passed():
		return "stable-better"
	case c.SuccessRate > s.SuccessRate || (c.SuccessRate == s.SuccessRate && c.P99Millis < s.P99Millis*0.9):
		return "candidate-better"
	case s.SuccessRate > c.SuccessRate || (c.SuccessRate == s.SuccessRate && s.P99Millis < c.P99Millis*0.9):
		return "stable-better"
	}
	return "no-difference"
}
