package gitremote

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// workArea is a private temporary bare repository with the remote's
// branches fetched as refs/remotes/origin/* and a private index.
type workArea struct {
	f     *Forge
	dir   string
	index string
}

func (f *Forge) newWorkArea(ctx context.Context) (*workArea, error) {
	dir, err := os.MkdirTemp(f.tempDir, "branchml-forge-")
	if err != nil {
		return nil, fmt.Errorf("create work area: %w", err)
	}
	w := &workArea{f: f, dir: dir, index: filepath.Join(dir, "branchml.index")}
	if _, err := f.git.run(ctx, "", nil, nil, "init", "--bare", "-q", dir); err != nil {
		w.close()
		return nil, err
	}
	if f.local != "" {
		// Borrow the remote's objects instead of copying them.
		alt := filepath.Join(f.local, "objects") + "\n"
		if err := os.WriteFile(filepath.Join(dir, "objects", "info", "alternates"), []byte(alt), 0o644); err != nil {
			w.close()
			return nil, fmt.Errorf("create work area: %w", err)
		}
	}
	return w, nil
}

func (w *workArea) close() { os.RemoveAll(w.dir) }

// branches is a git directory that holds the remote's branches and the
// prefix of their refs in it: the remote itself when it is on this machine
// (refs/heads/), else a new work area that fetched it
// (refs/remotes/origin/). done removes what it made.
func (f *Forge) branches(ctx context.Context) (gitDir, branchPrefix string, done func(), err error) {
	if f.local != "" {
		return f.local, "refs/heads/", func() {}, nil
	}
	w, err := f.newWorkArea(ctx)
	if err != nil {
		return "", "", nil, err
	}
	if err := w.fetch(ctx); err != nil {
		w.close()
		return "", "", nil, err
	}
	return w.dir, "refs/remotes/origin/", w.close, nil
}

func (w *workArea) git(ctx context.Context, stdin []byte, args ...string) (string, error) {
	return w.f.git.run(ctx, w.dir, stdin, []string{"GIT_INDEX_FILE=" + w.index}, args...)
}

// fetch mirrors every branch of the remote into refs/remotes/origin/*.
func (w *workArea) fetch(ctx context.Context) error {
	_, err := w.git(ctx, nil, "fetch", "-q", "--no-tags", "--prune", "--no-write-fetch-head", w.f.remote, "+refs/heads/*:refs/remotes/origin/*")
	if err != nil {
		return fmt.Errorf("fetch %s: %w", w.f.remote, err)
	}
	return nil
}

// resolve returns the commit rev names, or "" when it names none.
func (w *workArea) resolve(ctx context.Context, rev string) (string, error) {
	return resolveIn(ctx, w.f.git, w.dir, rev)
}

func resolveIn(ctx context.Context, g *git, gitDir, rev string) (string, error) {
	out, err := g.run(ctx, gitDir, nil, nil, "rev-parse", "--verify", "-q", "--end-of-options", rev+"^{commit}")
	if err != nil {
		if exitCode(err) == 1 {
			return "", nil
		}
		return "", err
	}
	return out, nil
}

// branchOrCommit resolves ref as a fetched branch first, then as a commit.
func (w *workArea) branchOrCommit(ctx context.Context, ref string) (string, error) {
	c, err := w.resolve(ctx, "refs/remotes/origin/"+ref)
	if err != nil || c != "" {
		return c, err
	}
	return w.resolve(ctx, ref)
}

// object is one answer of git cat-file --batch.
type object struct {
	typ     string // "blob", "tree", … or "" when missing
	content []byte
}

// catFile asks git cat-file --batch for each of specs ("<rev>:<path>").
func catFile(ctx context.Context, g *git, gitDir string, specs ...string) ([]object, error) {
	in := strings.Join(specs, "\n") + "\n"
	out, err := g.runRaw(ctx, gitDir, []byte(in), nil, "cat-file", "--batch")
	if err != nil {
		return nil, err
	}
	objs := make([]object, 0, len(specs))
	for range specs {
		nl := bytes.IndexByte(out, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("git cat-file: truncated answer")
		}
		header := string(out[:nl])
		out = out[nl+1:]
		if strings.HasSuffix(header, " missing") || strings.HasSuffix(header, " ambiguous") {
			objs = append(objs, object{})
			continue
		}
		f := strings.Fields(header)
		if len(f) != 3 {
			return nil, fmt.Errorf("git cat-file: unexpected header %q", header)
		}
		size, err := strconv.Atoi(f[2])
		if err != nil || size > len(out) {
			return nil, fmt.Errorf("git cat-file: unexpected header %q", header)
		}
		objs = append(objs, object{typ: f[1], content: out[:size:size]})
		out = out[size:]
		if len(out) > 0 && out[0] == '\n' {
			out = out[1:]
		}
	}
	return objs, nil
}
