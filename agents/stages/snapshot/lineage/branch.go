package lineage

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/records"
)

// RecordError is a lineage record file that is not a valid record.
type RecordError struct {
	// Where names it: "<path> on branch <branch>", or a file path.
	Where string
	Err   error
}

func (e *RecordError) Error() string { return e.Where + ": " + e.Err.Error() }
func (e *RecordError) Unwrap() error { return e.Err }

// LoadBranch reads every record in records.LineageDir of branch through
// the forge (which must list directories: forge.DirLister), sorted as
// LoadDir sorts. A file that is not a valid record is a *RecordError
// naming it.
func LoadBranch(ctx context.Context, f forge.Forge, branch string) ([]*Record, error) {
	dl, ok := f.(forge.DirLister)
	if !ok {
		return nil, fmt.Errorf("this forge cannot list %s on %s: pass a checkout of the branch (--workspace)", records.LineageDir, branch)
	}
	names, err := dl.ListDir(ctx, branch, records.LineageDir)
	if err != nil {
		return nil, fmt.Errorf("list %s on %s: %w", records.LineageDir, branch, err)
	}
	var out []*Record
	for _, n := range names {
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		p := path.Join(records.LineageDir, n)
		raw, err := f.ReadFile(ctx, branch, p)
		if err != nil {
			return nil, fmt.Errorf("read %s on %s: %w", p, branch, err)
		}
		r, err := Parse(raw)
		if err != nil {
			return nil, &RecordError{Where: p + " on branch " + branch, Err: err}
		}
		out = append(out, r)
	}
	sortRecords(out)
	return out, nil
}

// ForModel is the newest record of model version v in recs (sorted as
// LoadBranch sorts), or nil.
func ForModel(recs []*Record, model string, v int64) *Record {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Model.Version == v && (recs[i].Model.Name == "" || model == "" || recs[i].Model.Name == model) {
			return recs[i]
		}
	}
	return nil
}
