// Package loadgen is a small bounded load generator for TF Serving's REST
// predict endpoint on loopback: a fixed number of requests (or until the
// context ends) from a bounded number of workers at an optional rate, with
// per-variant counts read from the gateway's response header.
//
// As part of the deploy stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package loadgen
