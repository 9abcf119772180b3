// Package pipelinespec composes, validates and hashes KFP v2 IR pipeline
// specs (the YAML the KFP compiler writes: a PipelineSpec document,
// optionally followed by a PlatformSpec document): it pins container images
// to the digests of the components lock and sets per-task resources. It
// reads and writes YAML 1.2 as the KFP API server does, and validates by
// KFP's rules (backend-neutral: what KFP accepts, it accepts).
//
// As part of the pipeline stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package pipelinespec
