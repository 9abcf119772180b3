package train

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/train/follow"
	"github.com/branchml/branchml/agents/stages/train/kpi"
)

// Mount paths of the data and model volumes in KFP task pods; the
// pipeline's platform spec mounts the PVCs there.
const (
	KFPDataMount  = "/data"
	KFPModelMount = "/models"
)

// Snapshotter is the hook to the snapshot stage: after a run it snapshots
// the data and model volumes and writes the lineage record, returning the
// lineage ID. The lead wires the snapshot package's implementation.
type Snapshotter interface {
	Snapshot(ctx context.Context, req SnapshotRequest) (*SnapshotResult, error)
}

// SnapshotRequest is what the snapshot stage gets after a run.
type SnapshotRequest struct {
	Config *config.Config
	// Record is the run record as written back (state, metrics, model).
	Record *records.RunRecord
	// DataVolume and ModelVolume name the volumes to snapshot.
	DataVolume, ModelVolume string
	SourceCommit            string
	BuildURL                string
}

// SnapshotResult is what the snapshot stage reports back.
type SnapshotResult struct {
	LineageID string   `json:"lineageId"`
	Snapshots []string `json:"snapshots,omitempty"`
}

// Options are the inputs of Run. Config, Commit and Forge are required;
// Pipelines and Storage too unless DryRun (a plan touches neither).
type Options struct {
	// Config is the loaded branchml.yaml.
	Config *config.Config
	// Commit is the source commit being trained (on the training branch).
	Commit string
	// BuildURL is recorded in the run record and linked from the PR.
	BuildURL string
	// DryRun plans only: validate, read the pipeline lock, print the run it
	// would start with its parameters; nothing is created or written.
	DryRun bool
	// Rerun starts a new run even when this commit already has one. A
	// CANCELED or CANCELING run is never reused, also without Rerun.
	Rerun bool
	// ConfigPath is branchml.yaml's path in the repository (default
	// "branchml.yaml"). When the latest run was made for another commit
	// whose ConfigPath has the same content, of the same pipeline version,
	// that run is reused: the commits differ in nothing training reads
	// (for example the stage's own write-back commits).
	ConfigPath string

	Forge     forge.Forge
	Pipelines pipelines.Backend
	Storage   storage.Backend
	// Snapshotter is the snapshot stage; nil skips snapshots (with a
	// warning when config snapshot.enabled is true).
	Snapshotter Snapshotter

	Log logrus.FieldLogger
	// Follow tunes the follower (Interval, Clock …); Timeout and
	// StallTimeout default to config training.timeout and stallTimeout.
	Follow follow.Options
	// Now is the clock of record timestamps (default time.Now).
	Now func() time.Time
}

// Result is what Run did.
type Result struct {
	DryRun      bool           `json:"dryRun"`
	RunID       string         `json:"runId,omitempty"`
	DisplayName string         `json:"displayName"`
	State       string         `json:"state,omitempty"`
	Experiment  string         `json:"experiment"`
	PipelineID  string         `json:"pipelineId"`
	VersionID   string         `json:"versionId"`
	Parameters  map[string]any `json:"parameters"`
	// Reused is true when the run existed already for this commit (or one
	// that changes nothing training reads); a reused, finished run writes
	// nothing back and is not snapshotted again.
	Reused bool              `json:"reused,omitempty"`
	Model  *records.ModelRef `json:"model,omitempty"`
	// DataVolume and ModelVolume are the provisioned (or planned) volumes.
	DataVolume  string         `json:"dataVolume"`
	ModelVolume string         `json:"modelVolume"`
	Metrics     map[string]any `json:"metrics,omitempty"`
	LineageID   string         `json:"lineageId,omitempty"`
	Gate        *kpi.Result    `json:"gate,omitempty"`
	// PullRequest is the promotion PR (nil unless the gate passed).
	PullRequest *forge.PullRequest `json:"pullRequest,omitempty"`
	// Stopped says why following the run stopped before it ended
	// (Stopped* constants: "stalled", "deadline", "interrupted",
	// "interrupted-after-end", "follow-failed"); "" when it was followed to
	// its end.
	Stopped string `json:"stopped,omitempty"`
	// RunURL links to the run in the backend's UI.
	RunURL string `json:"runUrl,omitempty"`
	// Record is the run record as last written back.
	Record *records.RunRecord `json:"-"`
}
