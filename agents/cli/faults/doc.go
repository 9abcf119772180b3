// Package faults holds the fault-injection tests of the agents run as real
// processes: kill -9 at random moments of the quickstart's flow followed by
// a plain rerun, and corrupted records read by every agent. It has no code
// of its own outside its tests.
//
// As a command package it may import the stages, the backends, records,
// config, the helpers and other command packages.
package faults
