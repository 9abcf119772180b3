// Package runner executes a composed Kubeflow Pipelines v2 IR (PipelineSpec)
// on one machine: the root DAG's tasks in dependency order, independent ones
// in parallel, each as a local process started from its image's unpacked file
// system. Parameters, artifacts (local files and directories), output
// parameter files, the KFP placeholders and per-task retry policies follow the
// IR. Run state is kept in a run directory (see State) with KFP v2beta1
// runtime states, written atomically so other processes can read it and ask
// for cancellation.
//
// As an implementation of the pipelines backend it imports only packages of
// that concern (agents/backends/pipelines/...), agents/records,
// agents/config and helpers; never a stage, a command or another concern.
package runner
