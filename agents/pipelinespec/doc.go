// Package pipelinespec composes, validates and hashes KFP v2 IR pipeline
// specs (the YAML the KFP compiler writes: a PipelineSpec document,
// optionally followed by a PlatformSpec document): it pins container images
// to the digests of the components lock and sets per-task resources.
package pipelinespec
