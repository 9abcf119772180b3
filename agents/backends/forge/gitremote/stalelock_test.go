package gitremote

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge"
)

// A git killed while it held a branch's ref lock leaves the lock file, and
// every retry fails the same way: the error names that one file and says
// to remove only it, not the repository.
func TestStaleRefLockIsNamed(t *testing.T) {
	ctx := context.Background()
	remote := filepath.Join(t.TempDir(), "r.git")
	f, err := Init(ctx, remote, map[string][]byte{"README.md": []byte("x\n")}, []string{"main", "training"})
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(remote, "refs", "heads", "training.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wb := forge.WriteBack{Branch: "training", Files: map[string][]byte{"a.json": []byte("{}\n")}, Message: "branchml train: test"}
	_, err = f.WriteBack(ctx, wb)
	if err == nil || !strings.Contains(err.Error(), "remove that one file, "+lock+", and run again; nothing else needs removing") {
		t.Fatalf("WriteBack with a stale ref lock: %v", err)
	}
	os.Remove(lock)
	if _, err := f.WriteBack(ctx, wb); err != nil {
		t.Fatalf("after removing the lock: %v", err)
	}
}
