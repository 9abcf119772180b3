package changes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/branchml/branchml/agents/config"
)

// Sources are the files that make a component and their hash.
type Sources struct {
	// Hash is "sha256:<hex>" over Files (path, executable bit and content
	// hash of each, in order), the component's build settings and, for Go
	// components, the Go version: equal hashes mean equal builds.
	Hash string
	// Files are the hashed files, slash-separated, relative to the
	// repository root, sorted.
	Files []string
	// ModuleDir is the directory of the go.mod of a Go component (absolute).
	ModuleDir string
	// Package is the component's package pattern relative to ModuleDir,
	// e.g. "./components/train".
	Package string
	// GoVersion is `go env GOVERSION` for Go components.
	GoVersion string
}

type options struct {
	goBin   string
	env     []string
	exclude map[string]bool
}

// Option configures Hash.
type Option func(*options)

// WithGo runs the go command at path (default "go" on PATH).
func WithGo(path string) Option { return func(o *options) { o.goBin = path } }

// WithEnv adds KEY=VALUE entries to the environment of the go command.
func WithEnv(env ...string) Option { return func(o *options) { o.env = append(o.env, env...) } }

// WithExclude leaves the given files out of every hash (absolute paths or
// relative to the repository root): outputs the stage itself writes into
// the workspace, such as its JUnit XML.
func WithExclude(paths ...string) Option {
	return func(o *options) {
		if o.exclude == nil {
			o.exclude = map[string]bool{}
		}
		for _, p := range paths {
			o.exclude[p] = true
		}
	}
}

// Hash returns the sources of component c of the repository at root.
// Kind "go": every file of every package of the component's module that the
// component's packages (c.Path/...) import, tests included (`go list -deps
// -test`), the whole c.Path tree, and go.mod/go.sum; so a change to a shared
// package rebuilds only the components that import it. Kind "dockerfile":
// the c.Path tree and the Dockerfile. Errors name the component and the file.
func Hash(ctx context.Context, root string, c config.Component, opts ...Option) (*Sources, error) {
	o := options{goBin: "go"}
	for _, opt := range opts {
		opt(&o)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, filepath.FromSlash(c.Path))
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("component %s: path %q is not a directory of the repository", c.Name, c.Path)
	}
	files := map[string]bool{}
	if err := addTree(files, root, dir); err != nil {
		return nil, fmt.Errorf("component %s: %w", c.Name, err)
	}
	src := &Sources{}
	settings := fmt.Sprintf("kind=%s\nbase=%s\nbinary=%s\ntest=%q\ndockerfile=%s\n", c.Kind, c.Base, c.Binary, c.Test, c.Dockerfile)
	switch c.Kind {
	case "go":
		mod, err := ModuleDir(root, dir)
		if err != nil {
			return nil, fmt.Errorf("component %s: %w", c.Name, err)
		}
		rel, _ := filepath.Rel(mod, dir)
		src.ModuleDir, src.Package = mod, "./"+filepath.ToSlash(rel)
		if rel == "." {
			src.Package = "."
		}
		for _, f := range []string{"go.mod", "go.sum"} {
			if _, err := os.Stat(filepath.Join(mod, f)); err == nil {
				files[filepath.Join(mod, f)] = true
			}
		}
		dirs, goVersion, err := o.packageDirs(ctx, mod, src.Package)
		if err != nil {
			return nil, fmt.Errorf("component %s: %w", c.Name, err)
		}
		src.GoVersion = goVersion
		settings += "go=" + goVersion + "\n"
		for _, d := range dirs {
			if err := addDir(files, d); err != nil {
				return nil, fmt.Errorf("component %s: %w", c.Name, err)
			}
		}
	case "dockerfile":
		df := c.Dockerfile
		if df == "" {
			df = filepath.ToSlash(filepath.Join(c.Path, "Dockerfile"))
		}
		p := filepath.Join(root, filepath.FromSlash(df))
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("component %s: Dockerfile %q: %w", c.Name, df, err)
		}
		files[p] = true
	default:
		return nil, fmt.Errorf("component %s: kind %q is unknown: use go or dockerfile", c.Name, c.Kind)
	}
	h := sha256.New()
	io.WriteString(h, settings)
	for f := range files {
		rel, err := filepath.Rel(root, f)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // outside the repository (a module above it): not ours to hash
		}
		if o.exclude[f] || o.exclude[rel] || o.exclude[filepath.ToSlash(rel)] {
			continue
		}
		src.Files = append(src.Files, filepath.ToSlash(rel))
	}
	sort.Strings(src.Files)
	for _, rel := range src.Files {
		line, err := fileLine(root, rel)
		if err != nil {
			return nil, fmt.Errorf("component %s: %w", c.Name, err)
		}
		io.WriteString(h, line)
	}
	src.Hash = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return src, nil
}

// fileLine is "<path>\x00<x or ->\x00<sha256 hex>\n".
func fileLine(root, rel string) (string, error) {
	p := filepath.Join(root, filepath.FromSlash(rel))
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", rel, err)
	}
	x := "-"
	if fi.Mode().Perm()&0o111 != 0 {
		x = "x"
	}
	return rel + "\x00" + x + "\x00" + hex.EncodeToString(h.Sum(nil)) + "\n", nil
}

// ModuleDir returns the directory of the nearest go.mod at or above dir, not
// above root.
func ModuleDir(root, dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == root || d == filepath.Dir(d) || !strings.HasPrefix(d, root) {
			return "", fmt.Errorf("no go.mod in %s or above it in the repository: a go component must be in a Go module", dir)
		}
	}
}

// packageDirs lists the directories of the main module's packages that
// pattern/... depends on, tests included, and the Go version.
func (o options) packageDirs(ctx context.Context, mod, pattern string) ([]string, string, error) {
	pat := pattern + "/..."
	if pattern == "." {
		pat = "./..."
	}
	out, err := o.goCmd(ctx, mod, "list", "-deps", "-test", "-e",
		"-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}`, pat)
	if err != nil {
		return nil, "", err
	}
	seen := map[string]bool{}
	var dirs []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !seen[line] {
			seen[line] = true
			dirs = append(dirs, line)
		}
	}
	v, err := o.goCmd(ctx, mod, "env", "GOVERSION")
	if err != nil {
		return nil, "", err
	}
	return dirs, strings.TrimSpace(v), nil
}

func (o options) goCmd(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, o.goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), o.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// skipDir reports directories never hashed: VCS metadata and branchml's own records.
func skipDir(name string) bool {
	return name == ".git" || name == ".branchml" || name == "node_modules"
}

// addTree adds every regular file below dir.
func addTree(files map[string]bool, root, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			files[p] = true
		}
		return nil
	})
}

// addDir adds the regular files directly in dir (a package directory).
func addDir(files map[string]bool, dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			files[filepath.Join(dir, e.Name())] = true
		}
	}
	return nil
}
