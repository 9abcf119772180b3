package gitremote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// StatusRecord is one commit status in <meta>/statuses/<sha>.json.
type StatusRecord struct {
	forge.Status
	UpdatedAt time.Time `json:"updatedAt"`
}

// validStates are GitHub's commit status states.
var validStates = map[string]bool{"pending": true, "success": true, "failure": true, "error": true}

func (f *Forge) statusPath(sha string) string {
	return filepath.Join(f.meta, "statuses", sha+".json")
}

// SetStatus records st on commit (a full SHA; for a local remote also any
// commit-ish, resolved to its SHA), replacing the status of the same context.
func (f *Forge) SetStatus(ctx context.Context, commit string, st forge.Status) error {
	if !validStates[st.State] {
		return fmt.Errorf("status %q on %s: state must be pending, success, failure or error", st.State, commit)
	}
	if st.Context == "" {
		return fmt.Errorf("status on %s: empty context; use e.g. branchml/build", commit)
	}
	if err := checkRef("commit", commit); err != nil {
		return err
	}
	sha := commit
	if f.local != "" {
		resolved, err := resolveIn(ctx, f.git, f.local, commit)
		if err != nil {
			return err
		}
		if resolved == "" {
			return fmt.Errorf("status on %s: no such commit in %s: %w", commit, f.remote, forge.ErrNotFound)
		}
		sha = resolved
	} else if !isHex(commit) {
		return fmt.Errorf("status on %q: give the full commit SHA", commit)
	}
	unlock, err := f.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	list, err := f.statuses(sha)
	if err != nil {
		return err
	}
	rec := StatusRecord{Status: st, UpdatedAt: now()}
	replaced := false
	for i := range list {
		if list[i].Context == st.Context {
			list[i], replaced = rec, true
		}
	}
	if !replaced {
		list = append(list, rec)
	}
	if err := atomicfile.WriteJSON(f.statusPath(sha), list); err != nil {
		return fmt.Errorf("status %s on %s: %w", st.Context, sha, err)
	}
	return nil
}

// Statuses returns the latest status per context of commit (a full SHA), in
// the order the contexts were first set.
func (f *Forge) Statuses(ctx context.Context, commit string) ([]StatusRecord, error) {
	return f.statuses(commit)
}

func (f *Forge) statuses(sha string) ([]StatusRecord, error) {
	var list []StatusRecord
	if err := readJSON(f.statusPath(sha), &list); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return list, nil
}

func isHex(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
