// Package statuscmd is `branchml status`: one screen of the whole
// lifecycle of an ML repository, read from what the stages wrote back to
// their branches and from what serves, starting nothing: each stage's last
// record, and what serves at which weight since when, from which training
// commit (and its pull request), run, data and model snapshot and pipeline
// version.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package statuscmd
