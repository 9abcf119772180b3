// Package pipeline is the kf-pipeline stage: Run composes the KFP v2 IR
// with the built image digests and the configured resources, validates it,
// uploads it as a pipeline version (idempotent by content hash) and writes
// the pipeline lock back to the pipeline branch.
//
// As part of the pipeline stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package pipeline
