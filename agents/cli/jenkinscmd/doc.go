// Package cmd is `branchml jenkins seed|trigger|status|logs`: the operators'
// commands that drive Jenkins through package jenkins. Register Command() in
// the branchml umbrella application.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package jenkinscmd
