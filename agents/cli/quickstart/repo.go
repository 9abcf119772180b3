package quickstart

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Stage branches of the example, created from main. ds1 is where the data
// scientist pushes; every other branch only receives merges.
var exampleBranches = []string{"ds1", "build-components", "kf-pipeline", "training", "deploy-model"}

// mlRepo is the local ML repository: a bare remote (what the forge and the
// Jenkins workspaces see), the quickstart's own working clone (where it
// commits the example and the scripted tuning) and the person's clone
// (WORKDIR/clone, made once on ds1 and never touched again).
type mlRepo struct {
	Remote string // bare repository
	Clone  string // the quickstart's working clone
	Yours  string // the person's clone
}

// ensureRepo creates the bare remote, the clone and the branches on first
// use (syncExample then puts the example onto ds1).
func ensureRepo(ctx context.Context, workdir string) (*mlRepo, error) {
	r := &mlRepo{Remote: filepath.Join(workdir, "remote.git"), Clone: filepath.Join(workdir, ".quickstart", "clone"), Yours: filepath.Join(workdir, "clone")}
	if err := os.MkdirAll(filepath.Dir(r.Clone), 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(r.Remote, "HEAD")); errors.Is(err, os.ErrNotExist) {
		// A half-made repository from an interrupted first run is rebuilt
		// (nothing of anyone's can be in it yet).
		os.RemoveAll(r.Remote)
		os.RemoveAll(r.Clone)
		if err := os.MkdirAll(r.Remote, 0o755); err != nil {
			return nil, err
		}
		if _, err := git(ctx, r.Remote, "init", "--bare", "--initial-branch=main"); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(r.Clone, ".git")); errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(r.Clone)
		if _, err := git(ctx, workdir, "clone", "--quiet", r.Remote, r.Clone); err != nil {
			return nil, err
		}
	}
	heads, err := git(ctx, r.Remote, "for-each-ref", "--format=%(refname:short)", "refs/heads")
	if err != nil {
		return nil, err
	}
	if !strings.Contains("\n"+heads+"\n", "\nmain\n") {
		readme := "# djia30\n\nThe DJIA 30 stock-sentiment ML repository, driven by branchml.\n" +
			"Branches: ds1 (development), build-components, kf-pipeline, training, deploy-model.\n"
		if err := os.WriteFile(filepath.Join(r.Clone, "README.md"), []byte(readme), 0o644); err != nil {
			return nil, err
		}
		for _, args := range [][]string{
			{"checkout", "--quiet", "-B", "main"},
			{"add", "README.md"},
			{"commit", "--quiet", "-m", "Initial commit"},
			{"push", "--quiet", "origin", "main"},
		} {
			if _, err := git(ctx, r.Clone, args...); err != nil {
				return nil, err
			}
		}
	}
	heads, _ = git(ctx, r.Remote, "for-each-ref", "--format=%(refname:short)", "refs/heads")
	for _, b := range exampleBranches {
		if !strings.Contains("\n"+heads+"\n", "\n"+b+"\n") {
			if _, err := git(ctx, r.Clone, "push", "--quiet", "origin", "origin/main:refs/heads/"+b); err != nil {
				if _, err2 := git(ctx, r.Clone, "push", "--quiet", "origin", "main:refs/heads/"+b); err2 != nil {
					return nil, err
				}
			}
		}
	}
	return r, nil
}

// ensureYours makes the person's clone once, on ds1 (tracking origin/ds1);
// an existing one is theirs and is not touched.
func (r *mlRepo) ensureYours(ctx context.Context) error {
	if _, err := os.Stat(r.Yours); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_, err := git(ctx, filepath.Dir(r.Yours), "clone", "--quiet", "--branch", "ds1", r.Remote, r.Yours)
	return err
}

// syncExample copies the example's files onto ds1 and pushes a commit when
// they differ from ds1's tip; beforePush gets the commit's SHA before the
// push (an error from it stops the push).
func (r *mlRepo) syncExample(ctx context.Context, example string, beforePush func(sha string) error) (bool, error) {
	if _, err := git(ctx, r.Clone, "fetch", "--quiet", "origin"); err != nil {
		return false, err
	}
	if _, err := git(ctx, r.Clone, "checkout", "--quiet", "-B", "ds1", "origin/ds1"); err != nil {
		return false, err
	}
	cfg, _ := r.read(ctx, "origin/ds1", "branchml.yaml")
	done := applied(cfg)
	if err := copyTree(example, r.Clone); err != nil {
		return false, err
	}
	if done > 0 {
		// Keep the data scientist's commits: re-apply them over the example.
		p := filepath.Join(r.Clone, "branchml.yaml")
		data, err := os.ReadFile(p)
		if err != nil {
			return false, err
		}
		edited, err := applyChanges(string(data), done)
		if err != nil {
			return false, err
		}
		if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
			return false, err
		}
	}
	if _, err := git(ctx, r.Clone, "add", "-A"); err != nil {
		return false, err
	}
	status, err := git(ctx, r.Clone, "status", "--porcelain")
	if err != nil || status == "" {
		return false, err
	}
	if _, err := git(ctx, r.Clone, "commit", "--quiet", "-m", "DJIA 30 stock-sentiment model: components, pipeline, config"); err != nil {
		return false, err
	}
	sha, err := git(ctx, r.Clone, "rev-parse", "HEAD")
	if err != nil {
		return false, err
	}
	if err := beforePush(strings.TrimSpace(sha)); err != nil {
		return false, err
	}
	_, err = git(ctx, r.Clone, "push", "--quiet", "origin", "ds1")
	return true, err
}

// workspace checks out commit of branch into a Jenkins-like workspace.
func (r *mlRepo) workspace(ctx context.Context, dir, branch, commit string) error {
	if _, err := os.Stat(filepath.Join(dir, ".git")); errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(dir)
		if _, err := git(ctx, filepath.Dir(dir), "clone", "--quiet", r.Remote, dir); err != nil {
			return err
		}
	}
	if _, err := git(ctx, dir, "fetch", "--quiet", "origin"); err != nil {
		return err
	}
	if _, err := git(ctx, dir, "checkout", "--quiet", "-f", "-B", branch, commit); err != nil {
		return err
	}
	// Tracking origin, so that 'git pull' works in it by hand.
	if _, err := git(ctx, dir, "branch", "--quiet", "--set-upstream-to=origin/"+branch, branch); err != nil {
		return err
	}
	_, err := git(ctx, dir, "clean", "--quiet", "-fd")
	return err
}

// show returns a file at ref of the remote ("" and no error when absent).
func (r *mlRepo) show(ctx context.Context, ref, path string) (string, error) {
	out, err := git(ctx, r.Remote, "show", ref+":"+path)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "exists on disk, but not in") {
			return "", nil
		}
		return "", err
	}
	return out, nil
}

// copyTree copies the example into dst, skipping build output and local state.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			switch d.Name() {
			case ".work", ".git", "bin":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if old, err := os.ReadFile(target); err == nil && string(old) == string(data) {
			return nil
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// tip returns the commit branch points at on the remote.
func (r *mlRepo) tip(ctx context.Context, branch string) (string, error) {
	return git(ctx, r.Remote, "rev-parse", "refs/heads/"+branch)
}
