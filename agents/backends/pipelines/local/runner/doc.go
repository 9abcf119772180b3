// Package runner executes a composed Kubeflow Pipelines v2 IR (PipelineSpec)
// on one machine with KFP's semantics: nested DAGs, conditions (CEL, with
// cel-go), ParallelFor over lists, task outputs and artifacts with
// parallelismLimit, dsl.Collected and dsl.OneOf outputs, exit handlers and
// ignore_upstream_failure, task final status, importers, retries, every
// placeholder the KFP SDK emits (with {{$}} and executor_output.json), KFP's
// task caching, and the kfp-kubernetes platform spec where it has a local
// meaning (KubeConfig). Each task runs in an OCI container (runc or crun) on
// an overlay of its unpacked image, or as a host process
// (IsolationProcess). Run state is kept in a run directory (see State) with
// KFP v2beta1 runtime states, written atomically so other processes can read
// it and ask for cancellation. Hostile specs meet bounds (MaxIterations,
// MaxDAGDepth, MaxTasks, MaxSpecBytes, expression cost) with clear errors.
//
// As an implementation of the pipelines backend it imports only packages of
// that concern (agents/backends/pipelines/...), agents/records,
// agents/config and helpers; never a stage, a command or another concern.
package runner
