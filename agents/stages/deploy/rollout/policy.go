package rollout

import (
	"errors"
	"fmt"
	"time"

	"github.com/branchml/branchml/agents/config"
)

// Policy is a canary policy: traffic steps in percent, the interval each
// step is analysed for, the analysis bounds and the failure threshold.
type Policy struct {
	Steps     []int
	Interval  time.Duration
	Threshold int
	// MinRequests is the least number of canary requests per analysis;
	// fewer makes the analysis inconclusive (no data): the step is held and
	// the rollout waits for traffic, saying how to send it (NoTrafficHint).
	MinRequests int
	// MaxInconclusive is how many inconclusive analyses in a row end the
	// rollout (Failed, the canary removed: no traffic to judge it by); 0
	// means DefaultMaxInconclusive.
	MaxInconclusive int
	// NoTrafficHint is added to the wait-for-traffic message, e.g. "send
	// predict requests to http://127.0.0.1:8501/v1/models/djia30:predict".
	NoTrafficHint string
	// SuccessRate is the least canary success rate in percent.
	SuccessRate float64
	// MaxLatencyP99 bounds the canary's p99 latency (0: unbounded).
	MaxLatencyP99 time.Duration
	Smoke         []config.SmokeTest
}

// DefaultMaxInconclusive is Policy.MaxInconclusive when unset.
const DefaultMaxInconclusive = 10

func (p Policy) maxInconclusive() int {
	if p.MaxInconclusive > 0 {
		return p.MaxInconclusive
	}
	return DefaultMaxInconclusive
}

// PolicyOf converts branchml.yaml's deploy.canary.
func PolicyOf(c config.Canary) Policy {
	return Policy{Steps: append([]int(nil), c.Steps...), Interval: c.Interval.Duration, Threshold: c.Threshold,
		MinRequests: c.MinRequests, SuccessRate: c.SuccessRate, MaxLatencyP99: c.MaxLatencyP99.Duration, Smoke: c.Smoke}
}

// Validate reports every problem of p, naming the config field.
func (p Policy) Validate() error {
	var errs []error
	if len(p.Steps) == 0 {
		errs = append(errs, errors.New("deploy.canary.steps is empty: give weights in percent, e.g. [10, 25, 50, 100]"))
	}
	for i, w := range p.Steps {
		if w <= 0 || w > 100 || (i > 0 && w <= p.Steps[i-1]) {
			errs = append(errs, fmt.Errorf("deploy.canary.steps[%d] = %d: weights must ascend within 1..100", i, w))
		}
	}
	if p.Interval <= 0 {
		errs = append(errs, errors.New("deploy.canary.interval must be positive, e.g. 1m"))
	}
	if p.Threshold <= 0 {
		errs = append(errs, errors.New("deploy.canary.threshold must be at least 1"))
	}
	if p.SuccessRate < 0 || p.SuccessRate > 100 {
		errs = append(errs, fmt.Errorf("deploy.canary.successRate = %v: give a percentage 0..100", p.SuccessRate))
	}
	return errors.Join(errs...)
}
