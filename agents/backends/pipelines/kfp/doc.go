// Package kfp implements pipelines.Backend on the Kubeflow Pipelines API
// server's v2beta1 REST API through its generated go_http_client; task
// outputs (metrics) are read as KFP 2.x keeps them, from ML Metadata
// (kfp/mlmd) and the pipeline root's object store (kfp/objectstore).
//
// As an implementation of the pipelines backend it imports only packages of
// that concern (agents/backends/pipelines/...), agents/records,
// agents/config and helpers; never a stage, a command or another concern.
package kfp
