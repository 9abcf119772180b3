// Package local is the embedded serving backend: the serving command (a
// TF-Serving-compatible model server) runs as a stable and a canary process
// on loopback, each with a model config file listing only its version,
// behind a gateway that splits traffic by weight and counts requests per
// variant. Processes are recorded in <stateDir>/serving/<model>/ so that
// status works from another process and a later backend adopts them.
//
// As an implementation of the serving backend it imports only packages of
// that concern (agents/backends/serving/...), agents/records, agents/config
// and helpers; never a stage, a command or another concern.
package local
