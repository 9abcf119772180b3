package kfp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/pipeline_client/pipeline_service"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/run_model"

	"github.com/branchml/branchml/agents/backends/pipelines/kfp/mlmd"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp/objectstore"
)

// ErrNoArtifactStore says that the client can read no task output: KFP 2.x
// keeps them in ML Metadata and the pipeline root, and neither is configured.
var ErrNoArtifactStore = errors.New("KFP 2.x keeps task outputs in ML Metadata and in the pipeline root's object store, and neither is configured: set backends.pipelines.metadata.address and backends.pipelines.objectStore.endpoint")

// WithMetadata reads task outputs from KFP's ML Metadata store.
func WithMetadata(m *mlmd.Client) Option { return func(o *options) { o.mlmd = m } }

// WithObjectStore reads artifact files from the pipeline root's object
// store (and finds them there when ML Metadata cannot be reached).
func WithObjectStore(s *objectstore.Store) Option { return func(o *options) { o.store = s } }

// reservedProperties are custom properties KFP's launcher sets on every
// artifact; the others of a system.Metrics artifact are logged metrics.
var reservedProperties = map[string]bool{"display_name": true, "store_session_info": true}

// Artifact reads output artifact of task of run runID as KFP 2.x exposes
// it. The artifact IDs come from run_details.task_details[].outputs when
// the API server lists them, else from ML Metadata (the run's
// system.PipelineRun context, the task's execution, its OUTPUT event named
// artifact). A system.Metrics artifact with logged metrics in its custom
// properties is returned as the JSON object of those metrics (dotted names
// nested: "validation.auc" → {"validation":{"auc":…}}); any other artifact
// is read from its URI in the object store (file names a file inside a
// directory artifact, "" its only file). When ML Metadata cannot be
// reached and an object store is configured, the artifact is looked up in
// the run's folder of the pipeline root instead (with a warning). Every
// error names the task, the artifact and where it looked; a missing run,
// task or artifact matches pipelines.ErrNotFound.
func (c *Client) Artifact(ctx context.Context, runID, task, artifact, file string) ([]byte, error) {
	run, err := c.getRun(ctx, runID)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("output %s of task %s of run %s", artifact, task, runID)
	ids, err := outputIDs(run, task, artifact)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var unreachable error
	if c.o.mlmd != nil {
		var arts []mlmd.Artifact
		if ids != nil {
			arts, err = c.o.mlmd.ArtifactsByID(ctx, ids)
		} else {
			arts, err = c.o.mlmd.TaskOutput(ctx, runID, task, artifact)
		}
		var ue *mlmd.UnreachableError
		switch {
		case err == nil:
			return c.content(ctx, what, arts[len(arts)-1], file)
		case !errors.As(err, &ue) || c.o.store == nil:
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		unreachable = err
		c.o.log.Warnf("%v; looking for %s in the pipeline root instead", err, what)
	}
	if c.o.store == nil {
		return nil, fmt.Errorf("%s: %w", what, ErrNoArtifactStore)
	}
	pipeline, root, err := c.runRoot(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	data, uri, err := c.o.store.Find(ctx, root, pipeline, runID, task, artifact, file)
	if err != nil {
		if unreachable != nil {
			return nil, fmt.Errorf("%s: %v; and in the pipeline root: %w", what, unreachable, err)
		}
		return nil, fmt.Errorf("%s (ML Metadata not configured) in the pipeline root: %w", what, err)
	}
	c.o.log.Infof("%s read from %s", what, uri)
	return data, nil
}

// outputIDs returns the artifact IDs the run details list for output
// artifact of task (nil when they list none, as Argo-based KFP 2.x
// servers do).
func outputIDs(run *run_model.V2beta1Run, task, artifact string) ([]int64, error) {
	if run.RunDetails == nil {
		return nil, nil
	}
	for _, t := range run.RunDetails.TaskDetails {
		if t == nil || t.DisplayName != task {
			continue
		}
		list, ok := t.Outputs[artifact]
		if !ok || len(list.ArtifactIds) == 0 {
			continue
		}
		ids := make([]int64, 0, len(list.ArtifactIds))
		for _, s := range list.ArtifactIds {
			id, err := mlmd.ParseID(s)
			if err != nil {
				return nil, fmt.Errorf("run_details of task %s: %w", task, err)
			}
			ids = append(ids, id)
		}
		return ids, nil
	}
	return nil, nil
}

// content is the metrics of a system.Metrics artifact's custom properties,
// else the artifact's file from the object store.
func (c *Client) content(ctx context.Context, what string, a mlmd.Artifact, file string) ([]byte, error) {
	if a.Type == mlmd.MetricsType && (file == "" || !strings.Contains(file, "/")) {
		if m := loggedMetrics(a.Properties); m != nil {
			return json.Marshal(m)
		}
	}
	if c.o.store == nil {
		return nil, fmt.Errorf("%s: ML Metadata artifact %d (%s) is the file %s, and no object store is configured to read it: set backends.pipelines.objectStore.endpoint", what, a.ID, a.Type, a.URI)
	}
	data, err := c.o.store.Read(ctx, a.URI, file)
	if err != nil {
		return nil, fmt.Errorf("%s: ML Metadata artifact %d (%s): %w", what, a.ID, a.Type, err)
	}
	return data, nil
}

// loggedMetrics nests the logged metrics of custom properties by their
// dotted names; nil when there are none.
func loggedMetrics(props map[string]any) map[string]any {
	keys := make([]string, 0, len(props))
	for k := range props {
		if !reservedProperties[k] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	out := map[string]any{}
	for _, k := range keys {
		put(out, k, props[k])
	}
	return out
}

// put sets m[a][b]… = v for key "a.b…"; a key whose path is taken by a
// value stays flat.
func put(m map[string]any, key string, v any) {
	parts := strings.Split(key, ".")
	cur := m
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(map[string]any)
		if !ok {
			if _, taken := cur[p]; taken {
				m[key] = v
				return
			}
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	if _, taken := cur[parts[len(parts)-1]]; taken {
		m[key] = v
		return
	}
	cur[parts[len(parts)-1]] = v
}

// runRoot returns the run's pipeline name (pipelineInfo.name, the folder
// KFP's driver writes below the pipeline root) and its pipeline root: the
// run's runtime_config.pipeline_root, else the spec's defaultPipelineRoot,
// else KFP's default (in the configured bucket, when one is).
func (c *Client) runRoot(ctx context.Context, run *run_model.V2beta1Run) (string, string, error) {
	spec := run.PipelineSpec
	if spec == nil && run.PipelineVersionReference != nil {
		var err error
		if spec, err = c.versionSpec(ctx, run.PipelineVersionReference.PipelineID, run.PipelineVersionReference.PipelineVersionID); err != nil {
			return "", "", err
		}
	}
	ps := pipelineSpecOf(spec)
	info, _ := ps["pipelineInfo"].(map[string]any)
	name, _ := info["name"].(string)
	if name == "" {
		return "", "", errors.New("the run's pipeline spec has no pipelineInfo.name: cannot find its folder in the pipeline root")
	}
	root := objectstore.DefaultPipelineRoot
	if b := c.o.store.Bucket(); b != "" {
		root = "minio://" + b + "/v2/artifacts"
	}
	if r, _ := ps["defaultPipelineRoot"].(string); r != "" {
		root = r
	}
	if run.RuntimeConfig != nil && run.RuntimeConfig.PipelineRoot != "" {
		root = run.RuntimeConfig.PipelineRoot
	}
	return name, root, nil
}

// pipelineSpecOf returns the PipelineSpec of a pipeline_spec value: the
// spec itself, or its "pipeline_spec" member when the server returns the
// spec with its platform spec.
func pipelineSpecOf(spec any) map[string]any {
	m, _ := spec.(map[string]any)
	if inner, ok := m["pipeline_spec"].(map[string]any); ok {
		return inner
	}
	return m
}

func (c *Client) versionSpec(ctx context.Context, pid, vid string) (any, error) {
	var spec any
	err := c.call(ctx, "get pipeline version", func(ctx context.Context) error {
		p := pipeline_service.NewGetPipelineVersionParamsWithContext(ctx)
		p.PipelineID, p.PipelineVersionID = pid, vid
		res, err := c.pipelines.GetPipelineVersion(p, c.auth)
		if err != nil {
			return err
		}
		spec = res.Payload.PipelineSpec
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get pipeline version %s: %w", vid, err)
	}
	return spec, nil
}
