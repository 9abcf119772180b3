package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// ErrNotFound is returned (wrapped) for an unknown pipeline, version or run.
var ErrNotFound = errors.New("not found")

// KFP v2beta1 RuntimeState values of Run.state and task states.
const (
	StatePending   = "PENDING"
	StateRunning   = "RUNNING"
	StateSucceeded = "SUCCEEDED"
	StateSkipped   = "SKIPPED"
	StateFailed    = "FAILED"
	StateCanceling = "CANCELING"
	StateCanceled  = "CANCELED"
	StatePaused    = "PAUSED"
)

// Terminal reports whether a run in state s will not change any more
// (SUCCEEDED, FAILED, CANCELED, SKIPPED; CANCELING is not terminal).
func Terminal(s string) bool {
	switch s {
	case StateSucceeded, StateFailed, StateCanceled, StateSkipped:
		return true
	}
	return false
}

// Upload asks for a pipeline version of a composed spec.
type Upload struct {
	// PipelineName is the pipeline's display name (created when absent).
	PipelineName string
	Description  string
	// VersionName is deterministic: source commit plus short spec hash, at
	// most 100 characters (KFP's limit).
	VersionName string
	// Spec is the composed KFP v2 IR as YAML (pipeline spec, then the
	// platform spec document when there is one).
	Spec []byte
	// SpecHash is the canonical content hash ("sha256:<hex>"); a version with
	// the same hash makes the upload a no-op.
	SpecHash string
}

// Version is a stored pipeline version.
type Version struct {
	PipelineID   string    `json:"pipelineId"`
	PipelineName string    `json:"pipelineName"`
	VersionID    string    `json:"versionId"`
	VersionName  string    `json:"versionName"`
	SpecHash     string    `json:"specHash"`
	CreatedAt    time.Time `json:"createdAt"`
	// Created is false when an existing version with the same hash was found.
	Created bool `json:"created"`
}

// RunRequest starts a run of a pipeline version.
type RunRequest struct {
	// Experiment is the experiment's display name (created when absent).
	Experiment  string
	DisplayName string
	PipelineID  string
	VersionID   string
	// Parameters are runtime_config.parameters: name → string, number or bool.
	Parameters map[string]any
}

// Task is one task of a run.
type Task struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// Error is the task's error message when it FAILED.
	Error string `json:"error,omitempty"`
	// LogTail is the end of the task's log when the backend has it.
	LogTail string `json:"logTail,omitempty"`
}

// Run is a pipeline run as last observed.
type Run struct {
	ID           string    `json:"id"`
	DisplayName  string    `json:"displayName"`
	ExperimentID string    `json:"experimentId,omitempty"`
	State        string    `json:"state"`
	Tasks        []Task    `json:"tasks,omitempty"`
	Error        string    `json:"error,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	FinishedAt   time.Time `json:"finishedAt,omitempty"`
	// URL links to the run in the backend's UI ("" when it has none).
	URL string `json:"url,omitempty"`
}

// Backend stores pipeline versions and runs them.
type Backend interface {
	// UploadVersion finds or creates the pipeline, then creates the version
	// unless one with the same SpecHash exists (idempotent).
	UploadVersion(ctx context.Context, u Upload) (*Version, error)
	// CreateRun starts a run of a pipeline version in an experiment.
	CreateRun(ctx context.Context, r RunRequest) (*Run, error)
	// GetRun returns the run's current state; ErrNotFound when unknown.
	GetRun(ctx context.Context, id string) (*Run, error)
	// CancelRun asks the backend to stop the run (it moves to CANCELING, then CANCELED).
	CancelRun(ctx context.Context, id string) error
	// Artifact returns the content of an output artifact of a task of a
	// finished run (e.g. task "train", artifact "metrics"); for a directory
	// artifact, file names a file inside it ("" for a file artifact).
	Artifact(ctx context.Context, runID, task, artifact, file string) ([]byte, error)
}

// MaxNameLength is the longest display name the KFP API server accepts for
// pipelines, versions, experiments and runs.
const MaxNameLength = 100

// ShortName returns name when it fits KFP's 100-character limit, else its
// first 87 characters, "-" and the first 12 hex digits of its SHA-256:
// deterministic, and distinct for distinct long names.
func ShortName(name string) string {
	if len(name) <= MaxNameLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:MaxNameLength-13] + "-" + hex.EncodeToString(sum[:])[:12]
}

// StatusError is an error that carries the HTTP status a remote pipeline
// service answered (kfp.APIError): HTTPStatus is the response code,
// Temporary reports whether a retry may succeed. Stages match it with
// errors.As to choose a fix text without importing a backend.
type StatusError interface {
	error
	HTTPStatus() int
	Temporary() bool
}

// SpecChecker is implemented by a backend that can tell, before an upload or
// a plan, whether it can run a composed spec (the local runner). CheckSpec
// returns nil when it can; otherwise an error naming the feature and the
// task, "not supported by the local runner: <feature> (task <name>)", or
// what is wrong with the spec.
type SpecChecker interface {
	CheckSpec(ctx context.Context, spec []byte) error
}
