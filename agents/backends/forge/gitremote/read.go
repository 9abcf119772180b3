package gitremote

import (
	"context"
	"fmt"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/config"
)

// ReadFile returns the content of path at ref (a branch, else any commit-ish
// such as a SHA). It wraps forge.ErrNotFound when the ref or file is missing;
// a directory is an error.
func (f *Forge) ReadFile(ctx context.Context, ref, path string) ([]byte, error) {
	if err := checkRef("ref", ref); err != nil {
		return nil, err
	}
	if err := checkPath(path); err != nil {
		return nil, err
	}
	gitDir, branchPrefix, done, err := f.branches(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	objs, err := catFile(ctx, f.git, gitDir, branchPrefix+ref+":"+path, ref+":"+path)
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", path, ref, err)
	}
	for _, o := range objs {
		switch o.typ {
		case "":
			continue
		case "blob":
			if len(o.content) > config.MaxSpecBytes {
				return nil, &config.TooLargeError{Name: ref + ":" + path, Limit: config.MaxSpecBytes}
			}
			return o.content, nil
		default:
			return nil, fmt.Errorf("read %s at %s: is a %s, not a file", path, ref, o.typ)
		}
	}
	return nil, fmt.Errorf("read %s at %s in %s: %w", path, ref, f.remote, forge.ErrNotFound)
}
