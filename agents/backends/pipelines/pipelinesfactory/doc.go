// Package backends picks the pipelines.Backend that branchml.yaml's
// backends.pipelines.type names: "kfp" (Kubeflow Pipelines v2beta1) or
// "local" (the embedded runner).
//
// As the factory of the pipelines backend it imports only packages of that
// concern (agents/backends/pipelines/...), agents/records, agents/config and
// helpers; never a stage, a command or another concern.
package pipelinesfactory
