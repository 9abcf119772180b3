package lineage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
)

// SchemaVersion of the records this package writes; Parse rejects newer
// ones. 2 added pullRequest (the reviewed pull request of the commit).
const SchemaVersion = 2

// APIVersion and Kind of a record.
const (
	APIVersion = "branchml.dev/v1"
	Kind       = "Lineage"
)

// Record is one lineage record, .branchml/lineage/<id>.json on the training
// branch.
type Record struct {
	APIVersion    string `json:"apiVersion"`
	Kind          string `json:"kind"`
	SchemaVersion int    `json:"schemaVersion"`
	// ID is deterministic: ID(Source.Commit, Run.ID).
	ID     string `json:"id"`
	Source Source `json:"source"`
	Config Config `json:"config"`
	// Pipeline is the pipeline version the run ran (from the pipeline lock).
	Pipeline Pipeline `json:"pipeline"`
	// Images are the component images, sorted by component.
	Images []Image `json:"images"`
	Run    Run     `json:"run"`
	// Data is the snapshot of the data volume the run read.
	Data SnapshotRef `json:"data"`
	// Model is the model version the run wrote and the snapshot of its volume.
	Model Model `json:"model"`
	// Metrics is the run's metrics.json.
	Metrics   map[string]any `json:"metrics,omitempty"`
	StartedBy StartedBy      `json:"startedBy"`
	// PullRequest is the reviewed pull request whose merge put the source
	// commit on its branch (nil when it arrived otherwise, or the forge
	// cannot tell).
	PullRequest *PullRequest `json:"pullRequest,omitempty"`
	// Backend is the storage backend of the snapshots: "local" or "trident".
	Backend   string    `json:"backend"`
	CreatedAt time.Time `json:"createdAt"`
}

// Source is the ML repository commit the training ran for. Commit is the
// source commit (for PR builds the PR head, not Jenkins' merge commit).
type Source struct {
	Repository string `json:"repository,omitempty"`
	Branch     string `json:"branch,omitempty"`
	Commit     string `json:"commit"`
	ChangeID   string `json:"changeId,omitempty"`
}

// Config identifies the branchml.yaml in effect: its path and the sha256 of
// its bytes ("sha256:<hex>").
type Config struct {
	Path string `json:"path,omitempty"`
	Hash string `json:"hash"`
}

// Pipeline is a stored pipeline version (records.PipelineLock).
type Pipeline struct {
	Backend      string `json:"backend,omitempty"`
	ID           string `json:"id"`
	Name         string `json:"name,omitempty"`
	VersionID    string `json:"versionId"`
	VersionName  string `json:"versionName,omitempty"`
	SpecHash     string `json:"specHash,omitempty"`
	SourceCommit string `json:"sourceCommit,omitempty"`
}

// Image is one component image pinned by digest ("sha256:<hex>").
type Image struct {
	Component string `json:"component"`
	Image     string `json:"image"`
	Digest    string `json:"digest"`
}

// Run is the pipeline run; State is a KFP v2beta1 RuntimeState value.
type Run struct {
	ID         string         `json:"id"`
	Experiment string         `json:"experiment,omitempty"`
	State      string         `json:"state,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
	StartedAt  time.Time      `json:"startedAt"`
	FinishedAt time.Time      `json:"finishedAt"`
}

// SnapshotRef names a snapshot: its volume, name, namespace (Trident) and
// the backend's handle (VolumeSnapshotContent snapshotHandle, or the local
// tree's "sha256:<hex>").
type SnapshotRef struct {
	Volume    string    `json:"volume"`
	Snapshot  string    `json:"snapshot"`
	Namespace string    `json:"namespace,omitempty"`
	Handle    string    `json:"handle,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// Model is the model version (TF Serving's <base_path>/<version>) and the
// snapshot of the model volume it is on.
type Model struct {
	Name     string      `json:"name"`
	Version  int64       `json:"version"`
	Path     string      `json:"path,omitempty"`
	Snapshot SnapshotRef `json:"snapshot"`
}

// PullRequest is the human in the loop: the pull request through which the
// source commit arrived, who opened it, who approved it and who merged it.
type PullRequest struct {
	Number      int        `json:"number"`
	URL         string     `json:"url,omitempty"`
	Title       string     `json:"title,omitempty"`
	Author      string     `json:"author,omitempty"`
	Approvers   []string   `json:"approvers"`
	MergedBy    string     `json:"mergedBy,omitempty"`
	MergedAt    *time.Time `json:"mergedAt,omitempty"`
	MergeCommit string     `json:"mergeCommit,omitempty"`
}

// StartedBy is who started the build: the Jenkins build URL and user when known.
type StartedBy struct {
	BuildURL string `json:"buildUrl,omitempty"`
	User     string `json:"user,omitempty"`
}

// ID is the lineage ID of a run: "lin-" and the first 16 hex digits of
// sha256(commit "\n" runID).
func ID(commit, runID string) string {
	sum := sha256.Sum256([]byte(commit + "\n" + runID))
	return "lin-" + hex.EncodeToString(sum[:])[:16]
}

var idPattern = regexp.MustCompile(`^lin-[0-9a-f]{16}$`)

// Path is the record's repository path: records.LineageDir + "/<id>.json".
func Path(id string) string { return ".branchml/lineage/" + id + ".json" }

// Marshal returns the record as indented JSON with a trailing newline.
func (r *Record) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Validate checks what every record must have: apiVersion and kind, a
// known schemaVersion, the commit, run and data snapshot, and an ID that is
// ID(commit, run).
func (r *Record) Validate() error {
	var probs []string
	if r.APIVersion != APIVersion || r.Kind != Kind {
		probs = append(probs, fmt.Sprintf("apiVersion/kind are %q/%q, want %q/%q", r.APIVersion, r.Kind, APIVersion, Kind))
	}
	if r.SchemaVersion < 1 || r.SchemaVersion > SchemaVersion {
		probs = append(probs, fmt.Sprintf("schemaVersion %d is not supported (1..%d): upgrade branchml", r.SchemaVersion, SchemaVersion))
	}
	if r.Source.Commit == "" {
		probs = append(probs, "source.commit is empty")
	}
	if r.Run.ID == "" {
		probs = append(probs, "run.id is empty")
	}
	if r.Data.Snapshot == "" {
		probs = append(probs, "data.snapshot is empty")
	}
	if !idPattern.MatchString(r.ID) {
		probs = append(probs, fmt.Sprintf("id %q is not lin-<16 hex digits>", r.ID))
	} else if r.Source.Commit != "" && r.Run.ID != "" && r.ID != ID(r.Source.Commit, r.Run.ID) {
		probs = append(probs, fmt.Sprintf("id %s does not match commit and run (want %s)", r.ID, ID(r.Source.Commit, r.Run.ID)))
	}
	if len(probs) > 0 {
		return fmt.Errorf("invalid lineage record: %s", strings.Join(probs, "; "))
	}
	return nil
}

// Parse reads and validates a record; unknown fields are errors.
func Parse(data []byte) (*Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("invalid lineage record: %w", err)
	}
	if dec.More() {
		return nil, errors.New("invalid lineage record: more than one JSON value")
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// ErrNotFound is returned (wrapped) when no record matches a reference.
var ErrNotFound = errors.New("no such lineage record")

// LoadDir reads every *.json record in dir, sorted by creation time then ID.
// A file that is not a valid record is an error naming it.
func LoadDir(dir string) ([]*Record, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, f := range files {
		raw, err := config.ReadFileLimited(f, config.MaxRecordBytes)
		if err != nil {
			return nil, err
		}
		r, err := Parse(raw)
		if err != nil {
			return nil, &agent.StateError{File: f, Err: err,
				Fix: "restore the record's last good version from the history of the training branch (git log -p -- " + filepath.Join(records.LineageDir, filepath.Base(f)) + "), commit it, pull, then run again"}
		}
		out = append(out, r)
	}
	sortRecords(out)
	return out, nil
}

// sortRecords orders recs oldest first (CreatedAt), records of the same
// time by ID: the order LoadDir and LoadBranch return.
func sortRecords(recs []*Record) {
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].CreatedAt.Equal(recs[j].CreatedAt) {
			return recs[i].CreatedAt.Before(recs[j].CreatedAt)
		}
		return recs[i].ID < recs[j].ID
	})
}

// Find picks the record ref names among recs: a lineage ID ("lin-…"), or a
// model version as "N", "MODEL:N" or "MODEL@N" (the newest record of that
// version wins).
func Find(recs []*Record, ref string) (*Record, error) {
	if strings.HasPrefix(ref, "lin-") {
		for _, r := range recs {
			if r.ID == ref {
				return r, nil
			}
		}
		return nil, fmt.Errorf("%w: id %s", ErrNotFound, ref)
	}
	model, ver := "", ref
	if i := strings.LastIndexAny(ref, ":@"); i >= 0 {
		model, ver = ref[:i], ref[i+1:]
	}
	n, err := strconv.ParseInt(ver, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%q is neither a lineage ID (lin-…) nor a model version (N, MODEL:N or MODEL@N)", ref)
	}
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Model.Version == n && (model == "" || r.Model.Name == model) {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: model version %s", ErrNotFound, ref)
}
