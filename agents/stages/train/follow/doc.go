// Package follow follows a pipeline run until it ends: it polls the run's
// state through a pipelines.Backend, logs progress lines (state changes,
// tasks done/total, elapsed time), enforces a deadline and stall detection
// (cancelling the run remotely in both cases), rides out bursts of transient
// errors, and cancels the run when its context is cancelled (an abort).
// One poll is one Tick, so tests step it with an injected clock.
//
// As part of the train stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package follow
