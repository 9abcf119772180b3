// Package mlmd is a fake ML Metadata store for tests: a gRPC
// MetadataStoreService (the official protos of
// github.com/kubeflow/pipelines/third_party/ml-metadata) served on
// 127.0.0.1, keeping types, artifacts, executions, contexts, events,
// attributions and associations in memory, with every call recorded and
// faults injected per method. RecordOutput writes a task's output the way
// KFP's v2 launcher does (backend/src/v2/metadata in kubeflow/pipelines):
// run context "system.PipelineRun" named by the run ID under the
// "system.Pipeline" context, a "system.ContainerExecution" whose custom
// property task_name names the task, and the artifact joined to it by an
// OUTPUT event whose path key is the output's name.
//
// It is for tests only; it may import other fakes, helpers, agents/config,
// agents/records and backends' wire types, never an implementation, a stage
// or a command.
package mlmd
