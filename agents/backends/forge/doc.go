// Package forge is the interface to where the ML repository lives: reading
// files at a ref, writing files back to a branch as one commit, pull
// requests, commit statuses and comments. Implementations: GitHub
// (go-github) and a plain git remote (a bare repository on disk).
//
// As part of the forge backend it imports only packages of that concern
// (agents/backends/forge/...), agents/records, agents/config and helpers;
// never a stage, a command or another concern.
package forge
