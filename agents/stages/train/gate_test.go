package train

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
)

// A gate with confidence on a run that wrote no predictions artifact
// cannot decide: the stage fails (exit 1) naming the artifact, after the
// run is recorded, and opens no pull request.
func TestGateWithoutPredictionsFails(t *testing.T) {
	cfg := strings.Replace(configYAML, "  kpis:\n", "  gate: {split: test}\n  kpis:\n  - {metric: auc, baseline: prior}\n", 1)
	e := setup(t, false, cfg)
	res, err := Run(context.Background(), e.opts())
	if agent.CodeOf(err) != agent.ExitFailed || !strings.Contains(err.Error(), "read the predictions of run "+res.RunID) ||
		!strings.Contains(fixOf(err), "must write output artifact predictions (training.gate.predictions)") {
		t.Fatalf("err = %v (code %d)", err, agent.CodeOf(err))
	}
	if !strings.Contains(e.read("training", records.TrainingLockPath), `"state": "SUCCEEDED"`) {
		t.Errorf("run not recorded")
	}
	if prs, _ := e.forge.ListPullRequests(context.Background(), ""); len(prs) != 0 {
		t.Errorf("PRs = %+v", prs)
	}
}

func fixOf(err error) string {
	var ae *agent.Error
	if errors.As(err, &ae) {
		return ae.Fix
	}
	return ""
}
