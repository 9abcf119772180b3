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
	cache     *ListCache
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
// Kind "go": exactly the files `go list -deps -test` says the build of the
// component's packages (c.Path/...) and the tests of every main-module
// package they are built from read, for each target platform, in every
// package of the repository (the main module, and modules replaced by a
// directory of the repository): Go, assembly and other compiled files,
// .syso objects, embedded files (//go:embed, in subdirectories too), test
// files, the packages only tests import, and the testdata tree of each
// tested package; plus go.mod, go.sum and go.work. (The module is listed
// whole, `go list -deps -test ./...`, once per Hash, or once per build
// with WithListCache.) A file no build reads (a
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
			if err := o.listGo(ctx, mod, dir, pl, files, pkgs); err != nil {
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

// buildFiles are the files compiling the package reads; testFiles those its
// tests add.
func (p *listed) buildFiles() [][]string {
	return [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.CXXFiles, p.MFiles, p.HFiles, p.FFiles, p.SFiles,
		p.SwigFiles, p.SwigCXXFiles, p.SysoFiles, p.EmbedFiles}
}

func (p *listed) testFiles() [][]string {
	return [][]string{p.TestGoFiles, p.XTestGoFiles, p.TestEmbedFiles, p.XTestEmbedFiles}
}

// listFields are the fields asked of go list (see listed).
const listFields = "ImportPath,Dir,ForTest,Imports,Module,GoFiles,CgoFiles,CFiles,CXXFiles,MFiles,HFiles,FFiles,SFiles," +
	"SwigFiles,SwigCXXFiles,SysoFiles,EmbedFiles,TestGoFiles,XTestGoFiles,TestEmbedFiles,XTestEmbedFiles"

// graph is `go list -deps -test ./...` of one module for one platform:
// every package and test variant, by ID (ImportPath, "p [q.test]" for
// variants).
type graph map[string]*listed

// ListCache shares the listing of a module (one `go list` of the whole
// module per platform) among the Hash calls of one build. Safe for
// concurrent use; make a new one for each build, as files change.
type ListCache struct {
	mu sync.Mutex
	m  map[string]*listing
}

type listing struct {
	once sync.Once
	g    graph
	err  error
}

// NewListCache returns an empty ListCache.
func NewListCache() *ListCache { return &ListCache{m: map[string]*listing{}} }

// WithListCache makes Hash take module listings from c.
func WithListCache(c *ListCache) Option { return func(o *options) { o.cache = c } }

// graphOf lists module mod for platform ("os/arch[/variant]"), through the cache.
func (o options) graphOf(ctx context.Context, mod, platform string) (graph, error) {
	if o.cache == nil {
		return o.list(ctx, mod, platform)
	}
	key := strings.Join(append([]string{o.goBin, mod, platform}, o.env...), "\x00")
	o.cache.mu.Lock()
	l := o.cache.m[key]
	if l == nil {
		l = &listing{}
		o.cache.m[key] = l
	}
	o.cache.mu.Unlock()
	l.once.Do(func() { l.g, l.err = o.list(ctx, mod, platform) })
	return l.g, l.err
}

func (o options) list(ctx context.Context, mod, platform string) (graph, error) {
	parts := strings.Split(platform, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("platform %q: want os/arch, e.g. linux/arm64", platform)
	}
	env := []string{"GOOS=" + parts[0], "GOARCH=" + parts[1]}
	if len(parts) == 3 && parts[1] == "arm" {
		env = append(env, "GOARM="+strings.TrimPrefix(parts[2], "v"))
	}
	out, err := o.goCmd(ctx, mod, env, "list", "-deps", "-test", "-e", "-json="+listFields, "./...")
	if err != nil {
		return nil, err
	}
	g := graph{}
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		p := &listed{}
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		g[p.ImportPath] = p
	}
	return g, nil
}

// listGo adds to files what the build and the tests of the component at
// dir read for platform, and to pkgs the main module's packages its
// binaries are built from: the closure of its packages through their
// imports; then, for each of those, its tests and their closure (test
// variants included), whose files count too.
func (o options) listGo(ctx context.Context, mod, dir, platform string, files, pkgs map[string]bool) error {
	g, err := o.graphOf(ctx, mod, platform)
	if err != nil {
		return err
	}
	add := func(p *listed, groups [][]string) {
		for _, group := range groups {
			for _, f := range group {
				if !filepath.IsAbs(f) { // an absolute file is generated by go test (its test main)
					files[filepath.Join(p.Dir, filepath.FromSlash(f))] = true
				}
			}
		}
	}
	var queue []string
	for id, p := range g {
		if p.ForTest == "" && !strings.HasSuffix(id, ".test") && p.ours() && p.Module.Main &&
			(p.Dir == dir || strings.HasPrefix(p.Dir, dir+string(filepath.Separator))) {
			queue = append(queue, id)
		}
	}
	seen := map[string]bool{}
	walk := func(queue []string, visit func(*listed)) {
		for len(queue) > 0 {
			id := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			p := g[id]
			if p == nil || seen[id] {
				continue
			}
			seen[id] = true
			if p.ours() && p.Dir != "" {
				visit(p)
			}
			queue = append(queue, p.Imports...)
		}
	}
	tested := map[string]bool{}
	walk(queue, func(p *listed) {
		add(p, p.buildFiles())
		if p.Module.Main {
			pkgs[p.ImportPath] = true
			tested[p.ImportPath] = true
		}
	})
	// The tests of each package the component is built from.
	var tests []string
	for q := range tested {
		tests = append(tests, q+" ["+q+".test]", q+"_test ["+q+".test]", q+".test")
	}
	walk(tests, func(p *listed) {
		add(p, p.buildFiles())
		base, _, _ := strings.Cut(p.ImportPath, " [")
		if tested[base] || tested[strings.TrimSuffix(base, "_test")] {
			add(p, p.testFiles())
		}
	})
	for q := range tested {
		p := g[q]
		add(p, p.testFiles())
		if len(p.TestGoFiles)+len(p.XTestGoFiles) > 0 {
			// Tests read their testdata at run time.
			if err := addTree(files, mod, filepath.Join(p.Dir, "testdata")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
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
