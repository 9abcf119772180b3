package storagefactory

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/storage/local"
	"github.com/branchml/branchml/agents/backends/storage/trident"
	"github.com/branchml/branchml/agents/config"
)

func TestNew(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{Dir: dir}
	cfg.Backends.StateDir = "state"
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := b.(*local.Backend); !ok || l.Root() != filepath.Join(dir, "state") {
		t.Fatalf("backend = %#v", b)
	}
	cfg.Backends.Storage.Type = "ceph"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), `backends.storage.type "ceph" is not a storage backend`) {
		t.Fatalf("unknown type: %v", err)
	}
	cfg.Backends.Storage = config.StorageBackend{Type: "trident", Kubeconfig: "missing-kubeconfig"}
	cfg.Snapshot.Class = "trident-snapshotclass"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "kubeconfig") {
		t.Fatalf("trident without a kubeconfig: %v", err)
	}
	_ = trident.Driver
}
