package gitremote

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
)

// InitMessage is the message of the first commit Init creates.
const InitMessage = "branchml: initial content"

// Branch is a branch of the remote and the commit it points at.
type Branch struct {
	Name   string `json:"name"`
	Commit string `json:"commit"`
}

// Init makes dir a bare repository whose branches all point at one first
// commit holding files (author branchml), and returns its forge. The first
// of branches becomes HEAD. On an existing repository it creates only the
// missing branches, from the first branch's tip (which must exist), and
// leaves content alone: running it twice changes nothing.
func Init(ctx context.Context, dir string, files map[string][]byte, branches []string, opts ...Option) (*Forge, error) {
	if len(branches) == 0 {
		return nil, fmt.Errorf("init %s: no branches given; give at least one, e.g. main", dir)
	}
	for _, b := range branches {
		if err := checkRef("branch", b); err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
	}
	for p := range files {
		if err := checkPath(p); err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
	}
	if !isGitDir(dir) {
		if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
			return nil, fmt.Errorf("init %s: the directory exists, is not empty and is not a git repository; choose another", dir)
		}
		g := &git{bin: "git"}
		probe := &Forge{git: g}
		for _, o := range opts {
			o(probe)
		}
		if _, err := probe.git.run(ctx, "", nil, nil, "init", "--bare", "-q", "--initial-branch="+branches[0], dir); err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
	}
	f, err := New(dir, opts...)
	if err != nil {
		return nil, err
	}
	w, err := f.newWorkArea(ctx)
	if err != nil {
		return nil, err
	}
	defer w.close()
	first, err := f.remoteTip(ctx, branches[0])
	if err != nil {
		return nil, err
	}
	if first == "" {
		if first, err = w.rootCommit(ctx, files); err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
	}
	have, err := f.Branches(ctx)
	if err != nil {
		return nil, err
	}
	exists := map[string]bool{}
	for _, b := range have {
		exists[b.Name] = true
	}
	var refspecs, leases []string
	for _, b := range branches {
		if !exists[b] {
			refspecs = append(refspecs, first+":refs/heads/"+b)
			leases = append(leases, "--force-with-lease=refs/heads/"+b+":")
		}
	}
	if len(refspecs) > 0 {
		args := append(append([]string{"push", "-q", "--no-verify", "--atomic"}, leases...), f.remote)
		if _, err := w.git(ctx, nil, append(args, refspecs...)...); err != nil {
			return nil, fmt.Errorf("init %s: create branches: %w", dir, err)
		}
	}
	return f, nil
}

// rootCommit writes files as a parentless commit in the work area.
func (w *workArea) rootCommit(ctx context.Context, files map[string][]byte) (string, error) {
	os.Remove(w.index)
	if _, err := w.git(ctx, nil, "read-tree", "--empty"); err != nil {
		return "", err
	}
	var info strings.Builder
	paths := make([]string, 0, len(files))
	for p, c := range files {
		if c != nil {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		sha, err := w.git(ctx, files[p], "hash-object", "-w", "--no-filters", "--stdin")
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&info, "100644 %s\t%s\n", sha, p)
	}
	if info.Len() > 0 {
		if _, err := w.git(ctx, []byte(info.String()), "update-index", "--index-info"); err != nil {
			return "", err
		}
	}
	tree, err := w.git(ctx, nil, "write-tree")
	if err != nil {
		return "", err
	}
	return w.git(ctx, []byte(InitMessage+"\n"), "commit-tree", "--no-gpg-sign", tree, "-F", "-")
}

// Branches returns the remote's branches and their tips, by name.
func (f *Forge) Branches(ctx context.Context) ([]Branch, error) {
	out, err := f.git.run(ctx, "", nil, nil, "ls-remote", "--heads", f.remote)
	if err != nil {
		return nil, fmt.Errorf("list branches of %s: %w", f.remote, err)
	}
	var bs []Branch
	for _, line := range strings.Split(out, "\n") {
		sha, ref, ok := strings.Cut(line, "\t")
		if name, isHead := strings.CutPrefix(ref, "refs/heads/"); ok && isHead {
			bs = append(bs, Branch{Name: name, Commit: sha})
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].Name < bs[j].Name })
	return bs, nil
}
