package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/internal/agent"
)

// preflightStore is a storage backend whose preflight fails (the trident
// backend without its snapshot class, say).
type preflightStore struct {
	storage.Backend
	calls int
}

func (p *preflightStore) Preflight(context.Context) error {
	p.calls++
	return fmt.Errorf("%w: VolumeSnapshotClass \"trident-snapshotclass\" does not exist", storage.ErrPreflight)
}

// TestPreflightBeforeProvisioning (issue 19): the storage preflight runs
// before any volume is provisioned or run started, and in a plan; a failed
// one is a configuration error (exit 2) that created nothing.
func TestPreflightBeforeProvisioning(t *testing.T) {
	for _, dry := range []bool{false, true} {
		t.Run(fmt.Sprintf("dry=%v", dry), func(t *testing.T) {
			e := setup(t, false, configYAML)
			o := e.opts()
			ps := &preflightStore{Backend: e.store}
			o.Storage, o.DryRun = ps, dry
			if dry {
				o.Pipelines = nil
			}
			_, err := Run(context.Background(), o)
			var ae *agent.Error
			if !errors.As(err, &ae) || ae.Code != agent.ExitUsage || !strings.Contains(err.Error(), `VolumeSnapshotClass "trident-snapshotclass" does not exist`) || ps.calls != 1 {
				t.Fatalf("err = %v (%d preflights)", err, ps.calls)
			}
			runs, _ := os.ReadDir(filepath.Join(e.dir, "state", "runs"))
			vols, _ := os.ReadDir(filepath.Join(e.dir, "state", "volumes"))
			if len(runs)+len(vols) != 0 {
				t.Errorf("created runs %v volumes %v despite the failed preflight", runs, vols)
			}
		})
	}
}
