// Package umbrella is the branchml command: what operators run that is not a
// stage (configuration, Jenkins seeding, the embedded registry, quickstart).
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package branchmlcmd
