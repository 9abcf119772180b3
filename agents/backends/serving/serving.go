package serving

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// Rebalancer is a Backend whose traffic split can drift while a weight
// holds: the Kubernetes backend's replica split while a
// HorizontalPodAutoscaler scales the stable. Rebalance restores the canary
// weight of the last Route (nothing before one); the rollout calls it at
// each analysis that holds its step.
type Rebalancer interface {
	Rebalance(ctx context.Context) error
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
	// Orphans are model servers that still run although nothing routes to
	// them (the local plane that started them died); the next plane stops
	// them.
	Orphans []VariantState `json:"orphans,omitempty"`
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
	// Since is when the variant took its current weight (zero when unknown).
	Since time.Time `json:"since,omitzero"`
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

// ErrLoadFailed is wrapped by Deploy when the model version itself cannot
// serve: its directory is missing, or the server gave up loading it (TF
// Serving's state END with an error). The rollout treats it as a failed
// canary, not as a failure of the serving system.
var ErrLoadFailed = errors.New("the model version cannot load")

// Leaser is a backend that serializes the rollouts of its model: one lease
// holder at a time may change what serves. The local backend keeps the
// lease in its serving plane; a Kubernetes backend would keep a
// coordination.k8s.io Lease.
type Leaser interface {
	// Lease takes the model's rollout lease for r.What. When another live
	// holder has it, Lease returns a *HeldError at once, or with r.Wait
	// waits (calling r.OnWait once with the holder) until it is free or
	// ctx ends; with r.Preempt it takes the lease from the holder, whose
	// canary is removed first (traffic back to stable, drained, stopped).
	// While the lease is held the backend's changes carry it; a change by
	// a holder whose lease was taken fails with a *PreemptedError.
	Lease(ctx context.Context, r LeaseRequest) (Lease, error)
}

// LeaseRequest says who asks for the lease and how.
type LeaseRequest struct {
	// What the holder does, e.g. "branchml-deploy run: djia30 v2"; shown to
	// whoever waits.
	What    string
	Wait    bool
	Preempt bool
	OnWait  func(holder string)
}

// Lease is a held rollout lease.
type Lease interface {
	// Lost is closed when the lease was taken by another (preempted).
	Lost() <-chan struct{}
	// Err is the *PreemptedError once Lost is closed, else nil.
	Err() error
	// Release gives the lease back (idempotent).
	Release(ctx context.Context) error
}

// HeldError is a lease that another live process holds.
type HeldError struct {
	Model string
	// Holder names it, e.g. "pid 4242 (branchml-deploy run: djia30 v2, since 12:00:01)".
	Holder string
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("rollout of %s in progress by %s", e.Model, e.Holder)
}

// PreemptedError is a change refused because the caller's lease was taken
// by another holder (a manual rollback preempts a rollout).
type PreemptedError struct {
	// By names the holder that took the lease, Reason what it did.
	By     string
	Reason string
}

func (e *PreemptedError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("preempted by %s: %s", e.By, e.Reason)
	}
	return "preempted by " + e.By
}
