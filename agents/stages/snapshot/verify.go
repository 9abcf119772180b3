package snapshot

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

// VerifyResult is a snapshot's verification: the backend's re-hash of its
// tree against its manifest, and the handle recorded for it in the lineage
// record on the training branch.
type VerifyResult struct {
	*storage.VerifyReport
	// Lineage is the record that names the snapshot ("" when none does: the
	// handle could not be checked); RecordedHandle the handle it holds.
	Lineage        string `json:"lineage,omitempty"`
	RecordedHandle string `json:"recordedHandle,omitempty"`
}

var lineageSuffix = regexp.MustCompile(`-(lin-[0-9a-f]{16})$`)

// Verify re-hashes snapshot with the backend (storage.Verifier) and checks
// its handle against the lineage record on the training branch (named by
// the snapshot's name, SnapshotName), which a rewrite of the state
// directory cannot change: a snapshot whose tree, manifest and handle were
// all rewritten consistently passes the backend's check but not this one.
// f may be nil (no handle check). A snapshot that does not match is an
// agent.StateError (exit 2) naming what differs.
func Verify(ctx context.Context, v storage.Verifier, f forge.Forge, cfg *config.Config, snapshot string) (*VerifyResult, error) {
	rep, err := v.Verify(ctx, snapshot)
	if err != nil {
		return nil, agent.Failed("verify snapshot "+snapshot, err, "list snapshots and check the name")
	}
	res := &VerifyResult{VerifyReport: rep}
	if m := lineageSuffix.FindStringSubmatch(snapshot); m != nil && f != nil {
		branch := cfg.Branches[config.StageTrain]
		path := lineage.Path(m[1])
		raw, err := f.ReadFile(ctx, branch, path)
		switch {
		case errors.Is(err, forge.ErrNotFound):
		case err != nil:
			return res, agent.Failed("read "+path+" on "+branch, err, "check the forge (backends.forge)")
		default:
			rec, err := lineage.Parse(raw)
			if err != nil {
				return res, &agent.StateError{File: branch + ":" + path, Err: err, Fix: records.Repair(branch + ":" + path)}
			}
			for _, ref := range []lineage.SnapshotRef{rec.Data, rec.Model.Snapshot} {
				if ref.Snapshot == snapshot {
					res.Lineage, res.RecordedHandle = rec.ID, ref.Handle
				}
			}
		}
	}
	handleOK := res.RecordedHandle == "" || res.RecordedHandle == rep.Handle
	if rep.OK() && handleOK {
		return res, nil
	}
	why := fmt.Errorf("changed %v, missing %v, extra %v", rep.Changed, rep.Missing, rep.Extra)
	if !handleOK {
		why = fmt.Errorf("its handle is %s, but lineage %s on %s recorded %s (%v)", rep.Handle, res.Lineage, cfg.Branches[config.StageTrain], res.RecordedHandle, why)
	}
	return res, &agent.StateError{File: "snapshot " + snapshot, Err: fmt.Errorf("%w: %v", storage.ErrCorrupt, why),
		Fix: "do not use this snapshot: it was changed after it was taken; clone or restore from another snapshot of the lineage, and delete this one"}
}
