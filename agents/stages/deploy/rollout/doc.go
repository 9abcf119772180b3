// Package rollout is the canary and A/B control loop shared by every serving
// backend: deploy the candidate as canary, then every interval analyse the
// canary (request count, success rate, p99 latency, smoke predictions) and
// step its weight up, promote it at the last step, or roll it back when
// failed analyses reach the threshold.
//
// As part of the deploy stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package rollout
