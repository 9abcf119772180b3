// Package build is the branchml-build agent: its commands and flags. The
// stage's work is done by agents/stages/build.Run.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package buildcmd
