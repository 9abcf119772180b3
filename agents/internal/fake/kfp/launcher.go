package kfp

import (
	"fmt"
	"strings"

	"github.com/branchml/branchml/agents/internal/fake/mlmd"
	"github.com/branchml/branchml/agents/internal/fake/s3"
)

// Launcher does, for tests, what KFP v2's launcher does when a task's
// executor is done (backend/src/v2/component in kubeflow/pipelines): it
// uploads each output to the pipeline root at
// "<root>/<pipeline>/<run-id>/<task>/<salt>/<output>" and records it in ML
// Metadata. Either store may be nil (then that half is skipped).
type Launcher struct {
	MLMD *mlmd.Server
	S3   *s3.Server
	// Root is the pipeline root, e.g. "minio://mlpipeline/v2/artifacts".
	Root string
}

// Output is one output of a task to launch.
type Output struct {
	Task, Name string
	// Type is the schema title, e.g. "system.Metrics".
	Type string
	// Files are the artifact's content: one entry "" for a file artifact,
	// or name → content for a directory artifact.
	Files map[string][]byte
	// Metadata become custom properties (logged metrics).
	Metadata map[string]any
}

// Record uploads and records o as an output of run (of pipeline, the
// spec's pipelineInfo.name) and returns the artifact's URI and its ML
// Metadata ID (0 without ML Metadata).
func (l *Launcher) Record(run Run, pipeline string, o Output) (string, int64, error) {
	root := strings.TrimRight(l.Root, "/")
	if run.PipelineRoot != "" {
		root = strings.TrimRight(run.PipelineRoot, "/")
	}
	runRoot := root + "/" + pipeline + "/" + run.ID
	uri := fmt.Sprintf("%s/%s/%s/%s", runRoot, o.Task, "b7c1e0a4-"+o.Task, o.Name)
	if l.S3 != nil {
		_, rest, _ := strings.Cut(uri, "://")
		bucket, key, _ := strings.Cut(rest, "/")
		for name, data := range o.Files {
			k := key
			if name != "" {
				k += "/" + name
			}
			if err := l.S3.Put(bucket, k, data); err != nil {
				return "", 0, err
			}
		}
	}
	if l.MLMD == nil {
		return uri, 0, nil
	}
	_, id, err := l.MLMD.RecordOutput(mlmd.Output{Pipeline: pipeline, RunID: run.ID, PipelineRoot: runRoot, Task: o.Task,
		PodName: run.Name + "-" + o.Task, Name: o.Name, Type: o.Type, URI: uri, Metadata: o.Metadata})
	return uri, id, err
}
