package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/junit"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/build/changes"
	"github.com/branchml/branchml/agents/stages/build/imagebuild"
)

// DefaultBranch is the build branch when the config maps none.
const DefaultBranch = "build-components"

// DefaultJUnitPath is where the JUnit XML goes, relative to the workspace.
const DefaultJUnitPath = "build/junit.xml"

// Options are the inputs of Run.
type Options struct {
	// Config is the loaded branchml.yaml (required).
	Config *config.Config
	// Forge reads the lock from and writes it back to Branch (required).
	Forge forge.Forge
	// Registry receives the images (required; see registry.Open).
	Registry registry.Registry
	// Workspace is the ML repository's root (made absolute); default Config.Dir.
	Workspace string
	// Branch is the build branch; default Config.Branches["build"], else DefaultBranch.
	Branch string
	// Commit is the source commit (required unless DryRun): the revision
	// label of images whose content is new, their tag "git-<commit[:12]>"
	// and the lock's source commit.
	Commit string
	// DryRun plans only: hash, compare with the lock, list what would be
	// built and why; no tests, builds, pushes or write-back.
	DryRun bool
	// Force rebuilds every component whatever the lock says.
	Force bool
	// JUnitPath is where the test results go; default
	// <Workspace>/build/junit.xml (relative paths are relative to Workspace).
	JUnitPath string
	// Created is the images' timestamp (SOURCE_DATE_EPOCH); zero means the Unix epoch.
	Created time.Time
	// SourceURL is the org.opencontainers.image.source label, a URL ("" = none).
	SourceURL string
	// Platforms, when set, are the "os/arch" targets of every Go component
	// (over components[].platforms); default each component's, else the
	// agent's own (imagebuild.DefaultPlatform).
	Platforms []string
	// Builder builds kind dockerfile components; nil means
	// imagebuild.DetectBuilder(LookPath, BuilderName) when one is needed.
	Builder     imagebuild.Builder
	BuilderName string
	LookPath    func(string) (string, error)
	// TempDir holds the Dockerfile builders' output until it is pushed
	// (a branchml-<component>-* directory each, removed before Run
	// returns); default os.TempDir().
	TempDir string
	// Go is the go command (default "go").
	Go string
	// Log receives progress lines (default: discarded).
	Log logrus.FieldLogger
	// TestOutput receives the output of test commands as they run (nil: not shown).
	TestOutput io.Writer
}

// Component actions in Result.
const (
	ActionBuilt      = "built"
	ActionSkipped    = "skipped"
	ActionWouldBuild = "would-build"
	ActionFailed     = "failed"
)

// Test outcomes in ComponentResult.Tests.
const (
	TestsPassed = "passed"
	TestsFailed = "failed"
	// TestsNone: the tests ran, but no package the component is built
	// from has a test.
	TestsNone = "no tests"
)

// ComponentResult is what happened to one component.
type ComponentResult struct {
	Name string `json:"name"`
	// Action is built, skipped, would-build (dry run) or failed.
	Action string `json:"action"`
	// Reason says why it was built or skipped.
	Reason string `json:"reason"`
	// Repository is where its image is (or would be) pushed, "host/repo"
	// (the registry's host and components[].image), set when it is built,
	// would be built (a dry run's plan) or failed to build.
	Repository string `json:"repository,omitempty"`
	// Image is the pinned reference "host/repo@sha256:<hex>"; Digest "sha256:<hex>".
	Image  string `json:"image,omitempty"`
	Digest string `json:"digest,omitempty"`
	// Platforms are the image's "os/arch" targets (an index when several).
	Platforms []string `json:"platforms,omitempty"`
	// ImageUnchanged reports a rebuilt image whose content is the lock's
	// (a test-only or comment-only change): the lock's digest is kept and
	// nothing was pushed.
	ImageUnchanged bool `json:"imageUnchanged,omitempty"`
	// SourceHash is the content hash of its sources.
	SourceHash string `json:"sourceHash,omitempty"`
	// Tests is "passed", "failed", "no tests" or "" (not run).
	Tests string `json:"tests,omitempty"`
	// TestCount is how many tests ran for it (the tests of every package it
	// is built from, or 1 for a test command).
	TestCount int `json:"testCount,omitempty"`
}

// Result is the outcome of Run; on failure the components done so far.
type Result struct {
	Components []ComponentResult `json:"components"`
	// Registry is the registry host the images are in.
	Registry string `json:"registry"`
	// LockCommit is the write-back commit ("" when the lock did not change).
	LockCommit string `json:"lockCommit,omitempty"`
	// LockChanged reports whether the lock was rewritten (dry run: whether
	// it would be, some component being built).
	LockChanged bool `json:"lockChanged"`
	// JUnit is the JUnit XML path ("" when no tests ran).
	JUnit string `json:"junit,omitempty"`
	// Lock is the lock now on the branch (or that would be).
	Lock *records.ComponentsLock `json:"-"`
}

// Counts returns how many components were built (or would be) and skipped.
func (r *Result) Counts() (built, skipped int) {
	for _, c := range r.Components {
		switch c.Action {
		case ActionBuilt, ActionWouldBuild:
			built++
		case ActionSkipped:
			skipped++
		}
	}
	return built, skipped
}

// Summary is one line: "built 1 of 3 components, 2 unchanged", with
// "(1 image unchanged)" after the built count when rebuilt images were
// identical to the lock's.
func (r *Result) Summary(dryRun bool) string {
	b, s := r.Counts()
	verb := "built"
	if dryRun {
		verb = "would build"
	}
	same := 0
	for _, c := range r.Components {
		if c.ImageUnchanged {
			same++
		}
	}
	note := ""
	if same == 1 {
		note = " (1 image unchanged)"
	} else if same > 1 {
		note = fmt.Sprintf(" (%d images unchanged)", same)
	}
	return fmt.Sprintf("%s %d of %d components%s, %d unchanged", verb, b, len(r.Components), note, s)
}

// plan is one component's decision, then its build.
type plan struct {
	c         config.Component
	src       *changes.Sources
	platforms []string
	prev      records.LockedComponent
	hadPrev   bool
	build     bool
	reason    string
	res       *ComponentResult
	// The build: one image per platform (goImages for kind go, to
	// reassemble them with another Meta), and the index when several.
	goImages []*goBuilt
	image    v1.Image
	index    v1.ImageIndex
	// raw is a Dockerfile build before its labels.
	raw v1.Image
	// same: the content equals the lock's image; nothing to push.
	same bool
	// buildFailure is why the Go build failed (set by buildGo, which runs
	// beside the tests and so leaves res alone).
	buildFailure string
}

type goBuilt struct {
	built *imagebuild.Built
	spec  imagebuild.GoImage
}

// Run runs the build stage. Errors are *agent.Error: Usage (exit 2) for bad
// options or configuration, Failed (exit 1) for a failed push check, test,
// build, push or write-back, each naming the component and a fix. Push
// access is checked before any test or build; nothing is written back
// unless every changed component was tested, built and pushed.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	res := &Result{Registry: o.Registry.Host()}
	// What needs no plan starts at once, beside the hashing: reading the
	// lock, the push checks and the precompile (stopped if nothing is built).
	ahead := o.startAhead(ctx)
	defer ahead.stop()
	lockDone := make(chan error, 1)
	var lock *records.ComponentsLock
	go func() {
		var err error
		lock, err = o.readLock(ctx)
		lockDone <- err
	}()
	srcs, hashErrs := o.hashAll(ctx)
	if err := <-lockDone; err != nil {
		return res, err
	}
	plans, err := o.plan(ctx, lock, srcs, hashErrs)
	setResults := func() {
		res.Components = res.Components[:0]
		for _, p := range plans {
			res.Components = append(res.Components, *p.res)
		}
	}
	setResults()
	if err != nil {
		return res, err
	}
	if o.DryRun {
		if err := o.checkBuilders(plans); err != nil {
			return res, err
		}
		next, _ := newLock(lock, &o, plans)
		res.LockChanged = anyBuild(plans)
		res.Lock = lock
		if res.LockChanged {
			res.Lock = next
		}
		return res, nil
	}
	if !anyBuild(plans) {
		ahead.stop()
	}
	if err := o.checkPush(ctx, plans, ahead); err != nil {
		setResults()
		return res, err
	}
	var tmpDirs []string
	defer func() {
		for _, d := range tmpDirs {
			os.RemoveAll(d)
		}
	}()
	err = o.testAndBuild(ctx, plans, res, &tmpDirs, ahead)
	if err == nil {
		err = o.pushAll(ctx, plans)
	}
	setResults()
	if err != nil {
		return res, err
	}
	next, changed := newLock(lock, &o, plans)
	res.Lock, res.LockChanged = next, changed
	if !changed {
		res.Lock = lock
		o.Log.Infof("lock unchanged: nothing written back to %s", o.Branch)
		return res, nil
	}
	commit, err := o.writeLock(ctx, next, plans)
	if err != nil {
		return res, err
	}
	res.LockCommit = commit
	return res, nil
}

func anyBuild(plans []*plan) bool {
	for _, p := range plans {
		if p.build {
			return true
		}
	}
	return false
}

func (o *Options) defaults() error {
	switch {
	case o.Config == nil:
		return agent.Usagef("pass the loaded branchml.yaml", "build: no configuration")
	case o.Forge == nil:
		return agent.Usagef("configure backends.forge", "build: no forge to read and write the components lock")
	case o.Registry == nil:
		return agent.Usagef("configure backends.registry", "build: no registry to push images to")
	case o.Commit == "" && !o.DryRun:
		return agent.Usagef("pass --commit (Jenkins sets GIT_COMMIT)", "build: the source commit is not known")
	}
	if o.Workspace == "" {
		o.Workspace = o.Config.Dir
	}
	if o.Workspace == "" {
		o.Workspace = "."
	}
	abs, err := filepath.Abs(o.Workspace)
	if err != nil {
		return agent.Usage("build", err, "pass an existing --workspace")
	}
	o.Workspace = abs
	if o.Branch == "" {
		o.Branch = o.Config.Branches[config.StageBuild]
	}
	if o.Branch == "" {
		o.Branch = DefaultBranch
	}
	if o.JUnitPath == "" {
		o.JUnitPath = DefaultJUnitPath
	}
	if !filepath.IsAbs(o.JUnitPath) {
		o.JUnitPath = filepath.Join(o.Workspace, o.JUnitPath)
	}
	if o.Go == "" {
		o.Go = "go"
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	if o.SourceURL != "" {
		u, err := SourceURL(o.SourceURL)
		if err != nil {
			return agent.Usage("build", err, "give --source-url as a URL, e.g. https://github.com/acme/ml")
		}
		o.SourceURL = u
	}
	for _, pl := range o.Platforms {
		if _, err := imagebuild.ParsePlatform(pl); err != nil {
			return agent.Usage("build", err, "give --platform as a comma-separated list such as linux/amd64,linux/arm64")
		}
	}
	seen := map[string]bool{}
	for _, c := range o.Config.Components {
		if seen[c.Name] {
			return agent.Usagef("give each component a unique name", "components: %q appears twice", c.Name)
		}
		seen[c.Name] = true
		if _, err := name.NewRepository(o.Registry.Host()+"/"+c.Image, name.StrictValidation); err != nil || c.Image == "" {
			return agent.Usagef("use a lower-case repository path such as project/component", "component %s: image %q is not a valid repository", c.Name, c.Image)
		}
		for _, pl := range c.Platforms {
			if _, err := imagebuild.ParsePlatform(pl); err != nil {
				return agent.Usage("build", fmt.Errorf("component %s: %w", c.Name, err), "list platforms as os/arch, e.g. linux/arm64")
			}
		}
		if c.Kind == "dockerfile" && (len(c.Platforms) > 1 || len(o.Platforms) > 1) {
			return agent.Usagef("build Dockerfile components for the agent's platform only, or make the component kind go",
				"component %s: multi-platform images of Dockerfile components are not supported (the builders need an emulator for RUN steps of other architectures)", c.Name)
		}
	}
	return nil
}

// platformsOf are the targets of component c.
func (o *Options) platformsOf(c config.Component) []string {
	switch {
	case c.Kind != "go":
		return []string{imagebuild.DefaultPlatform()}
	case len(o.Platforms) > 0:
		return o.Platforms
	case len(c.Platforms) > 0:
		return c.Platforms
	}
	return []string{imagebuild.DefaultPlatform()}
}

// SourceURL returns s as the URL the org.opencontainers.image.source
// label holds: an absolute path becomes a file:// URL, scp-like git
// syntax (git@host:org/repo.git) an ssh:// URL, a URL stays; anything else
// is an error.
func SourceURL(s string) (string, error) {
	if filepath.IsAbs(s) {
		return (&url.URL{Scheme: "file", Path: filepath.ToSlash(s)}).String(), nil
	}
	if at, colon := strings.Index(s, "@"), strings.Index(s, ":"); !strings.Contains(s, "://") && colon > 0 && at < colon {
		host, rest := s[:colon], s[colon+1:]
		return "ssh://" + host + "/" + strings.TrimPrefix(rest, "/"), nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || (u.Host == "" && u.Scheme != "file") {
		return "", fmt.Errorf("image source %q is not a URL (want e.g. https://github.com/acme/ml or file:///srv/git/ml.git)", s)
	}
	return u.String(), nil
}

func (o *Options) readLock(ctx context.Context) (*records.ComponentsLock, error) {
	raw, err := o.Forge.ReadFile(ctx, o.Branch, records.ComponentsLockPath)
	if errors.Is(err, forge.ErrNotFound) {
		o.Log.Infof("no components lock on %s yet: every component is new", o.Branch)
		return &records.ComponentsLock{APIVersion: records.APIVersion, Kind: "ComponentsLock", Components: map[string]records.LockedComponent{}}, nil
	}
	if err != nil {
		return nil, agent.Failed("read "+records.ComponentsLockPath+" on "+o.Branch, err, "check the forge settings (backends.forge) and credentials")
	}
	var lock records.ComponentsLock
	if err := records.ParseJSON(o.Branch+":"+records.ComponentsLockPath, raw, &lock); err != nil {
		return nil, agent.Failed("read "+records.ComponentsLockPath+" on "+o.Branch, err, "")
	}
	if lock.Components == nil {
		lock.Components = map[string]records.LockedComponent{}
	}
	return &lock, nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// hashAll hashes every component at once.
func (o *Options) hashAll(ctx context.Context) ([]*changes.Sources, []error) {
	comps := o.Config.Components
	srcs := make([]*changes.Sources, len(comps))
	errs := make([]error, len(comps))
	cache := changes.NewListCache() // one go list of each module for all its components
	var wg sync.WaitGroup
	for i, c := range comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := []changes.Option{changes.WithGo(o.Go), changes.WithExclude(o.JUnitPath), changes.WithListCache(cache)}
			if c.Kind == "go" {
				opts = append(opts, changes.WithPlatforms(o.platformsOf(c)...))
			}
			srcs[i], errs[i] = changes.Hash(ctx, o.Workspace, c, opts...)
		}()
	}
	wg.Wait()
	return srcs, errs
}

// plan decides, from the hashes (hashAll) and the lock, whether each
// component is built.
func (o *Options) plan(ctx context.Context, lock *records.ComponentsLock, srcs []*changes.Sources, errs []error) ([]*plan, error) {
	comps := o.Config.Components
	var plans []*plan
	for i, c := range comps {
		platforms := o.platformsOf(c)
		src, err := srcs[i], errs[i]
		if errors.Is(err, exec.ErrNotFound) {
			return plans, agent.Usage("hash component "+c.Name, err, "put the Go toolchain on PATH (kind: go components need it; the agents image of make image has it)")
		}
		if err != nil {
			return plans, agent.Usage("hash component "+c.Name, err, "fix the component's path, kind or module in branchml.yaml")
		}
		p := &plan{c: c, src: src, platforms: platforms, res: &ComponentResult{Name: c.Name, SourceHash: src.Hash}}
		p.prev, p.hadPrev = lock.Components[c.Name]
		prev := p.prev
		switch {
		case o.Force:
			p.build, p.reason = true, "forced (--force)"
		case !p.hadPrev:
			p.build, p.reason = true, "new component: not in the lock"
		case prev.SourceHash != src.Hash:
			p.build, p.reason = true, fmt.Sprintf("sources changed since %s (hash %s → %s)", short(prev.SourceCommit), short(strings.TrimPrefix(prev.SourceHash, "sha256:")), short(strings.TrimPrefix(src.Hash, "sha256:")))
		case prev.Repository != c.Image:
			p.build, p.reason = true, fmt.Sprintf("image repository changed from %s to %s", prev.Repository, c.Image)
		default:
			has, err := o.Registry.Has(ctx, c.Image, prev.Digest)
			if err != nil {
				return plans, registryFailure("check "+c.Name, o.Registry.Host(), err)
			}
			if !has {
				p.build, p.reason = true, fmt.Sprintf("image %s is missing from registry %s", short(strings.TrimPrefix(prev.Digest, "sha256:")), o.Registry.Host())
			} else {
				p.reason = fmt.Sprintf("sources unchanged since %s (hash %s) and image present: only relevant jobs run", short(prev.SourceCommit), short(strings.TrimPrefix(src.Hash, "sha256:")))
				p.res.Image, p.res.Digest = prev.Image, prev.Digest
			}
		}
		p.res.Reason = p.reason
		switch {
		case !p.build:
			p.res.Action = ActionSkipped
			o.Log.Infof("%s: skipped: %s", c.Name, p.reason)
		case o.DryRun:
			p.res.Action = ActionWouldBuild
			o.Log.Infof("%s: would build: %s (image %s)", c.Name, p.reason, o.Registry.Host()+"/"+c.Image)
		default:
			p.res.Action = ActionBuilt // until something fails
			o.Log.Infof("%s: building: %s", c.Name, p.reason)
		}
		if p.build {
			p.res.Platforms = platforms
			p.res.Repository = o.Registry.Host() + "/" + c.Image
		}
		plans = append(plans, p)
	}
	return plans, nil
}

func (o *Options) builder() (imagebuild.Builder, error) {
	if o.Builder == nil {
		b, err := imagebuild.DetectBuilder(o.LookPath, o.BuilderName)
		if err != nil {
			return nil, err
		}
		o.Builder = b
	}
	return o.Builder, nil
}

// checkBuilders fails when a dockerfile component must be built and no builder exists.
func (o *Options) checkBuilders(plans []*plan) error {
	for _, p := range plans {
		if p.build && p.c.Kind == "dockerfile" {
			if _, err := o.builder(); err != nil {
				return agent.Usage("build component "+p.c.Name, err, "install a Dockerfile builder on the agent, or change the component to kind go")
			}
		}
	}
	return nil
}

// checkPush fails, before any test or build, when the credentials may not
// push to a repository that will be pushed to (the checks started ahead).
func (o *Options) checkPush(ctx context.Context, plans []*plan, ahead *ahead) error {
	if err := o.checkBuilders(plans); err != nil {
		return err
	}
	for _, p := range plans {
		if !p.build {
			continue
		}
		if err := ahead.pushCheck(ctx, o, p.c.Image); err != nil {
			for _, q := range plans {
				if q.build {
					q.res.Action, q.res.Reason = ActionFailed, "not built: no push access to "+o.Registry.Host()+"/"+p.c.Image
				}
			}
			return registryFailure("check push access for "+p.c.Name, o.Registry.Host(), err)
		}
	}
	return nil
}

// ahead is the work Run starts before the plan: push checks of every
// component's repository and the precompile of every Go component's
// packages.
type ahead struct {
	checks   map[string]chan error
	cancel   context.CancelFunc
	pre      chan struct{}
	stopOnce sync.Once
}

func (o *Options) startAhead(ctx context.Context) *ahead {
	a := &ahead{checks: map[string]chan error{}, cancel: func() {}}
	if o.DryRun {
		return a
	}
	for _, c := range o.Config.Components {
		if _, ok := a.checks[c.Image]; ok {
			continue
		}
		ch := make(chan error, 1)
		a.checks[c.Image] = ch
		go func() { ch <- o.Registry.CheckPush(ctx, c.Image) }()
	}
	var modules []string
	pkgs := map[string][]string{}
	for _, c := range o.Config.Components {
		if c.Kind != "go" {
			continue
		}
		dir := filepath.Join(o.Workspace, filepath.FromSlash(c.Path))
		mod, err := changes.ModuleDir(o.Workspace, dir)
		if err != nil {
			continue // the hash reports it
		}
		rel, _ := filepath.Rel(mod, dir)
		if _, ok := pkgs[mod]; !ok {
			modules = append(modules, mod)
		}
		pkgs[mod] = append(pkgs[mod], "./"+filepath.ToSlash(rel))
	}
	if len(modules) > 0 {
		pctx, cancel := context.WithCancel(ctx)
		a.cancel, a.pre = cancel, make(chan struct{})
		go func() {
			defer close(a.pre)
			o.precompile(pctx, modules, pkgs)
		}()
	}
	return a
}

// pushCheck is the result of the check of repository (run now if it was
// not started ahead).
func (a *ahead) pushCheck(ctx context.Context, o *Options, repository string) error {
	if ch, ok := a.checks[repository]; ok {
		err := <-ch
		ch <- err
		return err
	}
	return o.Registry.CheckPush(ctx, repository)
}

// precompiled waits for the precompile.
func (a *ahead) precompiled() {
	if a.pre != nil {
		<-a.pre
	}
}

// stop cancels the precompile and waits for it (and the checks) to end.
func (a *ahead) stop() {
	a.stopOnce.Do(func() {
		a.cancel()
		a.precompiled()
		for _, ch := range a.checks {
			ch <- <-ch
		}
	})
}

// test runs the tests of every component to build and writes the JUnit
// XML. The tests of Go components without a test command are one
// `go test -json` per module of every package they are built from
// (each package once, however many components share it), compiled with the flags
// of the images' build (imagebuild.GoFlags, GoEnv) so the build reuses the
// compiled packages.
func (o *Options) test(ctx context.Context, plans []*plan, res *Result) error {
	doc := &junit.Suites{Name: "branchml build"}
	ran := false
	// Go packages, by module.
	var modules []string
	pkgsOf := map[string][]string{}
	seenPkg := map[string]bool{}
	for _, p := range plans {
		if !p.build {
			continue
		}
		ran = true
		if p.c.Kind == "go" && len(p.c.Test) == 0 {
			m := p.src.ModuleDir
			if _, ok := pkgsOf[m]; !ok {
				modules = append(modules, m)
				pkgsOf[m] = nil
			}
			for _, pkg := range p.src.Packages {
				if !seenPkg[m+"\x00"+pkg] {
					seenPkg[m+"\x00"+pkg] = true
					pkgsOf[m] = append(pkgsOf[m], pkg)
				}
			}
		}
	}
	if !ran {
		return nil
	}
	suiteOf := map[string]*junit.Suite{}
	for _, m := range modules {
		suites, err := o.goTest(ctx, m, pkgsOf[m])
		if err != nil {
			return agent.Failed("test", err, "check that the go command works on the agent")
		}
		doc.Add(suites...)
	}
	for i := range doc.Suites {
		suiteOf[doc.Suites[i].Name] = &doc.Suites[i]
	}
	var failed, uncompiled []string
	for _, p := range plans {
		if !p.build {
			continue
		}
		switch {
		case p.c.Kind == "go" && len(p.c.Test) == 0:
			tests, bad, withTests := 0, 0, 0
			var broken []string
			for _, pkg := range p.src.Packages {
				s := suiteOf[pkg]
				if s == nil {
					continue
				}
				if s.Tests > 0 {
					withTests++
				}
				tests += s.Tests
				bad += s.Failures + s.Errors
				if s.BuildFailed != "" {
					broken = append(broken, s.BuildFailed)
				}
			}
			p.res.TestCount = tests
			switch {
			case len(broken) > 0:
				p.res.Tests, p.res.Action, p.res.Reason = TestsFailed, ActionFailed, "tests do not compile: "+strings.Join(broken, ", ")
				uncompiled = append(uncompiled, p.c.Name)
				o.Log.Errorf("%s: the tests of %s do not compile", p.c.Name, strings.Join(broken, ", "))
			case bad > 0:
				p.res.Tests, p.res.Action, p.res.Reason = TestsFailed, ActionFailed, "tests failed"
				failed = append(failed, p.c.Name)
				o.Log.Errorf("%s: %d of %d tests failed in the %d packages it is built from", p.c.Name, bad, tests, len(p.src.Packages))
			case tests == 0:
				p.res.Tests = TestsNone
				o.Log.Warnf("%s: no tests: none of the %d packages it is built from has a test", p.c.Name, len(p.src.Packages))
			default:
				p.res.Tests = TestsPassed
				others := ""
				if withTests < len(p.src.Packages) {
					others = " (the others have no tests)"
				}
				o.Log.Infof("%s: %d tests passed in %d of the %d packages it is built from%s", p.c.Name, tests, withTests, len(p.src.Packages), others)
			}
		case len(p.c.Test) > 0:
			suite, ok, err := o.runCommand(ctx, p)
			if err != nil {
				p.res.Action, p.res.Tests = ActionFailed, TestsFailed
				return agent.Failed("test "+p.c.Name, err, "check that the test command exists on the agent")
			}
			doc.Add(suite)
			p.res.TestCount = 1
			if ok {
				p.res.Tests = TestsPassed
				o.Log.Infof("%s: test command passed", p.c.Name)
			} else {
				p.res.Tests, p.res.Action, p.res.Reason = TestsFailed, ActionFailed, "tests failed"
				failed = append(failed, p.c.Name)
				o.Log.Errorf("%s: test command %s failed", p.c.Name, strings.Join(p.c.Test, " "))
			}
		default:
			p.res.Tests = TestsNone
			o.Log.Warnf("%s: no tests: kind %s has no default test; set components[].test", p.c.Name, p.c.Kind)
		}
	}
	if len(doc.Suites) > 0 {
		if err := junit.Write(o.JUnitPath, doc); err != nil {
			return agent.Failed("write JUnit XML", err, "check that the workspace is writable")
		}
		res.JUnit = o.JUnitPath
	}
	bad := append(append([]string(nil), uncompiled...), failed...)
	if len(bad) == 0 {
		return nil
	}
	for _, p := range plans {
		if p.build && p.res.Action != ActionFailed {
			p.res.Action, p.res.Reason = ActionFailed, "not built: tests of "+strings.Join(bad, ", ")+" failed"
		}
	}
	if len(uncompiled) > 0 {
		broken := doc.BuildFailures()
		first := ""
		for _, s := range doc.Suites {
			if s.BuildFailed != "" && len(s.Cases) > 0 && s.Cases[0].Error != nil {
				first = s.Cases[0].Error.Message
				break
			}
		}
		return agent.Failed("test "+strings.Join(bad, ", "), fmt.Errorf("the tests of %d package(s) do not compile (%s); nothing was pushed", len(broken), first),
			"fix the compile error; the compiler's output is in "+o.JUnitPath)
	}
	failures := doc.Failures + doc.Errors
	return agent.Failed("test "+strings.Join(bad, ", "), fmt.Errorf("%d of %d tests failed; nothing was pushed", failures, doc.Tests),
		"fix the failing tests; the results are in "+o.JUnitPath)
}

// goTest runs `go test -json` of pkgs in module dir with the build's
// flags and returns one suite per package.
func (o *Options) goTest(ctx context.Context, dir string, pkgs []string) ([]junit.Suite, error) {
	env, err := imagebuild.GoEnv(imagebuild.DefaultPlatform())
	if err != nil {
		return nil, err
	}
	// go test's own vet subset stays on, as a user of go test expects: it
	// costs the example's cold build 5.7 of its tests' 14.5 s of CPU
	// (BenchmarkStage), the price of failing on what go test would fail on.
	args := append(append([]string{"test", "-json"}, imagebuild.GoFlags...), pkgs...)
	cmd := exec.CommandContext(ctx, o.Go, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	o.Log.Infof("go test %d packages in %s", len(pkgs), dir)
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		return nil, runErr
	}
	in := stdout.String()
	if stderr.Len() > 0 {
		in += "\n" + stderr.String() // what the go command printed outside the JSON stream: becomes a (build) suite
	}
	suites, err := junit.FromGoTestJSON(strings.NewReader(in), "")
	if err != nil {
		return nil, err
	}
	if o.TestOutput != nil {
		for _, s := range suites {
			for _, c := range s.Cases {
				for _, f := range []*junit.Failure{c.Failure, c.Error} {
					if f != nil {
						fmt.Fprintf(o.TestOutput, "--- %s: %s\n%s\n", s.Name, c.Name, strings.TrimRight(f.Text, "\n"))
					}
				}
			}
			if s.SystemOut != "" {
				io.WriteString(o.TestOutput, s.SystemOut)
			}
		}
		io.WriteString(o.TestOutput, stderr.String())
	}
	return suites, nil
}

// runCommand runs a component's configured test command in its directory.
func (o *Options) runCommand(ctx context.Context, p *plan) (junit.Suite, bool, error) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, p.c.Test[0], p.c.Test[1:]...)
	cmd.Dir = filepath.Join(o.Workspace, filepath.FromSlash(p.c.Path))
	var out strings.Builder
	var w io.Writer = &out
	if o.TestOutput != nil {
		w = io.MultiWriter(&out, o.TestOutput)
	}
	cmd.Stdout, cmd.Stderr = w, w
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return junit.Suite{}, false, ctx.Err()
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		return junit.Suite{}, false, fmt.Errorf("%s: %w", strings.Join(p.c.Test, " "), runErr)
	}
	return junit.CommandSuite(p.c.Name, p.c.Test, runErr == nil, out.String(), time.Since(start)), runErr == nil, nil
}

// labels are the labels of every image but the revision (see imagebuild.Meta).
func (o *Options) labels() map[string]string {
	if o.SourceURL == "" {
		return nil
	}
	return map[string]string{imagebuild.LabelSource: o.SourceURL}
}

// testAndBuild tests and builds every component to build. The Go
// components' packages are compiled first (`go list -export`, once per
// module: what both the tests and the binaries need), then the tests run
// while the binaries link and their images are made (one go build per
// module and platform); a failed test cancels the build. Then the
// Dockerfile components are built. Each image whose content equals the
// lock's keeps the lock's digest (see reuse).
func (o *Options) testAndBuild(ctx context.Context, plans []*plan, res *Result, tmpDirs *[]string, ahead *ahead) error {
	ahead.precompiled()
	bases, err := o.pullBases(ctx, plans)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The build goroutine neither logs nor writes: the tests' output goes
	// to TestOutput meanwhile (which may share a writer with the log).
	var buildLog []string
	buildDone := make(chan error, 1)
	go func() { buildDone <- o.buildGo(bctx, plans, bases, &buildLog) }()
	testErr := o.test(ctx, plans, res)
	if testErr != nil {
		cancel()
	}
	buildErr := <-buildDone
	for _, l := range buildLog {
		o.Log.Info(l)
	}
	if testErr != nil {
		return testErr
	}
	if buildErr != nil {
		for _, p := range plans {
			if p.buildFailure != "" {
				p.res.Action, p.res.Reason = ActionFailed, p.buildFailure
			}
		}
		return buildErr
	}
	for _, p := range plans {
		if !p.build || p.c.Kind != "dockerfile" {
			continue
		}
		if err := o.buildDockerfile(ctx, p, tmpDirs); err != nil {
			p.res.Action, p.res.Reason = ActionFailed, "build failed"
			return err
		}
	}
	for _, p := range plans {
		if !p.build {
			continue
		}
		if err := o.reuse(ctx, p); err != nil {
			return err
		}
		o.Log.Infof("%s: image %s built (%s)", p.c.Name, p.res.Digest, strings.Join(p.platforms, ", "))
	}
	return nil
}

// precompile compiles, for the agent's platform, the packages the Go
// components (pkgs, by module) import (`go list -deps -export`, with the
// build's flags), so that the tests and the build that then run at the same
// time find them in the build cache instead of compiling them twice. A
// compile error here is left to the tests and the build to report.
func (o *Options) precompile(ctx context.Context, modules []string, pkgs map[string][]string) {
	env, _ := imagebuild.GoEnv(imagebuild.DefaultPlatform())
	for _, m := range modules {
		start := time.Now()
		args := append(append([]string{"list", "-deps", "-export", "-f", "{{.Export}}"}, imagebuild.GoFlags...), pkgs[m]...)
		cmd := exec.CommandContext(ctx, o.Go, args...)
		cmd.Dir, cmd.Env = m, append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			o.Log.Debugf("precompile in %s: %v\n%s", m, err, lastLines(string(out), 5))
		}
		o.Log.Debugf("precompiled the packages of %s in %s", m, time.Since(start).Round(time.Millisecond))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pullBases pulls the base images of the Go components to build (those
// with components[].base a reference), by reference and platform.
func (o *Options) pullBases(ctx context.Context, plans []*plan) (map[string]v1.Image, error) {
	bases := map[string]v1.Image{}
	for _, p := range plans {
		if !p.build || p.c.Kind != "go" || p.c.Base == "" || p.c.Base == "scratch" {
			continue
		}
		for _, platform := range p.platforms {
			key := p.c.Base + "\x00" + platform
			if bases[key] != nil {
				continue
			}
			pl, _ := imagebuild.ParsePlatform(platform)
			b, err := o.Registry.PullPlatform(ctx, p.c.Base, pl)
			if err != nil {
				p.res.Action, p.res.Reason = ActionFailed, "base image not pulled"
				return nil, registryFailure("pull base image "+p.c.Base+" of "+p.c.Name, o.Registry.Host(), err)
			}
			bases[key] = b
		}
	}
	return bases, nil
}

// buildGo compiles the Go components to build (one go build per module and
// platform) and makes their images on bases (see pullBases); log lines go
// to buildLog.
func (o *Options) buildGo(ctx context.Context, plans []*plan, bases map[string]v1.Image, buildLog *[]string) error {
	type key struct{ module, platform string }
	var keys []key
	byKey := map[key][]*plan{}
	for _, p := range plans {
		if !p.build || p.c.Kind != "go" {
			continue
		}
		for _, pl := range p.platforms {
			k := key{p.src.ModuleDir, pl}
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], p)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	out, err := os.MkdirTemp(o.TempDir, "branchml-bin-*")
	if err != nil {
		return agent.Failed("build", err, "check that the temporary directory is writable")
	}
	defer os.RemoveAll(out)
	for i, k := range keys {
		ps := byKey[k]
		var pkgs []string
		for _, p := range ps {
			pkgs = append(pkgs, p.src.Package)
		}
		start := time.Now()
		bins, err := imagebuild.CompileGo(ctx, imagebuild.GoCompile{ModuleDir: k.module, Packages: pkgs, Platform: k.platform,
			OutDir: filepath.Join(out, strconv.Itoa(i)), Go: o.Go})
		if err != nil {
			for _, p := range ps {
				p.buildFailure = "build failed"
			}
			return agent.Failed("build "+names(ps), err, "fix the compile error above; `go build` of the component must succeed")
		}
		*buildLog = append(*buildLog, fmt.Sprintf("compiled %s for %s in %s", names(ps), k.platform, time.Since(start).Round(time.Millisecond)))
		specs := make([]imagebuild.GoImage, len(ps))
		for j, p := range ps {
			specs[j] = imagebuild.GoImage{Name: p.c.Name, Binary: p.c.Binary, Created: o.Created, Labels: o.labels(),
				Meta: imagebuild.Meta{Revision: o.Commit}, Platform: k.platform, Scratch: p.c.Base == "scratch"}
			if p.c.Base != "" && p.c.Base != "scratch" {
				specs[j].Base = bases[p.c.Base+"\x00"+k.platform]
			}
		}
		// The layers are compressed in parallel (gzip is the cost here).
		built := make([]*imagebuild.Built, len(ps))
		errs := make([]error, len(ps))
		var wg sync.WaitGroup
		for j, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bin, err := os.ReadFile(bins[p.src.Package])
				if err == nil {
					built[j], err = imagebuild.ImageFromBinary(bin, specs[j])
				}
				errs[j] = err
			}()
		}
		wg.Wait()
		for j, p := range ps {
			if errs[j] != nil {
				p.buildFailure = "build failed"
				return agent.Failed("build "+p.c.Name, errs[j], "fix components[].binary in branchml.yaml")
			}
			p.goImages = append(p.goImages, &goBuilt{built: built[j], spec: specs[j]})
		}
	}
	for _, p := range plans {
		if p.build && p.c.Kind == "go" {
			if err := p.assemble(); err != nil {
				return agent.Failed("build "+p.c.Name, err, "")
			}
		}
	}
	return nil
}

func names(ps []*plan) string {
	var n []string
	for _, p := range ps {
		n = append(n, p.c.Name)
	}
	return strings.Join(n, ", ")
}

// assemble sets p.image (one platform) or p.index and the result's digest
// from p.goImages.
func (p *plan) assemble() error {
	if len(p.goImages) == 1 {
		p.image, p.index = p.goImages[0].built.Image, nil
		p.res.Digest = p.goImages[0].built.Digest
		return nil
	}
	var imgs []v1.Image
	for _, g := range p.goImages {
		imgs = append(imgs, g.built.Image)
	}
	idx, err := imagebuild.Index(imgs)
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	p.image, p.index, p.res.Digest = nil, idx, d.String()
	return nil
}

// withMeta remakes p's image(s) with meta and returns the new digest.
func (p *plan) withMeta(labels map[string]string, meta imagebuild.Meta) error {
	if p.c.Kind == "go" {
		for _, g := range p.goImages {
			g.spec.Meta = meta
			if err := g.built.Assemble(g.spec); err != nil {
				return err
			}
		}
		return p.assemble()
	}
	img, err := imagebuild.WithMeta(p.raw, labels, meta)
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	p.image, p.res.Digest = img, d.String()
	return nil
}

// reuse compares p's new image with the lock's: built again with the lock
// image's revision label and creation time, a digest equal to the lock's
// means the content did not change (a test-only or comment-only change),
// and the lock's image is kept: nothing pushed, no new digest for
// kf-pipeline. Otherwise the image keeps this commit's revision.
func (o *Options) reuse(ctx context.Context, p *plan) error {
	if !p.hadPrev || p.prev.Digest == "" || p.prev.Repository != p.c.Image {
		return nil
	}
	cf, err := o.Registry.Config(ctx, p.prev.Image)
	if err != nil {
		o.Log.Debugf("%s: the lock's image %s is not readable (%v): the new image stands", p.c.Name, p.prev.Image, err)
		return nil
	}
	fresh := p.res.Digest
	if err := p.withMeta(o.labels(), imagebuild.MetaOf(cf)); err != nil {
		return agent.Failed("build "+p.c.Name, err, "")
	}
	if p.res.Digest == p.prev.Digest {
		p.same, p.res.ImageUnchanged = true, true
		p.res.Image = p.prev.Image
		p.res.Reason += "; image content unchanged: the lock's image (revision " + short(cf.Config.Labels[imagebuild.LabelRevision]) + ") is kept, nothing pushed"
		o.Log.Infof("%s: image content unchanged: keeping %s", p.c.Name, p.prev.Digest)
		return nil
	}
	if err := p.withMeta(o.labels(), imagebuild.Meta{Revision: o.Commit}); err != nil {
		return agent.Failed("build "+p.c.Name, err, "")
	}
	if p.res.Digest != fresh {
		return agent.Failed("build "+p.c.Name, fmt.Errorf("image digest %s, then %s with the same settings", fresh, p.res.Digest), "report this: the image build is not reproducible")
	}
	return nil
}

func (o *Options) buildDockerfile(ctx context.Context, p *plan, tmpDirs *[]string) error {
	b, err := o.builder()
	if err != nil {
		return agent.Usage("build "+p.c.Name, err, "install a Dockerfile builder on the agent, or change the component to kind go")
	}
	dir, err := os.MkdirTemp(o.TempDir, "branchml-"+p.c.Name+"-*")
	if err != nil {
		return agent.Failed("build "+p.c.Name, err, "check that the temporary directory is writable")
	}
	*tmpDirs = append(*tmpDirs, dir) // read by the image until pushed; removed when Run returns
	start := time.Now()
	img, err := b.Build(ctx, imagebuild.DockerfileBuild{
		Name: p.c.Name, Context: filepath.Join(o.Workspace, filepath.FromSlash(p.c.Path)),
		Dockerfile: dockerfilePath(o.Workspace, p.c), Created: o.Created, Dir: dir, Output: o.TestOutput,
	})
	if err != nil {
		return agent.Failed("build "+p.c.Name+" with "+b.Name(), err, "fix the Dockerfile build; the builder's output is above")
	}
	o.Log.Infof("%s: built with %s in %s", p.c.Name, b.Name(), time.Since(start).Round(time.Millisecond))
	p.raw = img
	if err := p.withMeta(o.labels(), imagebuild.Meta{Revision: o.Commit}); err != nil {
		return agent.Failed("build "+p.c.Name, err, "")
	}
	return nil
}

func dockerfilePath(workspace string, c config.Component) string {
	if c.Dockerfile == "" {
		return ""
	}
	return filepath.Join(workspace, filepath.FromSlash(c.Dockerfile))
}

var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Tag is the tag pushed with each image: "git-" and the commit's first 12 characters.
func Tag(commit string) string {
	if commit == "" {
		return ""
	}
	return "git-" + tagUnsafe.ReplaceAllString(short(commit), "_")
}

// pushAll pushes the images to push at the same time (each push skips
// the blobs its repository has); the first failure in component order is
// returned.
func (o *Options) pushAll(ctx context.Context, plans []*plan) error {
	errs := make([]error, len(plans))
	var wg sync.WaitGroup
	for i, p := range plans {
		if !p.build || p.same {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pushed registry.Pushed
			var err error
			if p.index != nil {
				pushed, err = o.Registry.PushIndex(ctx, p.c.Image, Tag(o.Commit), p.index)
			} else {
				pushed, err = o.Registry.Push(ctx, p.c.Image, Tag(o.Commit), p.image)
			}
			if err != nil {
				errs[i] = err
				return
			}
			p.res.Image, p.res.Digest = pushed.Ref, pushed.Digest
			o.Log.Infof("%s: pushed %s", p.c.Name, pushed.Ref)
		}()
	}
	wg.Wait()
	var first error
	for i, p := range plans {
		if errs[i] != nil {
			p.res.Action, p.res.Reason = ActionFailed, "push failed"
			if first == nil {
				first = registryFailure("push "+p.c.Name, o.Registry.Host(), errs[i])
			}
		}
	}
	return first
}

// registryFailure turns a registry error into a cli failure with a fix.
func registryFailure(what, host string, err error) error {
	var re *registry.Error
	if errors.As(err, &re) {
		switch {
		case re.TLS != nil:
			return agent.Failed(what, err, re.TLS.Fix())
		case re.Unauthorized():
			return agent.Failed(what, err, "check the credentials for "+re.Registry+": DOCKER_CONFIG (docker login) or REGISTRY_USERNAME/REGISTRY_PASSWORD; now using "+re.Credentials)
		case re.Temporary():
			return agent.Failed(what, err, "registry "+re.Registry+" is unavailable; run the stage again when it answers (nothing was written back), or widen backends.registry.retryWindow")
		}
	}
	return agent.Failed(what, err, "check backends.registry ("+host+") and the image names in branchml.yaml")
}

// newLock returns the lock after this run and whether it differs from old:
// built components get new entries (an image whose content did not change
// keeps its entry, with the new source hash), components gone from the
// config are dropped, the rest are kept as they are. Nothing else counts
// as a change: a forced rebuild to the same images changes nothing.
func newLock(old *records.ComponentsLock, o *Options, plans []*plan) (*records.ComponentsLock, bool) {
	next := &records.ComponentsLock{APIVersion: records.APIVersion, Kind: "ComponentsLock",
		SourceCommit: old.SourceCommit, Registry: old.Registry, Components: map[string]records.LockedComponent{}}
	for _, p := range plans {
		prev, had := old.Components[p.c.Name]
		switch {
		case !p.build || p.res.Digest == "": // skipped, or dry run / not built: the old entry
			if had {
				next.Components[p.c.Name] = prev
			}
		case p.same:
			prev.SourceHash = p.src.Hash
			next.Components[p.c.Name] = prev
		default:
			binary := p.c.Binary
			if binary == "" && p.c.Kind == "go" {
				binary = "/ko-app/" + p.c.Name
			}
			next.Components[p.c.Name] = records.LockedComponent{Repository: p.c.Image, Image: p.res.Image, Digest: p.res.Digest,
				SourceHash: p.src.Hash, SourceCommit: o.Commit, Binary: binary}
		}
	}
	changed := !reflect.DeepEqual(old.Components, next.Components)
	if changed {
		next.SourceCommit, next.Registry = o.Commit, o.Registry.Host()
	}
	return next, changed
}

// MarshalLock is the lock file's content: indented JSON, keys sorted, trailing newline.
func MarshalLock(l *records.ComponentsLock) ([]byte, error) {
	raw, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

func (o *Options) writeLock(ctx context.Context, lock *records.ComponentsLock, plans []*plan) (string, error) {
	raw, err := MarshalLock(lock)
	if err != nil {
		return "", agent.Failed("write the components lock", err, "")
	}
	var built []string
	for _, p := range plans {
		if p.build && !p.same {
			built = append(built, p.c.Name)
		}
	}
	sort.Strings(built)
	what := "images of " + strings.Join(built, ", ")
	if len(built) == 0 {
		what = "components lock"
	}
	commit, err := o.Forge.WriteBack(ctx, forge.WriteBack{
		Branch:  o.Branch,
		Files:   map[string][]byte{records.ComponentsLockPath: raw},
		Message: fmt.Sprintf("branchml build: %s for %s", what, o.Commit),
	})
	if err != nil {
		return "", agent.Failed("write "+records.ComponentsLockPath+" to "+o.Branch, err,
			"the images are pushed; run the stage again to record them (the rebuilt images have the same digests)")
	}
	o.Log.Infof("lock written to %s in commit %s", o.Branch, short(commit))
	return commit, nil
}
