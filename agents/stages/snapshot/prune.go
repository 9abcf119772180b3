package snapshot

import (
	"context"
	"errors"
	"fmt"

	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

// PruneOptions are the inputs of Prune.
type PruneOptions struct {
	Storage storage.Backend
	// Volumes whose snapshots are pruned.
	Volumes []string
	// Keep is how many snapshots per volume are kept, newest first (config
	// snapshot.keep); at least 1.
	Keep int
	// Protected are snapshot names never deleted (see Protected).
	Protected map[string]bool
	// DryRun lists what would be deleted and deletes nothing.
	DryRun bool
}

// PruneResult lists snapshot names by what happened to them.
type PruneResult struct {
	Deleted []string `json:"deleted"`
	Kept    []string `json:"kept"`
	// Protected were beyond Keep but are referenced by a deployed model.
	Protected []string `json:"protected,omitempty"`
}

// Prune keeps the newest Keep snapshots of each volume and deletes the
// rest, except the protected ones. A snapshot deleted meanwhile by someone
// else is not an error.
func Prune(ctx context.Context, o PruneOptions) (*PruneResult, error) {
	if o.Keep < 1 {
		return nil, fmt.Errorf("keep %d: keep at least 1 snapshot per volume (snapshot.keep)", o.Keep)
	}
	res := &PruneResult{Deleted: []string{}, Kept: []string{}}
	for _, v := range o.Volumes {
		list, err := o.Storage.ListSnapshots(ctx, v)
		if err != nil {
			return res, fmt.Errorf("list snapshots of volume %s: %w", v, err)
		}
		for i, s := range list {
			switch {
			case i < o.Keep:
				res.Kept = append(res.Kept, s.Name)
			case o.Protected[s.Name]:
				res.Kept = append(res.Kept, s.Name)
				res.Protected = append(res.Protected, s.Name)
			default:
				if !o.DryRun {
					if err := o.Storage.DeleteSnapshot(ctx, s.Name); err != nil && !errors.Is(err, storage.ErrNotFound) {
						return res, fmt.Errorf("delete snapshot %s of volume %s: %w", s.Name, v, err)
					}
				}
				res.Deleted = append(res.Deleted, s.Name)
			}
		}
	}
	return res, nil
}

// Protected returns the data and model snapshot names of the records whose
// model version is deployed: the stable or canary version of status (nil
// status: none), plus extra names given by hand.
func Protected(recs []*lineage.Record, status *records.DeployStatus, extra ...string) map[string]bool {
	out := map[string]bool{}
	for _, n := range extra {
		out[n] = true
	}
	if status == nil {
		return out
	}
	for _, r := range recs {
		if status.Model != "" && r.Model.Name != "" && r.Model.Name != status.Model {
			continue
		}
		v := r.Model.Version
		if v != 0 && (v == status.StableVersion || v == status.CanaryVersion) {
			out[r.Data.Snapshot] = true
			out[r.Model.Snapshot.Snapshot] = true
		}
	}
	return out
}
