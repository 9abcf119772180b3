// Package retry runs an operation again after a temporary failure, waiting
// an exponential, jittered backoff between attempts, and honouring the
// caller's context; the agents' clients share it instead of each writing
// its own loop.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package retry
