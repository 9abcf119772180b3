// Package fakehttp is what the shared fake servers have in common: a
// Recorder that keeps every request a fake received, and Faults that wrap
// a fake's handler to inject errors and delays, applied by an Injector.
// Service-specific faults (error bodies, rate limits) stay in each fake.
//
// It is for tests only; it may import other fakes, helpers, agents/config,
// agents/records and backends' wire types, never an implementation, a stage
// or a command.
package fakehttp
