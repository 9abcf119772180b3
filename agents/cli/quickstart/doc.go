// Package quickstart plays branchml's whole flow on one machine: it makes a
// local ML repository from examples/djia30 (a bare remote plus a working
// clone with the stage branches), then merges into each stage branch and runs
// that branch's stage exactly as the Jenkins pipeline does (the same agent
// entry point and --params file, through package stagerun), on the real DJIA
// 30 data, with every backend local.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package quickstart
