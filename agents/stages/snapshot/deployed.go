package snapshot

import (
	"context"
	"errors"

	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

// Deployed reads what serves from the deploy branch: its deploy status
// (nil when the branch has none: nothing was deployed), and the lineage
// record, from the training branch, of the model its deploy.yaml names (nil
// when it names none). Prune protects their snapshots by default. A
// corrupted status or record is an agent.StateError.
func Deployed(ctx context.Context, f forge.Forge, cfg *config.Config) (*records.DeployStatus, []*lineage.Record, error) {
	deployBranch, trainBranch := cfg.Branches[config.StageDeploy], cfg.Branches[config.StageTrain]
	if deployBranch == "" {
		return nil, nil, nil
	}
	read := func(branch, path string) ([]byte, error) {
		raw, err := f.ReadFile(ctx, branch, path)
		if errors.Is(err, forge.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, agent.Failed("read "+path+" on "+branch, err, "check the forge (backends.forge), or pass --deploy-status")
		}
		return raw, nil
	}
	var status *records.DeployStatus
	raw, err := read(deployBranch, records.DeployStatusPath)
	if err != nil {
		return nil, nil, err
	}
	if raw != nil {
		status = &records.DeployStatus{}
		if err := records.ParseJSON(deployBranch+":"+records.DeployStatusPath, raw, status); err != nil {
			return nil, nil, err
		}
	}
	if raw, err = read(deployBranch, records.DeploySpecPath); err != nil || raw == nil {
		return status, nil, err
	}
	var spec records.DeploySpec
	if err := yaml.Unmarshal(raw, &spec); err != nil || spec.LineageID == "" || trainBranch == "" {
		return status, nil, nil // the deploy stage judges deploy.yaml; without a lineage ID it protects nothing more
	}
	if raw, err = read(trainBranch, lineage.Path(spec.LineageID)); err != nil || raw == nil {
		return status, nil, err
	}
	rec, err := lineage.Parse(raw)
	if err != nil {
		return nil, nil, &agent.StateError{File: trainBranch + ":" + lineage.Path(spec.LineageID), Err: err, Fix: records.Repair(trainBranch + ":" + lineage.Path(spec.LineageID))}
	}
	return status, []*lineage.Record{rec}, nil
}

// Unprotected returns the deployed model versions of status (stable and
// canary) that no record in recs names: their snapshots cannot be told
// apart, so pruning must not go on.
func Unprotected(recs []*lineage.Record, status *records.DeployStatus) []int64 {
	if status == nil {
		return nil
	}
	var out []int64
	for _, v := range []int64{status.StableVersion, status.CanaryVersion} {
		if v == 0 {
			continue
		}
		found := false
		for _, r := range recs {
			if r.Model.Version == v && (status.Model == "" || r.Model.Name == "" || r.Model.Name == status.Model) {
				found = true
			}
		}
		if !found {
			out = append(out, v)
		}
	}
	return out
}
