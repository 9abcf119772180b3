// Package pipelinecmd is the branchml-pipeline agent (the kf-pipeline
// stage): its commands and flags. The stage's work is done by
// agents/stages/pipeline.Run.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package pipelinecmd
