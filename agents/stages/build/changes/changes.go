package changes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/branchml/branchml/agents/config"
)

// Sources are the files that make a component and their hash.
type Sources struct {
	// Hash is "sha256:<hex>" over Files (path, executable bit and content
	// hash of each, in order), the component's build settings and, for Go
	// components, the Go version and target platforms: equal hashes mean
	// equal builds and equal tests.
	Hash string
	// Files are the hashed files, slash-separated, relative to the
	// repository root, sorted.
	Files []string
	// ModuleDir is the directory of the go.mod of a Go component (absolute).
	ModuleDir string
	// Package is the component's package pattern relative to ModuleDir,
	// e.g. "./components/train".
	Package string
	// Packages are the import paths of the main module's packages that the
	// component's binaries are built from (the component's packages and
	// every package of the module in their dependency closure, tests not
	// counted), sorted: what the build stage tests.
	Packages []string
	// GoVersion is `go env GOVERSION` for Go components.
	GoVersion string
	// Platforms are the "os/arch" targets the Go files were listed for.
	Platforms []string
}

type options struct {
	goBin     string
	env       []string
	exclude   map[string]bool
	platforms []string
}

// Option configures Hash.
type Option func(*options)

// WithGo runs the go command at path (default "go" on PATH).
func WithGo(path string) Option { return func(o *options) { o.goBin = path } }

// WithEnv adds KEY=VALUE entries to the environment of the go command.
func WithEnv(env ...string) Option { return func(o *options) { o.env = append(o.env, env...) } }

// WithPlatforms lists the Go files for each "os/arch" target (default:
// linux and the architecture of this machine); a file only one target
// compiles (x_arm64.go) then counts. The platforms are part of the hash.
func WithPlatforms(platforms ...string) Option {
	return func(o *options) { o.platforms = append([]string(nil), platforms...) }
}

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

// DefaultPlatform is the target of Go components without platforms:
// linux and the architecture of this machine.
func DefaultPlatform() string { return "linux/" + runtime.GOARCH }

// Hash returns the sources of component c of the repository at root.
//
// Kind "go": exactly the files `go list -deps -test` says the build and the
// tests of the component's packages (c.Path/...) read, for each target
// platform, in every package of the repository (the main module, and
// modules replaced by a directory of the repository): Go, assembly and
// other compiled files, .syso objects, embedded files (//go:embed, in
// subdirectories too), test files and the testdata tree of each package
// with tests; plus go.mod, go.sum and go.work. A file no build reads (a
// README beside main.go) does not count; a change to a shared package
// changes only the components that import it. Kind "dockerfile": the
// c.Path tree and the Dockerfile. Errors name the component and the file.
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
		for _, f := range []string{"go.mod", "go.sum", "go.work", "go.work.sum"} {
			if _, err := os.Stat(filepath.Join(mod, f)); err == nil {
				files[filepath.Join(mod, f)] = true
			}
		}
		platforms := o.platforms
		if len(platforms) == 0 {
			platforms = []string{DefaultPlatform()}
		}
		src.Platforms = platforms
		pkgs := map[string]bool{}
		for _, pl := range platforms {
			if err := o.listGo(ctx, mod, src.Package, pl, files, pkgs); err != nil {
				return nil, fmt.Errorf("component %s: %w", c.Name, err)
			}
		}
		for p := range pkgs {
			src.Packages = append(src.Packages, p)
		}
		sort.Strings(src.Packages)
		if src.GoVersion, err = o.goVersion(ctx, mod); err != nil {
			return nil, fmt.Errorf("component %s: %w", c.Name, err)
		}
		settings += "go=" + src.GoVersion + "\n"
		settings += "platforms=" + strings.Join(platforms, ",") + "\n"
	case "dockerfile":
		if err := addTree(files, root, dir); err != nil {
			return nil, fmt.Errorf("component %s: %w", c.Name, err)
		}
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

// listed is the part of `go list -json` output Hash reads.
type listed struct {
	ImportPath string
	Dir        string
	ForTest    string
	Match      []string
	Imports    []string
	Module     *struct {
		Main    bool
		Replace *struct{ Version string }
	}
	GoFiles, CgoFiles, CFiles, CXXFiles, MFiles, HFiles, FFiles, SFiles []string
	SwigFiles, SwigCXXFiles, SysoFiles, EmbedFiles                      []string
	TestGoFiles, XTestGoFiles, TestEmbedFiles, XTestEmbedFiles          []string
}

// ours reports whether the package's files belong to the repository: the
// main module's, or a module replaced by a local directory.
func (p *listed) ours() bool {
	return p.Module != nil && (p.Module.Main || (p.Module.Replace != nil && p.Module.Replace.Version == ""))
}

// listFields are the fields asked of go list (see listed).
const listFields = "ImportPath,Dir,ForTest,Match,Imports,Module,GoFiles,CgoFiles,CFiles,CXXFiles,MFiles,HFiles,FFiles,SFiles," +
	"SwigFiles,SwigCXXFiles,SysoFiles,EmbedFiles,TestGoFiles,XTestGoFiles,TestEmbedFiles,XTestEmbedFiles"

// listGo adds to files what the build and tests of pattern/... read for
// platform ("os/arch"), and to pkgs the main module's packages in the
// dependency closure of the matched packages (tests not counted).
func (o options) listGo(ctx context.Context, mod, pattern, platform string, files, pkgs map[string]bool) error {
	goos, goarch, ok := strings.Cut(platform, "/")
	if !ok || goos == "" || goarch == "" {
		return fmt.Errorf("platform %q: want os/arch, e.g. linux/arm64", platform)
	}
	pat := pattern + "/..."
	if pattern == "." {
		pat = "./..."
	}
	out, err := o.goCmd(ctx, mod, []string{"GOOS=" + goos, "GOARCH=" + goarch}, "list", "-deps", "-test", "-e", "-json="+listFields, pat)
	if err != nil {
		return err
	}
	byPath := map[string]*listed{}
	var roots []string
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		p := &listed{}
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("go list output: %w", err)
		}
		if !p.ours() || p.Dir == "" {
			continue
		}
		for _, group := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.CXXFiles, p.MFiles, p.HFiles, p.FFiles, p.SFiles,
			p.SwigFiles, p.SwigCXXFiles, p.SysoFiles, p.EmbedFiles, p.TestGoFiles, p.XTestGoFiles, p.TestEmbedFiles, p.XTestEmbedFiles} {
			for _, f := range group {
				if filepath.IsAbs(f) {
					continue // generated by go test (the test main in the build cache)
				}
				files[filepath.Join(p.Dir, filepath.FromSlash(f))] = true
			}
		}
		if len(p.TestGoFiles)+len(p.XTestGoFiles) > 0 {
			// Tests read their testdata at run time.
			if err := addTree(files, mod, filepath.Join(p.Dir, "testdata")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if p.ForTest == "" && !strings.HasSuffix(p.ImportPath, ".test") {
			byPath[p.ImportPath] = p
			if len(p.Match) > 0 {
				roots = append(roots, p.ImportPath)
			}
		}
	}
	// The closure of the matched packages through their (non-test) imports.
	for len(roots) > 0 {
		ip := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		p, ok := byPath[ip]
		if !ok || pkgs[ip] || !p.Module.Main {
			continue
		}
		pkgs[ip] = true
		roots = append(roots, p.Imports...)
	}
	return nil
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

// goVersions caches `go env GOVERSION` by go command and module directory
// (a go.mod's toolchain line can select another toolchain).
var goVersions sync.Map

func (o options) goVersion(ctx context.Context, mod string) (string, error) {
	key := o.goBin + "\x00" + mod + "\x00" + strings.Join(o.env, "\x00")
	if v, ok := goVersions.Load(key); ok {
		return v.(string), nil
	}
	v, err := o.goCmd(ctx, mod, nil, "env", "GOVERSION")
	if err != nil {
		return "", err
	}
	v = strings.TrimSpace(v)
	goVersions.Store(key, v)
	return v, nil
}

func (o options) goCmd(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, o.goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(append(os.Environ(), "CGO_ENABLED=0"), env...), o.env...)
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
