package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/pipeline/pipelinespec"
)

// ComposedPath is where the composed spec is written back on the pipeline
// branch, for the local backend and for humans.
const ComposedPath = records.PipelineSpecPath

// Options are the inputs of one pipeline stage run.
type Options struct {
	Config  *config.Config
	Forge   forge.Forge
	Backend pipelines.Backend
	// Workspace is the checked-out ML repository ("" = the config's directory).
	Workspace string
	// Commit is the source commit; it names the version.
	Commit string
	// DryRun composes, validates and prints the diff against the version on
	// the server (or the composed spec on the branch); it changes nothing.
	DryRun bool
	Log    logrus.FieldLogger
	// Out receives the dry-run diff (nil: discarded).
	Out io.Writer
}

// Outputs are the stage's result outputs.
type Outputs struct {
	// Status is "created", "unchanged" or, on a dry run, "planned".
	Status       string            `json:"status"`
	PipelineID   string            `json:"pipelineId,omitempty"`
	PipelineName string            `json:"pipelineName"`
	VersionID    string            `json:"versionId,omitempty"`
	VersionName  string            `json:"versionName"`
	SpecHash     string            `json:"specHash"`
	Images       map[string]string `json:"images"`
	// Commit is the write-back commit on the pipeline branch ("" on a dry
	// run, and when the branch already held the same lock and composed spec
	// so nothing was written back).
	Commit string `json:"commit,omitempty"`
	// Diff is the dry run's unified diff against the previous composed spec.
	Diff string `json:"diff,omitempty"`
	// Offline says why a dry run could not ask the pipelines server (it then
	// diffed against the composed spec on the pipeline branch).
	Offline string `json:"offline,omitempty"`
}

// VersionName is the deterministic version name of a spec built from
// commit: the commit's first 12 characters, "-", the hash's first 12 hex
// digits (e.g. "3f2a9c1b7d4e-9a8b7c6d5e4f").
func VersionName(commit, hash string) string {
	if len(commit) > 12 {
		commit = commit[:12]
	}
	h := strings.TrimPrefix(hash, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return pipelines.ShortName(commit + "-" + h)
}

// latester is a backend that can return its newest version's spec (KFP).
type latester interface {
	LatestVersion(ctx context.Context, name string) (*pipelines.Version, []byte, error)
}

// Run composes the pipeline spec with the components lock of the build
// branch, uploads it as a pipeline version (unless one with the same hash
// exists) and writes the pipeline lock and the composed spec back to the
// pipeline branch. Write-backs are idempotent: when the version existed and
// the branch's lock names it (same pipeline, version, spec hash and images)
// the lock is kept as it is, and the composed spec is written only when it
// differs, so a rerun (for example the build Jenkins starts for the
// write-back commit itself) pushes nothing. Bad input is a agent.Usage error;
// a failed upload a agent.Failed error, and nothing is written back.
func Run(ctx context.Context, o Options) (*agent.Result, error) {
	if o.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		o.Log = l
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	cfg := o.Config
	if cfg == nil || o.Forge == nil || (o.Backend == nil && !o.DryRun) {
		return nil, agent.Usagef("", "pipeline stage: config, forge and backend are required")
	}
	if o.Commit == "" {
		return nil, agent.Usagef("pass --commit (Jenkins: GIT_COMMIT)", "no source commit: the version name is made from it")
	}
	buildBranch, pipeBranch := cfg.Branches[config.StageBuild], cfg.Branches[config.StagePipeline]
	if buildBranch == "" || pipeBranch == "" {
		return nil, agent.Usagef("map both stages in branches: of branchml.yaml", "branches.build %q / branches.pipeline %q: both must be set", buildBranch, pipeBranch)
	}
	specPath := cfg.Pipeline.Spec
	if !filepath.IsAbs(specPath) {
		if o.Workspace != "" {
			specPath = filepath.Join(o.Workspace, specPath)
		} else {
			specPath = cfg.Path(specPath)
		}
	}
	raw, err := config.ReadFileLimited(specPath, config.MaxSpecBytes)
	if err != nil {
		return nil, agent.Usage("read pipeline spec", err, "set pipeline.spec in branchml.yaml to the compiled KFP v2 IR YAML (relative to the repository root)")
	}
	lockRaw, err := o.Forge.ReadFile(ctx, buildBranch, records.ComponentsLockPath)
	if errors.Is(err, forge.ErrNotFound) {
		return nil, agent.Usage("read components lock", fmt.Errorf("%s on branch %s: %w", records.ComponentsLockPath, buildBranch, err), "run the build stage first (merge into "+buildBranch+")")
	}
	if err != nil {
		return nil, agent.Failed("read components lock", err, "check the forge settings and credentials")
	}
	var lock records.ComponentsLock
	if err := records.ParseJSON(buildBranch+":"+records.ComponentsLockPath, lockRaw, &lock); err != nil || lock.Kind != "ComponentsLock" {
		if err == nil {
			err = fmt.Errorf("kind %q, want ComponentsLock", lock.Kind)
		}
		return nil, agent.Usage("read components lock", fmt.Errorf("%s on %s: %w", records.ComponentsLockPath, buildBranch, err), "re-run the build stage to rewrite it")
	}
	composed, err := pipelinespec.Compose(raw, &lock, cfg.Pipeline.Resources)
	if err != nil {
		return nil, agent.Usage("compose "+cfg.Pipeline.Spec, err, "fix the pipeline spec or pipeline.resources as named above")
	}
	name := cfg.Pipeline.Name
	if name == "" {
		name = cfg.Project
	}
	out := &Outputs{
		PipelineName: pipelines.ShortName(name), VersionName: VersionName(o.Commit, composed.Hash),
		SpecHash: composed.Hash, Images: composed.Images,
	}
	o.Log.Infof("composed %s: %s, %d images pinned", cfg.Pipeline.Spec, composed.Hash, len(composed.Images))

	// A backend that can tell what it cannot run (the local runner) says so
	// now, for a plan and an upload alike.
	if c, ok := o.Backend.(pipelines.SpecChecker); ok {
		if err := c.CheckSpec(ctx, composed.YAML); err != nil {
			return nil, agent.Usage("check "+cfg.Pipeline.Spec+" against the "+cfg.Backends.Pipelines.Type+" pipelines backend", err,
				"change the pipeline, or use a backend that runs it (backends.pipelines.type kfp)")
		}
	}
	if o.DryRun {
		return dryRun(ctx, o, out, composed, pipeBranch)
	}
	v, err := o.Backend.UploadVersion(ctx, pipelines.Upload{
		PipelineName: name, Description: cfg.Pipeline.Description, VersionName: out.VersionName,
		Spec: composed.YAML, SpecHash: composed.Hash,
	})
	if err != nil {
		return nil, agent.Failed("upload pipeline "+name+" version "+out.VersionName, err, uploadFix(err))
	}
	out.PipelineID, out.VersionID, out.VersionName = v.PipelineID, v.VersionID, v.VersionName
	out.Status = "unchanged"
	if v.Created {
		out.Status = "created"
	}
	lockOut := records.PipelineLock{
		APIVersion: records.APIVersion, Kind: "PipelineLock", SourceCommit: o.Commit,
		Backend: cfg.Backends.Pipelines.Type, Endpoint: cfg.Backends.Pipelines.Endpoint,
		PipelineID: v.PipelineID, PipelineName: v.PipelineName, VersionID: v.VersionID, VersionName: v.VersionName,
		SpecHash: composed.Hash, Images: composed.Images,
	}
	files, what, err := writeBackFiles(ctx, o, pipeBranch, v, lockOut, composed.YAML)
	if err != nil {
		return nil, err
	}
	summary := fmt.Sprintf("pipeline %s version %s %s", v.PipelineName, v.VersionName, out.Status)
	if len(files) == 0 {
		// Idempotent: writing the same lock with another sourceCommit would
		// push a commit that triggers another build of the branch, forever.
		o.Log.Infof("pipeline %s version %s (%s): %s; %s and %s on %s are up to date, nothing written back",
			v.PipelineName, v.VersionName, v.VersionID, out.Status, records.PipelineLockPath, ComposedPath, pipeBranch)
		return &agent.Result{Summary: summary + "; nothing written back", Outputs: out}, nil
	}
	sha, err := o.Forge.WriteBack(ctx, forge.WriteBack{
		Branch:  pipeBranch,
		Files:   files,
		Message: fmt.Sprintf("branchml pipeline: %s %s for %s", what, v.VersionName, o.Commit),
	})
	if err != nil {
		return nil, agent.Failed("write back to "+pipeBranch, err, "re-run the stage: the upload is idempotent and will be found")
	}
	out.Commit = sha
	o.Log.Infof("pipeline %s version %s (%s): %s", v.PipelineName, v.VersionName, v.VersionID, out.Status)
	return &agent.Result{Summary: summary, Outputs: out}, nil
}

// writeBackFiles returns the files to write back to the pipeline branch and
// what the commit is about. A version that was not created (its hash
// existed) leaves a lock on the branch that names the same version, spec
// hash and images alone: that lock's sourceCommit is the commit that created
// the version. The composed spec is written only when it differs from the
// branch's. Nothing to write gives no files.
func writeBackFiles(ctx context.Context, o Options, branch string, v *pipelines.Version, lock records.PipelineLock, composed []byte) (map[string][]byte, string, error) {
	files := map[string][]byte{}
	writeLock := true
	if !v.Created {
		raw, err := o.Forge.ReadFile(ctx, branch, records.PipelineLockPath)
		switch {
		case err == nil:
			var cur records.PipelineLock
			if jerr := json.Unmarshal(raw, &cur); jerr != nil {
				o.Log.Warnf("%s on %s is not a pipeline lock (%v): rewriting it", records.PipelineLockPath, branch, jerr)
			} else if sameVersion(&cur, &lock) {
				writeLock = false
			}
		case !errors.Is(err, forge.ErrNotFound):
			return nil, "", agent.Failed("read "+records.PipelineLockPath+" on "+branch, err, "check the forge settings and credentials")
		}
	}
	what := "version"
	if writeLock {
		js, err := json.MarshalIndent(lock, "", "  ")
		if err != nil {
			return nil, "", agent.Failed("encode pipeline lock", err, "")
		}
		files[records.PipelineLockPath] = append(js, '\n')
	}
	cur, err := o.Forge.ReadFile(ctx, branch, ComposedPath)
	switch {
	case err == nil && bytes.Equal(cur, composed):
	case err == nil || errors.Is(err, forge.ErrNotFound):
		files[ComposedPath] = composed
		if !writeLock {
			what = "composed spec of version"
		}
	default:
		return nil, "", agent.Failed("read "+ComposedPath+" on "+branch, err, "check the forge settings and credentials")
	}
	return files, what, nil
}

// sameVersion reports whether two pipeline locks name the same version of
// the same pipeline on the same backend, with the same spec hash and
// images; the source commit does not count.
func sameVersion(a, b *records.PipelineLock) bool {
	if a.APIVersion != b.APIVersion || a.Kind != b.Kind || a.Backend != b.Backend || a.Endpoint != b.Endpoint ||
		a.PipelineID != b.PipelineID || a.PipelineName != b.PipelineName || a.VersionID != b.VersionID ||
		a.VersionName != b.VersionName || a.SpecHash != b.SpecHash || len(a.Images) != len(b.Images) {
		return false
	}
	for k, v := range a.Images {
		if w, ok := b.Images[k]; !ok || w != v {
			return false
		}
	}
	return a.SourceCommit != ""
}

func uploadFix(err error) string {
	var ae pipelines.StatusError
	if errors.As(err, &ae) {
		switch {
		case ae.HTTPStatus() == 401 || ae.HTTPStatus() == 403:
			return "check KFP_TOKEN (or KFP_TOKEN_FILE) and backends.pipelines.namespace"
		case ae.Temporary():
			return "the KFP API server is unavailable; re-run the stage later"
		}
	}
	return "check backends.pipelines in branchml.yaml and the KFP API server's logs"
}

// dryRun prints the diff of the composed spec against the newest version
// on the server (KFP), else against the composed spec on the pipeline branch.
func dryRun(ctx context.Context, o Options, out *Outputs, c *pipelinespec.Composed, branch string) (*agent.Result, error) {
	var prev []byte
	against := "nothing (first version)"
	offline := ""
	if l, ok := o.Backend.(latester); ok {
		v, spec, err := l.LatestVersion(ctx, out.PipelineName)
		if err != nil && unreachable(err) && ctx.Err() == nil {
			// A plan is still worth having when the server is down: say so
			// and what was checked without it.
			offline = fmt.Sprintf("the KFP API server at %s could not be reached (%v)", o.Config.Backends.Pipelines.Endpoint, err)
			o.Log.Warnf("%s: planned offline: the spec was composed and validated, %d images pinned from %s, hash %s; diffed against %s on %s instead of the server's newest version",
				offline, len(c.Images), records.ComponentsLockPath, out.SpecHash, ComposedPath, branch)
			out.Offline = offline
			v, spec, err = nil, nil, nil
		}
		if err != nil {
			return nil, agent.Failed("read the latest pipeline version", err, uploadFix(err))
		}
		if v != nil {
			prev, err = serverYAML(spec)
			if err != nil {
				return nil, agent.Failed("read the latest pipeline version", err, "")
			}
			against = "version " + v.VersionName + " on the server"
		}
	}
	if prev == nil {
		b, err := o.Forge.ReadFile(ctx, branch, ComposedPath)
		switch {
		case err == nil:
			prev, against = diffText(b), ComposedPath+" on "+branch
		case !errors.Is(err, forge.ErrNotFound):
			return nil, agent.Failed("read "+ComposedPath, err, "check the forge settings and credentials")
		}
	}
	out.Status = "planned"
	out.Diff = Diff(string(prev), string(diffText(c.YAML)), against, "composed")
	fmt.Fprintf(o.Out, "diff against %s:\n%s", against, out.Diff)
	summary := fmt.Sprintf("would upload pipeline %s version %s (%s)", out.PipelineName, out.VersionName, out.SpecHash)
	if out.Diff == "" {
		summary = fmt.Sprintf("pipeline %s unchanged against %s", out.PipelineName, against)
	}
	if offline != "" {
		summary += fmt.Sprintf(" — planned offline: %s; checked without it: the spec composes and validates, %d images pinned, diff against %s", offline, len(c.Images), against)
	}
	return &agent.Result{Summary: summary, Outputs: out}, nil
}

// unreachable reports an error that says nothing about the plan: the
// server did not answer (network error, timeout) or answered a temporary
// 5xx. A 4xx (401, 403, 404 …) is a real answer and is not.
func unreachable(err error) bool {
	var se pipelines.StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	return true
}

// serverYAML turns a version's pipeline_spec (JSON, either the
// PipelineSpec or {"pipeline_spec":…, "platform_spec":…}) into the text
// dry runs diff (pipelinespec.Document.DiffText).
func serverYAML(spec []byte) ([]byte, error) {
	if len(spec) == 0 {
		return nil, nil
	}
	d, err := pipelinespec.FromJSON(spec)
	if err != nil {
		return nil, err
	}
	return d.DiffText()
}

// diffText is a composed spec (YAML) as dry runs diff it; the text as is
// when it does not load.
func diffText(y []byte) []byte {
	d, err := pipelinespec.Load(y)
	if err != nil {
		return y
	}
	out, err := d.DiffText()
	if err != nil {
		return y
	}
	return out
}
