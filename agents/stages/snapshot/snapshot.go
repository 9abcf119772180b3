package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

// Input is what the training stage knows after a run: the run record it
// wrote back, the pipeline lock and components lock it ran with, and the
// build context of the Jenkins build. The lineage's commit is the run's
// Run.SourceCommit (the commit it was trained for, also when a later build
// reuses the run); Build.Commit only when the record has none.
type Input struct {
	Run        records.RunRecord
	Pipeline   records.PipelineLock
	Components records.ComponentsLock
	Build      agent.BuildContext
	// Repository is the ML repository's URL or path, recorded as is ("" = unknown).
	Repository string
}

// Options are the inputs of Run. Config, Storage and Input are required;
// Forge may be nil (then the record is not written back; the caller gets it).
type Options struct {
	Config  *config.Config
	Storage storage.Backend
	Forge   forge.Forge
	Input   Input
	// DryRun returns the planned record (snapshot names, no handles) and
	// changes nothing.
	DryRun bool
	Log    logrus.FieldLogger
	// Now stamps the record (default time.Now).
	Now func() time.Time
}

// SnapshotName is the deterministic snapshot name of volume for a lineage
// ID: "<volume>-<lineage id>" (e.g. "djia30-data-lin-7a1845a0965fcedc").
func SnapshotName(volume, lineageID string) string { return volume + "-" + lineageID }

// Run snapshots the run's data and model volumes (volumes from the run
// record, else from training.data/model.volume), waits until both are
// ready, builds the lineage record, attaches it to both snapshots (when the
// backend is a storage.Annotator, under storage.AnnotationLineage) and
// writes it to records.LineageDir/<id>.json on the train branch in one
// commit. Running it twice for the same commit and run creates nothing
// twice: when the train branch holds the record already, it is returned as
// it is, and neither a snapshot is taken nor a commit made. Errors are *agent.Error: Usage for bad input (a run that did not
// succeed, no commit), Failed for backend failures (wrapping
// *storage.ObjectError).
func Run(ctx context.Context, o Options) (*lineage.Record, error) {
	if o.Config == nil || o.Storage == nil {
		return nil, agent.Usage("snapshot", errors.New("no configuration or storage backend"), "pass Config and Storage in snapshot.Options")
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	rec, err := Plan(o.Config, o.Input, o.Storage, o.Now())
	if err != nil {
		return nil, err
	}
	if o.DryRun {
		o.Log.Infof("would snapshot volume %s as %s and %s as %s, and write %s", rec.Data.Volume, rec.Data.Snapshot,
			rec.Model.Snapshot.Volume, rec.Model.Snapshot.Snapshot, lineage.Path(rec.ID))
		return rec, nil
	}
	branch := o.Config.Branches[config.StageTrain]
	if branch == "" {
		branch = "training"
	}
	if o.Forge != nil {
		// Recorded already (a rerun of the stage for the same run): the
		// snapshots were ready before the record was written. Taking them
		// again would snapshot the volumes as they are now, and rewriting
		// the record would push a commit that starts another build.
		done, err := recorded(ctx, o.Forge, branch, rec)
		if err != nil {
			return nil, err
		}
		if done != nil {
			o.Log.Infof("lineage %s of run %s is recorded on %s already (snapshots %s, %s): nothing to do",
				done.ID, done.Run.ID, branch, done.Data.Snapshot, done.Model.Snapshot.Snapshot)
			return done, nil
		}
	}
	if a, ok := o.Forge.(forge.Auditor); ok {
		// The human in the loop: the reviewed pull request the training
		// commit arrived through.
		pr, err := a.MergedPullRequest(ctx, branch, rec.Source.Commit)
		switch {
		case err != nil:
			o.Log.Warnf("find the pull request of %s on %s: %v (the lineage names none)", rec.Source.Commit, branch, err)
		case pr != nil:
			rec.PullRequest = &lineage.PullRequest{Number: pr.Number, URL: pr.URL, Title: pr.Title, Author: pr.Author, Approvers: pr.Approvers(),
				MergedBy: pr.MergedBy, MergedAt: pr.MergedAt, MergeCommit: pr.MergeCommit}
			if rec.PullRequest.Approvers == nil {
				rec.PullRequest.Approvers = []string{}
			}
		}
	}
	labels, ann := Labels(rec)
	for _, ref := range []*lineage.SnapshotRef{&rec.Data, &rec.Model.Snapshot} {
		l, a := with(labels, storage.KeyRole, role(ref, rec)), with(ann, storage.KeyRole, role(ref, rec))
		o.Log.Infof("snapshot volume %s as %s", ref.Volume, ref.Snapshot)
		s, err := o.Storage.Snapshot(ctx, ref.Volume, storage.SnapshotSpec{Name: ref.Snapshot, Labels: l, Annotations: a})
		if err != nil {
			return nil, agent.Failed("snapshot volume "+ref.Volume, err, fixFor(err))
		}
		ref.Namespace, ref.Handle, ref.CreatedAt = s.Namespace, s.Handle, s.CreatedAt.UTC()
	}
	// The snapshots are ready: only now is the lineage recorded.
	raw, err := rec.Marshal()
	if err != nil {
		return nil, err
	}
	if an, ok := o.Storage.(storage.Annotator); ok {
		compact, _ := json.Marshal(rec)
		for _, name := range []string{rec.Data.Snapshot, rec.Model.Snapshot.Snapshot} {
			if err := an.Annotate(ctx, name, map[string]string{storage.AnnotationLineage: string(compact)}); err != nil {
				return nil, agent.Failed("attach lineage "+rec.ID+" to snapshot "+name, err, "rerun the stage: the snapshots are reused")
			}
		}
	}
	if o.Forge == nil {
		o.Log.Warnf("no forge: lineage %s was not written back", rec.ID)
		return rec, nil
	}
	sha, err := o.Forge.WriteBack(ctx, forge.WriteBack{
		Branch:  branch,
		Files:   map[string][]byte{lineage.Path(rec.ID): raw},
		Message: fmt.Sprintf("branchml snapshot: lineage %s for %s", rec.ID, rec.Source.Commit),
	})
	if err != nil {
		return nil, agent.Failed("write lineage "+rec.ID+" back to "+branch, err, "rerun the stage: the snapshots are reused and the record is rewritten")
	}
	o.Log.Infof("lineage %s written to %s at %s", rec.ID, branch, sha)
	return rec, nil
}

// recorded returns the lineage record of rec's ID on branch when there is
// a valid one for the same run; nil when there is none.
func recorded(ctx context.Context, f forge.Forge, branch string, rec *lineage.Record) (*lineage.Record, error) {
	raw, err := f.ReadFile(ctx, branch, lineage.Path(rec.ID))
	if errors.Is(err, forge.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, agent.Failed("read "+lineage.Path(rec.ID)+" on "+branch, err, "check the forge (backends.forge) and its credentials")
	}
	done, err := lineage.Parse(raw)
	if err != nil || done.ID != rec.ID || done.Run.ID != rec.Run.ID {
		return nil, nil // not a record of this run: it is rewritten
	}
	return done, nil
}

func role(ref *lineage.SnapshotRef, rec *lineage.Record) string {
	if ref == &rec.Data {
		return "data"
	}
	return "model"
}

func with(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

func fixFor(err error) string {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return "provision the volume first (training.data.provision) or check training.data/model.volume"
	case errors.Is(err, storage.ErrExists):
		return "a snapshot of that name belongs to another volume: delete it or check the volume names"
	}
	var oe *storage.ObjectError
	if errors.As(err, &oe) && oe.Temporary() {
		return "rerun the stage: nothing half-made was kept"
	}
	return "check backends.storage and snapshot.class in branchml.yaml"
}

// Labels returns the labels (values sanitized to label syntax) and the
// annotations (full values) every snapshot of rec carries: commit, run ID,
// pipeline version and lineage ID under the branchml.dev/ prefix.
func Labels(rec *lineage.Record) (labels, annotations map[string]string) {
	full := map[string]string{
		storage.KeyCommit:          rec.Source.Commit,
		storage.KeyRunID:           rec.Run.ID,
		storage.KeyPipelineVersion: rec.Pipeline.VersionID,
		storage.KeyLineageID:       rec.ID,
	}
	labels, annotations = map[string]string{}, map[string]string{}
	for k, v := range full {
		if v == "" {
			continue
		}
		labels[k] = storage.LabelValue(v)
		annotations[k] = v
	}
	return labels, annotations
}

// Plan builds the lineage record of in without touching any backend: IDs,
// snapshot names, the chain; handles and snapshot times are left empty.
func Plan(cfg *config.Config, in Input, st storage.Backend, now time.Time) (*lineage.Record, error) {
	// The run's own commit first: a run reused by a later build (of a
	// write-back commit, say) keeps its lineage ID.
	commit := in.Run.SourceCommit
	if commit == "" {
		commit = in.Build.Commit
	}
	switch {
	case commit == "":
		return nil, agent.Usagef("pass --commit (the training commit; on PR builds the PR head)", "no source commit: the build context and the run record have none")
	case in.Run.RunID == "":
		return nil, agent.Usagef("pass the run record the train stage wrote (--run-record)", "the run record has no runId")
	case in.Run.State != pipelines.StateSucceeded:
		return nil, agent.Usagef("snapshot only successful runs; rerun training", "run %s is %s, not %s", in.Run.RunID, or(in.Run.State, "in no state"), pipelines.StateSucceeded)
	}
	id := lineage.ID(commit, in.Run.RunID)
	dataVol := or(in.Run.DataVolume, cfg.Training.Data.Volume)
	rec := &lineage.Record{
		APIVersion: lineage.APIVersion, Kind: lineage.Kind, SchemaVersion: lineage.SchemaVersion, ID: id,
		Source:  lineage.Source{Repository: in.Repository, Branch: or(in.Build.Branch, cfg.Branches[config.StageTrain]), Commit: commit, ChangeID: in.Build.ChangeID},
		Config:  configRef(cfg),
		Backend: or(cfg.Backends.Storage.Type, "local"),
		Pipeline: lineage.Pipeline{Backend: in.Pipeline.Backend, ID: or(in.Pipeline.PipelineID, in.Run.PipelineID), Name: in.Pipeline.PipelineName,
			VersionID: or(in.Pipeline.VersionID, in.Run.VersionID), VersionName: in.Pipeline.VersionName, SpecHash: in.Pipeline.SpecHash, SourceCommit: in.Pipeline.SourceCommit},
		Run: lineage.Run{ID: in.Run.RunID, Experiment: in.Run.Experiment, State: in.Run.State, Parameters: in.Run.Parameters,
			StartedAt: in.Run.StartedAt.UTC(), FinishedAt: in.Run.FinishedAt.UTC()},
		Data:      lineage.SnapshotRef{Volume: dataVol, Snapshot: SnapshotName(dataVol, id)},
		Metrics:   in.Run.Metrics,
		StartedBy: lineage.StartedBy{BuildURL: or(in.Build.BuildURL, in.Run.BuildURL), User: in.Build.BuildUser},
		CreatedAt: now.UTC(),
	}
	modelVol := cfg.Training.Model.Volume
	if m := in.Run.Model; m != nil {
		modelVol = or(m.Volume, modelVol)
		rec.Model.Name, rec.Model.Version, rec.Model.Path = m.Name, m.Version, m.Path
	}
	rec.Model.Name = or(rec.Model.Name, cfg.Deploy.Model)
	rec.Model.Snapshot = lineage.SnapshotRef{Volume: modelVol, Snapshot: SnapshotName(modelVol, id)}
	for name, c := range in.Components.Components {
		rec.Images = append(rec.Images, lineage.Image{Component: name, Image: c.Image, Digest: c.Digest})
	}
	sort.Slice(rec.Images, func(i, j int) bool { return rec.Images[i].Component < rec.Images[j].Component })
	for _, v := range []string{dataVol, modelVol} {
		if err := storage.ValidName(SnapshotName(v, id)); err != nil {
			return nil, agent.Usage("snapshot name", err, "shorten training.data.volume / training.model.volume")
		}
	}
	return rec, nil
}

// configRef hashes the bytes of branchml.yaml (or, without a file, the
// effective configuration as JSON).
func configRef(cfg *config.Config) lineage.Config {
	var raw []byte
	path := ""
	if cfg.File != "" {
		if b, err := os.ReadFile(cfg.File); err == nil {
			raw, path = b, filepath.Base(cfg.File)
		}
	}
	if raw == nil {
		raw, _ = json.Marshal(cfg)
	}
	sum := sha256.Sum256(raw)
	return lineage.Config{Path: path, Hash: "sha256:" + hex.EncodeToString(sum[:])}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
