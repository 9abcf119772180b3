package gitremote

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/internal/retry"
)

const zeroSHA = "0000000000000000000000000000000000000000"

// errMoved marks an attempt whose push lost the race.
var errMoved = errors.New("branch moved")

func checkWriteBack(wb forge.WriteBack) error {
	if err := checkRef("branch", wb.Branch); err != nil {
		return err
	}
	if wb.From != "" {
		if err := checkRef("from ref", wb.From); err != nil {
			return err
		}
	}
	if strings.TrimSpace(wb.Message) == "" {
		return fmt.Errorf("write back to %s: empty commit message; use \"branchml <stage>: <what> for <source commit>\"", wb.Branch)
	}
	for p := range wb.Files {
		if err := checkPath(p); err != nil {
			return fmt.Errorf("write back to %s: %w", wb.Branch, err)
		}
	}
	return nil
}

// WriteBack commits wb.Files onto wb.Branch and pushes; see forge.Forge.
// A push that loses a race is re-applied on the new tip, at most the
// configured attempts, then a *forge.ConflictError is returned. A missing branch
// wraps forge.ErrNotFound unless wb.From names the ref to create it from.
func (f *Forge) WriteBack(ctx context.Context, wb forge.WriteBack) (string, error) {
	if err := checkWriteBack(wb); err != nil {
		return "", err
	}
	w, err := f.newWorkArea(ctx)
	if err != nil {
		return "", err
	}
	defer w.close()
	var sha string
	err = f.retryMoved(ctx, wb.Branch, func(ctx context.Context, attempt int) error {
		var err error
		if sha, err = f.writeOnce(ctx, w, wb, attempt); errors.Is(err, errMoved) {
			f.log.WithField("branch", wb.Branch).WithField("attempt", attempt).Info("branch moved during write-back; re-applying on the new tip")
		}
		return err
	})
	if re, ok := err.(*retry.Error); ok {
		return "", fmt.Errorf("write back to %s: %w (after %v)", wb.Branch, re.Context, re.Err)
	}
	if err != nil {
		return "", err
	}
	return sha, nil
}

func (f *Forge) writeOnce(ctx context.Context, w *workArea, wb forge.WriteBack, attempt int) (string, error) {
	if err := w.fetch(ctx); err != nil {
		return "", err
	}
	tip, err := w.resolve(ctx, "refs/remotes/origin/"+wb.Branch)
	if err != nil {
		return "", err
	}
	parent := tip
	if tip == "" {
		if wb.From == "" {
			return "", fmt.Errorf("write back: branch %s does not exist in %s (set From to create it): %w", wb.Branch, f.remote, forge.ErrNotFound)
		}
		if parent, err = w.branchOrCommit(ctx, wb.From); err != nil {
			return "", err
		}
		if parent == "" {
			return "", fmt.Errorf("write back: ref %s to create branch %s from does not exist in %s: %w", wb.From, wb.Branch, f.remote, forge.ErrNotFound)
		}
	}
	tree, changed, err := w.apply(ctx, parent, wb.Files)
	if err != nil {
		return "", fmt.Errorf("write back to %s: %w", wb.Branch, err)
	}
	commit := parent
	if changed {
		msg := strings.TrimRight(wb.Message, "\n") + "\n"
		if commit, err = w.git(ctx, []byte(msg), "commit-tree", "--no-gpg-sign", tree, "-p", parent, "-F", "-"); err != nil {
			return "", fmt.Errorf("write back to %s: %w", wb.Branch, err)
		}
	} else if tip != "" {
		return tip, nil
	}
	if f.beforePush != nil {
		f.beforePush(attempt)
	}
	if err := f.push(ctx, w, commit, wb.Branch, tip); err != nil {
		return "", err
	}
	return commit, nil
}

// push updates branch on the remote from old ("" = must not exist) to
// commit. When the push fails because the branch moved, the error wraps
// errMoved.
func (f *Forge) push(ctx context.Context, w *workArea, commit, branch, old string) error {
	ref := "refs/heads/" + branch
	_, perr := w.git(ctx, nil, "push", "-q", "--no-verify", "--force-with-lease="+ref+":"+old, f.remote, commit+":"+ref)
	if perr == nil {
		return nil
	}
	now, err := f.remoteTip(ctx, branch)
	if err != nil {
		return fmt.Errorf("push to branch %s of %s: %w", branch, f.remote, perr)
	}
	if now != old {
		return fmt.Errorf("push to branch %s: tip moved from %q to %q: %w", branch, old, now, errMoved)
	}
	return fmt.Errorf("push to branch %s of %s: %w", branch, f.remote, perr)
}

// remoteTip returns the commit branch points at on the remote ("" = none).
func (f *Forge) remoteTip(ctx context.Context, branch string) (string, error) {
	out, err := f.git.run(ctx, "", nil, nil, "ls-remote", f.remote, "refs/heads/"+branch)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		sha, ref, ok := strings.Cut(line, "\t")
		if ok && ref == "refs/heads/"+branch {
			return sha, nil
		}
	}
	return "", nil
}

// apply writes files onto parent's tree in the private index and returns the
// new tree and whether it differs from parent's.
func (w *workArea) apply(ctx context.Context, parent string, files map[string][]byte) (string, bool, error) {
	if _, err := w.git(ctx, nil, "read-tree", parent); err != nil {
		return "", false, err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	modes, err := w.modes(ctx, parent, paths)
	if err != nil {
		return "", false, err
	}
	var writes []string
	blobDir := filepath.Join(w.dir, "blobs")
	if err := os.MkdirAll(blobDir, 0o700); err != nil {
		return "", false, err
	}
	var blobFiles []string
	for _, p := range paths {
		if files[p] == nil {
			continue
		}
		name := filepath.Join(blobDir, strconv.Itoa(len(blobFiles)))
		if err := os.WriteFile(name, files[p], 0o600); err != nil {
			return "", false, err
		}
		blobFiles = append(blobFiles, name)
		writes = append(writes, p)
	}
	shas := map[string]string{}
	if len(blobFiles) > 0 {
		out, err := w.git(ctx, []byte(strings.Join(blobFiles, "\n")+"\n"), "hash-object", "-w", "--no-filters", "--stdin-paths")
		if err != nil {
			return "", false, err
		}
		lines := strings.Split(out, "\n")
		if len(lines) != len(writes) {
			return "", false, fmt.Errorf("git hash-object: %d answers for %d files", len(lines), len(writes))
		}
		for i, p := range writes {
			shas[p] = lines[i]
		}
	}
	var info strings.Builder
	for _, p := range paths {
		if files[p] == nil {
			fmt.Fprintf(&info, "0 %s\t%s\n", zeroSHA, p)
			continue
		}
		mode := "100644"
		if modes[p] == "100755" {
			mode = "100755"
		}
		fmt.Fprintf(&info, "%s %s\t%s\n", mode, shas[p], p)
	}
	if _, err := w.git(ctx, []byte(info.String()), "update-index", "--index-info"); err != nil {
		return "", false, err
	}
	tree, err := w.git(ctx, nil, "write-tree")
	if err != nil {
		return "", false, err
	}
	parentTree, err := w.git(ctx, nil, "rev-parse", parent+"^{tree}")
	if err != nil {
		return "", false, err
	}
	return tree, tree != parentTree, nil
}

// modes returns the modes of those of paths that exist in commit.
func (w *workArea) modes(ctx context.Context, commit string, paths []string) (map[string]string, error) {
	modes := map[string]string{}
	if len(paths) == 0 {
		return modes, nil
	}
	out, err := w.git(ctx, nil, append([]string{"ls-tree", "-z", "--full-tree", commit, "--"}, paths...)...)
	if err != nil {
		return nil, err
	}
	for _, rec := range strings.Split(out, "\x00") {
		meta, p, ok := strings.Cut(rec, "\t")
		if !ok {
			continue
		}
		if f := strings.Fields(meta); len(f) == 3 {
			modes[p] = f[0]
		}
	}
	return modes, nil
}
