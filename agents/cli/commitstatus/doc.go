// Package commitstatus sets the commit statuses of a stage through the
// forge the agents already hold (backends.forge: GitHub, or the local git
// remote), so that Jenkins needs no notify plugin: Wrap around a stage
// command's run function sets "branchml/<stage>" pending when the stage
// starts and success, failure (exit 1, 2, 3) or error (exit 130,
// interrupted) when it ends, each with the build URL; Command is
// `branchml commit-status`, which the Jenkins steps run for what no agent
// can report itself (a build aborted or timed out while a stage ran, an
// agent killed before it wrote its result).
//
// Statuses are set when --commit-status is on, or auto (the default) and
// the run belongs to a CI build (--build-url set) with a known commit. A
// status that cannot be set is logged as a warning and never fails the
// stage.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package commitstatus
