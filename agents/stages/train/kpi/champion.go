package kpi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/records"
)

// ErrChampionUnknown is returned (wrapped) when the deploy branch serves a
// version that its deploy.yaml does not name, so the gate cannot tell
// which run made the serving model.
var ErrChampionUnknown = errors.New("the serving model's run is not known")

// FindChampion returns the model serving on deployBranch for model: the
// model of deploy.yaml when .branchml/deploy-status.json records it as the
// stable version (or records nothing serving yet, or is absent: the merged
// spec is what serves next). It returns nil and a reason when deploy.yaml
// is absent or names another model, and an error wrapping
// ErrChampionUnknown when the status serves another version than the spec
// names (after a rollback whose spec was not reverted).
func FindChampion(ctx context.Context, f forge.Forge, deployBranch, model string) (*ChampionRef, string, error) {
	raw, err := f.ReadFile(ctx, deployBranch, records.DeploySpecPath)
	if errors.Is(err, forge.ErrNotFound) {
		return nil, "no champion: nothing is deployed on " + deployBranch + " yet", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read %s on %s: %w", records.DeploySpecPath, deployBranch, err)
	}
	var spec records.DeploySpec
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		return nil, "", fmt.Errorf("%s on %s: %w", records.DeploySpecPath, deployBranch, err)
	}
	if spec.Model.Name != model {
		return nil, fmt.Sprintf("no champion: %s on %s deploys model %q, not %q", records.DeploySpecPath, deployBranch, spec.Model.Name, model), nil
	}
	ref := &ChampionRef{Model: spec.Model.Name, Version: spec.Model.Version, RunID: spec.RunID, SourceCommit: spec.SourceCommit}
	if ref.RunID == "" {
		return nil, "", fmt.Errorf("%w: %s on %s names no run", ErrChampionUnknown, records.DeploySpecPath, deployBranch)
	}
	raw, err = f.ReadFile(ctx, deployBranch, records.DeployStatusPath)
	if errors.Is(err, forge.ErrNotFound) {
		return ref, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read %s on %s: %w", records.DeployStatusPath, deployBranch, err)
	}
	var st records.DeployStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, "", fmt.Errorf("%s on %s: %w", records.DeployStatusPath, deployBranch, err)
	}
	if st.Model == model && st.StableVersion != 0 && st.StableVersion != spec.Model.Version {
		return nil, "", fmt.Errorf("%w: %s serves %s v%d but %s names v%d (run %s)", ErrChampionUnknown, deployBranch, model, st.StableVersion, records.DeploySpecPath, spec.Model.Version, spec.RunID)
	}
	return ref, "", nil
}
