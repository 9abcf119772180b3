// Package rollout is the canary and A/B control loop shared by every serving
// backend: deploy the candidate as canary, then every interval analyse the
// canary (request count, success rate, p99 latency, smoke predictions) and
// step its weight up, promote it at the last step, or roll it back when
// failed analyses reach the threshold.
package rollout
