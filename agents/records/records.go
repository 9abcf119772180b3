package records

import (
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
)

// APIVersion of every record.
const APIVersion = "branchml.dev/v1"

// Repository paths of the records (see agents/README.md).
const (
	ComponentsLockPath = ".branchml/components.lock.json"
	PipelineLockPath   = ".branchml/pipeline.lock.json"
	TrainingLockPath   = ".branchml/training.lock.json"
	RunsDir            = ".branchml/runs"    // <run-id>.json
	LineageDir         = ".branchml/lineage" // <lineage-id>.json
	DeploySpecPath     = "deploy.yaml"
	DeployStatusPath   = ".branchml/deploy-status.json"
)

// PipelineSpecPath is the composed KFP v2 IR the pipeline stage uploaded,
// on the pipeline branch.
const PipelineSpecPath = ".branchml/pipeline.composed.yaml"

// ComponentsLock is written to the build branch by branchml-build.
type ComponentsLock struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"` // "ComponentsLock"
	// SourceCommit is the commit of the build branch the images were built from.
	SourceCommit string `json:"sourceCommit"`
	// Registry is the registry host[:port] the images were pushed to.
	Registry   string                     `json:"registry"`
	Components map[string]LockedComponent `json:"components"`
}

// LockedComponent is one built component.
type LockedComponent struct {
	// Repository is the image repository without registry, e.g. "djia30/train".
	Repository string `json:"repository"`
	// Image is the full pinned reference "host/repo@sha256:<hex>".
	Image  string `json:"image"`
	Digest string `json:"digest"` // "sha256:<hex>"
	// SourceHash is the content hash of the component's sources ("sha256:<hex>").
	SourceHash string `json:"sourceHash"`
	// SourceCommit is the commit the image was last built from.
	SourceCommit string `json:"sourceCommit"`
	// Binary is the path of the component's binary inside the image.
	Binary string `json:"binary,omitempty"`
}

// PipelineLock is written to the pipeline branch by branchml-pipeline.
type PipelineLock struct {
	APIVersion   string `json:"apiVersion"`
	Kind         string `json:"kind"` // "PipelineLock"
	SourceCommit string `json:"sourceCommit"`
	// Backend is "local" or "kfp"; Endpoint the KFP API server.
	Backend      string `json:"backend"`
	Endpoint     string `json:"endpoint,omitempty"`
	PipelineID   string `json:"pipelineId"`
	PipelineName string `json:"pipelineName"`
	VersionID    string `json:"versionId"`
	VersionName  string `json:"versionName"`
	SpecHash     string `json:"specHash"`
	// Images maps each executor to the pinned image it runs.
	Images map[string]string `json:"images"`
}

// ModelRef says where a trained model version lives.
type ModelRef struct {
	Name    string `json:"name"`
	Version int64  `json:"version"`
	// Volume is the model volume; Path the model base path on it (TF
	// Serving's model_base_path; the version is a directory below it).
	Volume string `json:"volume"`
	Path   string `json:"path"`
}

// RunRecord is written to the training branch by branchml-train, one per run
// (RunsDir/<run-id>.json) and the latest as TrainingLockPath.
type RunRecord struct {
	APIVersion   string           `json:"apiVersion"`
	Kind         string           `json:"kind"` // "RunRecord"
	SourceCommit string           `json:"sourceCommit"`
	Backend      string           `json:"backend"`
	RunID        string           `json:"runId"`
	Experiment   string           `json:"experiment"`
	PipelineID   string           `json:"pipelineId"`
	VersionID    string           `json:"versionId"`
	State        string           `json:"state"`
	Tasks        []pipelines.Task `json:"tasks,omitempty"`
	Parameters   map[string]any   `json:"parameters"`
	// Metrics is the metrics.json the train task wrote (see examples/djia30/README.md).
	Metrics    map[string]any `json:"metrics,omitempty"`
	Model      *ModelRef      `json:"model,omitempty"`
	DataVolume string         `json:"dataVolume,omitempty"`
	LineageID  string         `json:"lineageId,omitempty"`
	// Gate is the KPI verdict: "passed", "failed" or "" when not evaluated.
	Gate        string    `json:"gate,omitempty"`
	GateReasons []string  `json:"gateReasons,omitempty"`
	PullRequest string    `json:"pullRequest,omitempty"`
	StartedAt   time.Time `json:"startedAt"`
	FinishedAt  time.Time `json:"finishedAt,omitempty"`
	BuildURL    string    `json:"buildUrl,omitempty"`

	// DisplayName is the run's name in the backend: "<project>-<commit12>",
	// or "<project>-<commit12>-r<N>" for the N-th rerun of that commit.
	DisplayName string `json:"displayName,omitempty"`
}

// DeploySpec is deploy.yaml on the deploy branch: the model version that
// should serve. The promote step writes it in its pull request; reverting it
// redeploys the earlier version.
type DeploySpec struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"` // "DeploySpec"
	Model      ModelRef `json:"model"`
	LineageID  string   `json:"lineageId,omitempty"`
	RunID      string   `json:"runId,omitempty"`
	// SourceCommit is the training commit the model came from.
	SourceCommit string `json:"sourceCommit,omitempty"`
	// Strategy overrides deploy.strategy of branchml.yaml when set.
	Strategy string `json:"strategy,omitempty"`
}

// DeployStatus is written to the deploy branch by branchml-deploy.
type DeployStatus struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"` // "DeployStatus"
	Model      string `json:"model"`
	// Phase is "Succeeded" (promoted), "RolledBack", "Progressing",
	// "Failed" or "Interrupted".
	Phase         string        `json:"phase"`
	StableVersion int64         `json:"stableVersion"`
	CanaryVersion int64         `json:"canaryVersion,omitempty"`
	CanaryWeight  int           `json:"canaryWeight"`
	Message       string        `json:"message,omitempty"`
	SourceCommit  string        `json:"sourceCommit"`
	History       []DeployEvent `json:"history"`
	UpdatedAt     time.Time     `json:"updatedAt"`
}

// DeployEvent is one step of a rollout.
type DeployEvent struct {
	Time    time.Time `json:"time"`
	Version int64     `json:"version"`
	Weight  int       `json:"weight"`
	// Event is "step", "analysis-failed", "waiting", "promoted",
	// "rolled-back", "restored", "failed" or "interrupted".
	Event   string `json:"event"`
	Message string `json:"message,omitempty"`
	// From is, for a manual rollback ("rolled-back" with Version the
	// version brought back), the version rolled back from: a plain
	// rollback never brings it back.
	From int64 `json:"from,omitempty"`
	// By names who did it when not the deploy stage of a merge, e.g.
	// "pid 4242 (branchml-deploy rollback)".
	By string `json:"by,omitempty"`
}
