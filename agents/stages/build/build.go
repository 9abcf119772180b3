package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
	// Workspace is the ML repository's root; default Config.Dir.
	Workspace string
	// Branch is the build branch; default Config.Branches["build"], else DefaultBranch.
	Branch string
	// Commit is the source commit (required unless DryRun): the images'
	// revision label, their tag "git-<commit[:12]>" and the lock's source commit.
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
	// SourceURL is the org.opencontainers.image.source label ("" = none).
	SourceURL string
	// Builder builds kind dockerfile components; nil means
	// imagebuild.DetectBuilder(LookPath, BuilderName) when one is needed.
	Builder     imagebuild.Builder
	BuilderName string
	LookPath    func(string) (string, error)
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

// ComponentResult is what happened to one component.
type ComponentResult struct {
	Name string `json:"name"`
	// Action is built, skipped, would-build (dry run) or failed.
	Action string `json:"action"`
	// Reason says why it was built or skipped.
	Reason string `json:"reason"`
	// Image is the pinned reference "host/repo@sha256:<hex>"; Digest "sha256:<hex>".
	Image  string `json:"image,omitempty"`
	Digest string `json:"digest,omitempty"`
	// SourceHash is the content hash of its sources.
	SourceHash string `json:"sourceHash,omitempty"`
	// Tests is "passed", "failed" or "" (not run).
	Tests string `json:"tests,omitempty"`
}

// Result is the outcome of Run; on failure the components done so far.
type Result struct {
	Components []ComponentResult `json:"components"`
	// Registry is the registry host the images are in.
	Registry string `json:"registry"`
	// LockCommit is the write-back commit ("" when the lock did not change).
	LockCommit string `json:"lockCommit,omitempty"`
	// LockChanged reports whether the lock was (or, dry run, would be) rewritten.
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

// Summary is one line: "built 1 of 3 components, 2 unchanged".
func (r *Result) Summary(dryRun bool) string {
	b, s := r.Counts()
	verb := "built"
	if dryRun {
		verb = "would build"
	}
	return fmt.Sprintf("%s %d of %d components, %d unchanged", verb, b, len(r.Components), s)
}

// plan is one component's decision.
type plan struct {
	c      config.Component
	src    *changes.Sources
	build  bool
	reason string
	res    *ComponentResult
	image  v1.Image
}

// Run runs the build stage. Errors are *agent.Error: Usage (exit 2) for bad
// options or configuration, Failed (exit 1) for a failed test, build, push or
// write-back, each naming the component and a fix. Nothing is written back
// unless every changed component was tested, built and pushed.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	res := &Result{Registry: o.Registry.Host()}
	lock, err := o.readLock(ctx)
	if err != nil {
		return res, err
	}
	plans, err := o.plan(ctx, lock)
	for _, p := range plans {
		res.Components = append(res.Components, *p.res)
	}
	if err != nil {
		return res, err
	}
	setResults := func() {
		res.Components = res.Components[:0]
		for _, p := range plans {
			res.Components = append(res.Components, *p.res)
		}
	}
	next, changed := newLock(lock, &o, plans)
	res.Lock, res.LockChanged = next, changed
	if o.DryRun {
		if err := o.checkBuilders(plans); err != nil {
			return res, err
		}
		if !changed {
			res.Lock = lock
		}
		return res, nil
	}
	if err := o.test(ctx, plans, res); err != nil {
		setResults()
		return res, err
	}
	if err := o.buildAll(ctx, plans); err != nil {
		setResults()
		return res, err
	}
	if err := o.pushAll(ctx, plans); err != nil {
		setResults()
		return res, err
	}
	setResults()
	next, changed = newLock(lock, &o, plans)
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
	seen := map[string]bool{}
	for _, c := range o.Config.Components {
		if seen[c.Name] {
			return agent.Usagef("give each component a unique name", "components: %q appears twice", c.Name)
		}
		seen[c.Name] = true
		if _, err := name.NewRepository(o.Registry.Host()+"/"+c.Image, name.StrictValidation); err != nil || c.Image == "" {
			return agent.Usagef("use a lower-case repository path such as project/component", "component %s: image %q is not a valid repository", c.Name, c.Image)
		}
	}
	return nil
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

// plan hashes every component and decides whether it is built.
func (o *Options) plan(ctx context.Context, lock *records.ComponentsLock) ([]*plan, error) {
	var plans []*plan
	for _, c := range o.Config.Components {
		src, err := changes.Hash(ctx, o.Workspace, c, changes.WithGo(o.Go), changes.WithExclude(o.JUnitPath))
		if errors.Is(err, exec.ErrNotFound) {
			return plans, agent.Usage("hash component "+c.Name, err, "put the Go toolchain on PATH (kind: go components need it; the agents image of make image has it)")
		}
		if err != nil {
			return plans, agent.Usage("hash component "+c.Name, err, "fix the component's path, kind or module in branchml.yaml")
		}
		p := &plan{c: c, src: src, res: &ComponentResult{Name: c.Name, SourceHash: src.Hash}}
		prev, ok := lock.Components[c.Name]
		switch {
		case o.Force:
			p.build, p.reason = true, "forced (--force)"
		case !ok:
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
			o.Log.Infof("%s: would build: %s", c.Name, p.reason)
		default:
			p.res.Action = ActionBuilt // until something fails
			o.Log.Infof("%s: building: %s", c.Name, p.reason)
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

// test runs the tests of every component to build and writes the JUnit XML.
func (o *Options) test(ctx context.Context, plans []*plan, res *Result) error {
	doc := &junit.Suites{Name: "branchml build"}
	var failed []string
	ran := false
	for _, p := range plans {
		if !p.build {
			continue
		}
		ran = true
		suites, ok, err := o.runTests(ctx, p)
		if err != nil {
			p.res.Action, p.res.Tests = ActionFailed, "failed"
			return agent.Failed("test "+p.c.Name, err, "check that the test command exists on the agent")
		}
		doc.Add(suites...)
		if ok {
			p.res.Tests = "passed"
			o.Log.Infof("%s: tests passed", p.c.Name)
		} else {
			p.res.Tests, p.res.Action = "failed", ActionFailed
			p.res.Reason = "tests failed"
			failed = append(failed, p.c.Name)
			o.Log.Errorf("%s: tests failed", p.c.Name)
		}
	}
	if !ran {
		return nil
	}
	if err := junit.Write(o.JUnitPath, doc); err != nil {
		return agent.Failed("write JUnit XML", err, "check that the workspace is writable")
	}
	res.JUnit = o.JUnitPath
	if len(failed) > 0 {
		for _, p := range plans {
			if p.build && p.res.Action != ActionFailed {
				p.res.Action, p.res.Reason = ActionFailed, "not built: tests of "+strings.Join(failed, ", ")+" failed"
			}
		}
		return agent.Failed("test "+strings.Join(failed, ", "), fmt.Errorf("%d of %d tests failed; nothing was pushed", doc.Failures+doc.Errors, doc.Tests),
			"fix the failing tests; the results are in "+o.JUnitPath)
	}
	return nil
}

// runTests runs one component's tests: `go test -json <pkg>/...` for Go
// components without a test command, the configured command otherwise.
func (o *Options) runTests(ctx context.Context, p *plan) ([]junit.Suite, bool, error) {
	start := time.Now()
	if len(p.c.Test) == 0 && p.c.Kind == "go" {
		pat := p.src.Package + "/..."
		if p.src.Package == "." {
			pat = "./..."
		}
		cmd := exec.CommandContext(ctx, o.Go, "test", "-json", pat)
		cmd.Dir = p.src.ModuleDir
		var stdout strings.Builder
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		runErr := cmd.Run()
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		var exitErr *exec.ExitError
		if runErr != nil && !errors.As(runErr, &exitErr) {
			return nil, false, runErr
		}
		in := stdout.String()
		if stderr.Len() > 0 {
			in += "\n" + stderr.String() // build errors of older go commands: become a (build) suite
		}
		if o.TestOutput != nil {
			io.WriteString(o.TestOutput, stderr.String())
		}
		suites, err := junit.FromGoTestJSON(strings.NewReader(in), p.c.Name+"/")
		if err != nil {
			return nil, false, err
		}
		ok := runErr == nil
		if ok {
			for _, s := range suites {
				if s.Failures+s.Errors > 0 {
					ok = false
				}
			}
		}
		return suites, ok, nil
	}
	if len(p.c.Test) == 0 {
		return nil, true, nil
	}
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
		return nil, false, ctx.Err()
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		return nil, false, fmt.Errorf("%s: %w", strings.Join(p.c.Test, " "), runErr)
	}
	return []junit.Suite{junit.CommandSuite(p.c.Name, p.c.Test, runErr == nil, out.String(), time.Since(start))}, runErr == nil, nil
}

func (o *Options) labels() map[string]string {
	l := map[string]string{imagebuild.LabelRevision: o.Commit}
	if o.SourceURL != "" {
		l[imagebuild.LabelSource] = o.SourceURL
	}
	return l
}

func (o *Options) buildAll(ctx context.Context, plans []*plan) error {
	for _, p := range plans {
		if !p.build {
			continue
		}
		start := time.Now()
		if err := o.buildOne(ctx, p); err != nil {
			p.res.Action, p.res.Reason = ActionFailed, "build failed"
			return err
		}
		d, _ := p.image.Digest()
		p.res.Digest = d.String()
		o.Log.Infof("%s: image %s built in %s", p.c.Name, d, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func (o *Options) buildOne(ctx context.Context, p *plan) error {
	switch p.c.Kind {
	case "go":
		var base v1.Image
		if p.c.Base != "" {
			b, err := o.pullBase(ctx, p.c.Base)
			if err != nil {
				return registryFailure("pull base image "+p.c.Base+" of "+p.c.Name, o.Registry.Host(), err)
			}
			base = b
		}
		built, err := imagebuild.BuildGo(ctx, imagebuild.GoImage{
			Name: p.c.Name, ModuleDir: p.src.ModuleDir, Package: p.src.Package, Binary: p.c.Binary,
			Base: base, Created: o.Created, Labels: o.labels(), Go: o.Go,
		})
		if err != nil {
			return agent.Failed("build "+p.c.Name, err, "fix the compile error above; `go build` of the component must succeed")
		}
		p.image = built.Image
	case "dockerfile":
		b, err := o.builder()
		if err != nil {
			return agent.Usage("build "+p.c.Name, err, "install a Dockerfile builder on the agent, or change the component to kind go")
		}
		dir, err := os.MkdirTemp("", "branchml-"+p.c.Name+"-*")
		if err != nil {
			return agent.Failed("build "+p.c.Name, err, "")
		}
		// The image reads its blobs from dir until pushed; removed when the process's temp is cleaned.
		img, err := b.Build(ctx, imagebuild.DockerfileBuild{
			Name: p.c.Name, Context: filepath.Join(o.Workspace, filepath.FromSlash(p.c.Path)),
			Dockerfile: dockerfilePath(o.Workspace, p.c), Labels: o.labels(), Created: o.Created, Dir: dir,
		})
		if err != nil {
			return agent.Failed("build "+p.c.Name+" with "+b.Name(), err, "fix the Dockerfile build; the builder's output is above")
		}
		p.image = img
	default:
		return agent.Usagef("use kind go or dockerfile", "component %s: kind %q is unknown", p.c.Name, p.c.Kind)
	}
	return nil
}

func dockerfilePath(workspace string, c config.Component) string {
	if c.Dockerfile == "" {
		return ""
	}
	return filepath.Join(workspace, filepath.FromSlash(c.Dockerfile))
}

// pullBase reads a base image: through the stage's registry when the
// reference starts with its host, else from the registry the reference names
// with the default keychain (Docker config).
func (o *Options) pullBase(ctx context.Context, ref string) (v1.Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(ref, o.Registry.Host()+"/") {
		return o.Registry.Pull(ctx, ref)
	}
	return remote.Image(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
}

var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Tag is the tag pushed with each image: "git-" and the commit's first 12 characters.
func Tag(commit string) string {
	if commit == "" {
		return ""
	}
	return "git-" + tagUnsafe.ReplaceAllString(short(commit), "_")
}

func (o *Options) pushAll(ctx context.Context, plans []*plan) error {
	for _, p := range plans {
		if !p.build {
			continue
		}
		pushed, err := o.Registry.Push(ctx, p.c.Image, Tag(o.Commit), p.image)
		if err != nil {
			p.res.Action, p.res.Reason = ActionFailed, "push failed"
			return registryFailure("push "+p.c.Name, o.Registry.Host(), err)
		}
		p.res.Image, p.res.Digest = pushed.Ref, pushed.Digest
		o.Log.Infof("%s: pushed %s", p.c.Name, pushed.Ref)
	}
	return nil
}

// registryFailure turns a registry error into a cli failure with a fix.
func registryFailure(what, host string, err error) error {
	var re *registry.Error
	if errors.As(err, &re) {
		switch {
		case re.Unauthorized():
			return agent.Failed(what, err, "check the credentials for "+re.Registry+": DOCKER_CONFIG (docker login) or REGISTRY_USERNAME/REGISTRY_PASSWORD; now using "+re.Credentials)
		case re.Temporary():
			return agent.Failed(what, err, "registry "+re.Registry+" is unavailable; run the stage again when it answers (nothing was written back)")
		}
	}
	return agent.Failed(what, err, "check backends.registry ("+host+") and the image names in branchml.yaml")
}

// newLock returns the lock after this run and whether it differs from old:
// built components get new entries, components gone from the config are
// dropped, the rest are kept as they are.
func newLock(old *records.ComponentsLock, o *Options, plans []*plan) (*records.ComponentsLock, bool) {
	next := &records.ComponentsLock{APIVersion: records.APIVersion, Kind: "ComponentsLock",
		SourceCommit: old.SourceCommit, Registry: old.Registry, Components: map[string]records.LockedComponent{}}
	changed := false
	for _, p := range plans {
		prev, had := old.Components[p.c.Name]
		if !p.build {
			next.Components[p.c.Name] = prev
			continue
		}
		changed = true
		if p.res.Digest == "" { // dry run or not pushed yet: keep the old entry
			if had {
				next.Components[p.c.Name] = prev
			}
			continue
		}
		binary := p.c.Binary
		if binary == "" && p.c.Kind == "go" {
			binary = "/ko-app/" + p.c.Name
		}
		next.Components[p.c.Name] = records.LockedComponent{Repository: p.c.Image, Image: p.res.Image, Digest: p.res.Digest,
			SourceHash: p.src.Hash, SourceCommit: o.Commit, Binary: binary}
	}
	for n := range old.Components {
		if _, ok := next.Components[n]; !ok {
			changed = true
		}
	}
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
		if p.build {
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
