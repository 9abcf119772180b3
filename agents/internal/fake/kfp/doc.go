// Package kfp is a fake Kubeflow Pipelines API server (v2beta1 REST) for
// tests: pipelines, pipeline versions (multipart upload), runs with scripted
// state sequences and experiments, with response shapes after the v2beta1
// swagger of kubeflow/pipelines (backend/api/v2beta1/swagger), every
// request recorded, and faults injected by wrapping the handler. Task
// details carry no outputs unless a test sets them (SetTaskOutputs): an
// Argo-based KFP 2.x API server fills them from the workflow's nodes,
// which hold no artifact IDs. Launcher records a run's outputs in the
// ML Metadata and S3 fakes the way KFP's launcher does.
//
// It is for tests only; it may import other fakes, helpers, agents/config,
// agents/records and backends' wire types, never an implementation, a stage
// or a command.
package kfp
