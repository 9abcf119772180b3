// Package kfp is a fake Kubeflow Pipelines API server (v2beta1 REST) for
// tests: pipelines, pipeline versions (multipart upload), runs with scripted
// state sequences and experiments, with response shapes after the v2beta1
// swagger of kubeflow/pipelines (backend/api/v2beta1/swagger), every
// request recorded, and faults injected by wrapping the handler.
//
// It is for tests only; it may import other fakes, helpers, agents/config,
// agents/records and backends' wire types, never an implementation, a stage
// or a command.
package kfp
