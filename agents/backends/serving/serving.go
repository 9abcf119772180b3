package serving

import (
	"context"
	"fmt"

	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/records"
)

// Variant names one of the two model servers.
type Variant string

// The two variants of a rollout.
const (
	Stable Variant = "stable"
	Canary Variant = "canary"
)

// Controller changes what serves.
type Controller interface {
	// Deploy makes variant serve exactly model m (m.Path is the model base
	// path, m.Version the version below it) and returns once that version
	// reports AVAILABLE with error_code OK. It does not change the traffic
	// split; deploying what already serves is a no-op.
	Deploy(ctx context.Context, v Variant, m records.ModelRef) error
	// Route sends canaryWeight percent (0..100) of the traffic to the
	// canary, the rest to stable, switching atomically.
	Route(ctx context.Context, canaryWeight int) error
	// Promote makes the canary's model the stable one at 100% and removes
	// the canary; the old stable stops only after the new one serves and
	// in-flight requests drained.
	Promote(ctx context.Context) error
	// Abort sends all traffic to stable and removes the canary.
	Abort(ctx context.Context) error
	// State reports what serves which version at which weight.
	State(ctx context.Context) (State, error)
}

// Probe observes a variant.
type Probe interface {
	// Counters returns the variant's cumulative request counters since it
	// started (requests, errors, latency histogram in µs).
	Counters(ctx context.Context, v Variant) (tfserving.Counters, error)
	// Predict sends a TF Serving predict body straight to the variant.
	Predict(ctx context.Context, v Variant, body []byte) (*tfserving.PredictResponse, error)
}

// Backend is a serving backend: a Controller and a Probe.
type Backend interface {
	Controller
	Probe
}

// State is what serves: each running variant and the canary's weight.
type State struct {
	// Backend is "local" or "kubernetes".
	Backend string `json:"backend"`
	Model   string `json:"model"`
	// Endpoint is where clients send requests (the gateway URL or the Service URL).
	Endpoint     string         `json:"endpoint,omitempty"`
	CanaryWeight int            `json:"canaryWeight"`
	Variants     []VariantState `json:"variants"`
}

// VariantState is one running variant.
type VariantState struct {
	Variant  Variant          `json:"variant"`
	Model    records.ModelRef `json:"model"`
	Endpoint string           `json:"endpoint,omitempty"`
	// Replicas is the number of replicas (local: 1 process).
	Replicas int `json:"replicas"`
	// PID is the process ID (local backend only).
	PID int `json:"pid,omitempty"`
}

// Get returns the state of variant v, or nil when it does not run.
func (s State) Get(v Variant) *VariantState {
	for i := range s.Variants {
		if s.Variants[i].Variant == v {
			return &s.Variants[i]
		}
	}
	return nil
}

// Error is a failed backend operation on one object, with whether a retry
// may succeed.
type Error struct {
	Op        string // e.g. "deploy canary djia30 v2"
	Err       error
	Retriable bool
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Op, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether a retry may succeed.
func (e *Error) Temporary() bool { return e.Retriable }

// IsTemporary reports whether err (or what it wraps) says a retry may succeed.
func IsTemporary(err error) bool {
	for err != nil {
		if t, ok := err.(interface{ Temporary() bool }); ok {
			return t.Temporary()
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
