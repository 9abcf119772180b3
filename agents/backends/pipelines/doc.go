// Package pipelines is the interface to a pipeline service that stores
// pipeline versions and runs them: Kubeflow Pipelines (v2beta1 REST) or the
// embedded local runner. Shapes and state names follow KFP v2beta1.
//
// As part of the pipelines backend it imports only packages of that concern
// (agents/backends/pipelines/...), agents/records, agents/config and
// helpers; never a stage, a command or another concern.
package pipelines
