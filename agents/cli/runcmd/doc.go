// Package runcmd is `branchml run PIPELINE.yaml`: it runs any compiled KFP
// v2 pipeline with the local runner, outside the stage flow (no git, no
// lock), and keeps the run in the state directory for
// `branchml-train status RUN_ID`.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package runcmd
