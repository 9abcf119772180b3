// Package mlmd reads what Kubeflow Pipelines v2 records in ML Metadata: the
// output artifacts of a run's tasks (their URIs in the pipeline root, their
// types and custom properties), through the MetadataStoreService gRPC API
// (the Go client and protos of
// github.com/kubeflow/pipelines/third_party/ml-metadata). The records it
// reads are those KFP's launcher writes (backend/src/v2/metadata in
// kubeflow/pipelines): a "system.PipelineRun" context named by the run ID,
// executions with a task_name custom property, OUTPUT events whose path
// key is the output's name.
//
// As part of the kfp backend it imports only packages of the pipelines
// concern, agents/records, agents/config and helpers.
package mlmd
