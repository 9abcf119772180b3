// Package deploy is the branchml-deploy agent: its commands and flags. The
// work is done by agents/stages/deploy.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package deploycmd
