package snapshot

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/train"
)

var _ train.Snapshotter = (*TrainHook)(nil)

// TrainHook is the snapshot stage as branchml-train's train.Snapshotter:
// it reads the pipeline lock (branches.pipeline) and components lock
// (branches.build) from the forge and calls Run.
type TrainHook struct {
	Storage storage.Backend
	Forge   forge.Forge
	Log     logrus.FieldLogger
	// Build is the build context of the train stage (user, branch, change ID).
	Build agent.BuildContext
	Now   func() time.Time
}

// Snapshot snapshots the run's volumes and records its lineage.
func (h *TrainHook) Snapshot(ctx context.Context, req train.SnapshotRequest) (*train.SnapshotResult, error) {
	if req.Record == nil || req.Config == nil {
		return nil, agent.Usage("snapshot", errors.New("no run record or configuration"), "")
	}
	log := h.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	in := Input{Run: *req.Record, Build: h.Build}
	in.Build.Commit = req.SourceCommit
	if req.BuildURL != "" {
		in.Build.BuildURL = req.BuildURL
	}
	if req.DataVolume != "" {
		in.Run.DataVolume = req.DataVolume
	}
	if req.ModelVolume != "" {
		m := records.ModelRef{}
		if in.Run.Model != nil {
			m = *in.Run.Model
		}
		m.Volume = req.ModelVolume
		in.Run.Model = &m
	}
	if h.Forge != nil {
		if err := readLock(ctx, h.Forge, log, req.Config.Branches[config.StagePipeline], records.PipelineLockPath, &in.Pipeline); err != nil {
			return nil, err
		}
		if err := readLock(ctx, h.Forge, log, req.Config.Branches[config.StageBuild], records.ComponentsLockPath, &in.Components); err != nil {
			return nil, err
		}
	}
	rec, err := Run(ctx, Options{Config: req.Config, Storage: h.Storage, Forge: h.Forge, Input: in, Log: log, Now: h.Now})
	if err != nil {
		return nil, err
	}
	return &train.SnapshotResult{LineageID: rec.ID, Snapshots: []string{rec.Data.Snapshot, rec.Model.Snapshot.Snapshot}}, nil
}

// readLock reads a JSON lock from branch; a missing or unreadable one
// leaves v empty (the lineage then lacks that link) with a warning; a
// corrupted one is an error (agent.StateError).
func readLock(ctx context.Context, f forge.Forge, log logrus.FieldLogger, branch, path string, v any) error {
	if branch == "" {
		return nil
	}
	raw, err := f.ReadFile(ctx, branch, path)
	if err != nil {
		log.Warnf("lineage: cannot read %s on %s: %v", path, branch, err)
		return nil
	}
	if err := records.ParseJSON(branch+":"+path, raw, v); err != nil {
		return agent.Failed("read "+path+" on "+branch+" for the lineage", err, "")
	}
	return nil
}
