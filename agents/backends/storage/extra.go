package storage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// ErrExists is returned (wrapped) when a volume or snapshot of that name
// already exists with different content or origin.
var ErrExists = errors.New("already exists")

// ErrUnsupported is returned (wrapped) for an operation the backend or the
// cluster cannot do (for example an in-place restore without Trident's
// TridentActionSnapshotRestore CRD).
var ErrUnsupported = errors.New("not supported")

// ErrCorrupt is returned (wrapped) when a snapshot's content does not match
// what was recorded for it (its manifest, its handle): it was tampered
// with or damaged, and is not used.
var ErrCorrupt = errors.New("snapshot does not match its record")

// Restorer is a Backend that can roll a volume back in place to one of its
// snapshots. Trident: TridentActionSnapshotRestore (only the volume's newest
// snapshot); local: the live directory is replaced by a copy of the snapshot.
type Restorer interface {
	Restore(ctx context.Context, volume, snapshot string) error
}

// Annotator is a Backend that can attach metadata to an existing snapshot
// after it is ready (the lineage record): VolumeSnapshot annotations, or the
// local snapshot's metadata file. Keys are merged; an empty value deletes.
type Annotator interface {
	Annotate(ctx context.Context, snapshot string, annotations map[string]string) error
}

// Verifier is a Backend whose snapshots can be re-hashed against their
// manifests (the local backend).
type Verifier interface {
	Verify(ctx context.Context, snapshot string) (*VerifyReport, error)
}

// VerifyReport lists what differs between a snapshot's tree and its
// manifest; paths are slash-separated and relative to the snapshot root.
type VerifyReport struct {
	Snapshot string `json:"snapshot"`
	// Handle is the snapshot's handle recomputed from what was verified
	// (local: "sha256:<hex>" of the manifest's entries), to compare with
	// the handle recorded elsewhere (the lineage record).
	Handle string `json:"handle,omitempty"`
	// Files is the number of files in the manifest; Bytes their total size.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// Changed files have other content (sha256) or mode than recorded.
	Changed []string `json:"changed,omitempty"`
	// Missing files are in the manifest but not in the tree.
	Missing []string `json:"missing,omitempty"`
	// Extra files are in the tree but not in the manifest.
	Extra []string `json:"extra,omitempty"`
}

// OK reports whether the snapshot matched its manifest exactly.
func (r *VerifyReport) OK() bool {
	return len(r.Changed) == 0 && len(r.Missing) == 0 && len(r.Extra) == 0
}

// ObjectError is a failed operation on one backend object, named by its
// kind, namespace and name (Kubernetes: "VolumeSnapshot", "default",
// "djia30-data-…"; local: "Snapshot", "", name).
type ObjectError struct {
	// Op is what was being done: "create", "wait for readyToUse", "delete" …
	Op        string
	Kind      string
	Namespace string
	Name      string
	// Status is the HTTP status the API server answered with (0: none,
	// e.g. for a readiness timeout).
	Status int
	// Retriable is set for failures a later retry may cure (timeouts,
	// throttling, server errors, a snapshot not ready in time).
	Retriable bool
	Err       error
}

// Object returns "kind namespace/name" (or "kind name" without namespace).
func (e *ObjectError) Object() string {
	if e.Namespace == "" {
		return e.Kind + " " + e.Name
	}
	return e.Kind + " " + e.Namespace + "/" + e.Name
}

func (e *ObjectError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Op, e.Object(), e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// Temporary reports whether retrying the operation may succeed: 408, 429,
// 5xx answers and readiness timeouts.
func (e *ObjectError) Temporary() bool {
	if e.Retriable {
		return true
	}
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Label and annotation keys every snapshot carries. Label values are
// sanitized with LabelValue; the annotations carry the full values.
const (
	LabelPrefix          = "branchml.dev/"
	KeyCommit            = LabelPrefix + "commit"
	KeyRunID             = LabelPrefix + "run-id"
	KeyPipelineVersion   = LabelPrefix + "pipeline-version"
	KeyLineageID         = LabelPrefix + "lineage-id"
	KeyVolume            = LabelPrefix + "volume"
	KeyRole              = LabelPrefix + "role" // "data" or "model"
	KeyManagedBy         = "app.kubernetes.io/managed-by"
	ManagedBy            = "branchml"
	AnnotationLineage    = LabelPrefix + "lineage" // the lineage record JSON
	AnnotationSourceSnap = LabelPrefix + "source-snapshot"
)

var badLabelChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// LabelValue turns s into a valid Kubernetes label value: at most 63
// characters of [A-Za-z0-9._-], starting and ending alphanumeric ("" stays
// ""). Runs of other characters become one "-"; the full value belongs in an
// annotation.
func LabelValue(s string) string {
	s = badLabelChars.ReplaceAllString(s, "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.TrimFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
}

var validName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// ValidName checks that name is a DNS-1123 subdomain (lower-case letters,
// digits, '-' and '.', starting and ending alphanumeric, at most 253
// characters): the rule for PVC and VolumeSnapshot names, which also keeps
// local names from escaping their directory.
func ValidName(name string) error {
	if len(name) > 253 || !validName.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("%q is not a valid volume or snapshot name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters", name)
	}
	return nil
}

// ErrPreflight is wrapped by the errors of a Preflighter: the cluster
// cannot provision or snapshot volumes as configured (a configuration
// problem, not a transient failure: exit 2, nothing was created).
var ErrPreflight = errors.New("storage preflight failed")

// Preflighter is a Backend that can check, read-only, before anything is
// provisioned, that it can provision and snapshot as configured (Trident:
// the snapshot CRDs are served, the storage class and the snapshot class
// exist with the configured CSI driver). Stages call it before provisioning
// and in --dry-run, not only when the first snapshot is taken after a
// whole training run.
type Preflighter interface {
	Preflight(ctx context.Context) error
}

// HostPather is a Backend whose volumes are directories on this machine
// that local processes can read and write (the trident backend on a
// single-machine cluster whose CSI driver keeps volumes as directories,
// backends.storage.hostPathDir). Stages and commands use it through this
// interface, never the implementation.
type HostPather interface {
	// HostPath returns the directory of the existing volume; an error
	// wrapping ErrNotFound when there is no such volume.
	HostPath(ctx context.Context, volume string) (string, error)
}
