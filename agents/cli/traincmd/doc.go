// Package train is the branchml-train agent: its commands and flags, and
// the wiring of the backends the training stage uses (Wiring).
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package traincmd
