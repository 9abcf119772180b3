// Package procid names a process so that it can be told apart from a later
// one that got the same PID: its PID plus its start time (field 22 of
// /proc/<pid>/stat, in clock ticks since boot). Signals go only to the
// process that was named (checked through a pidfd, so that a PID reused
// between the check and the signal cannot be hit), and Lock is an exclusive
// lock between processes whose file names its holder (PID, start time,
// command, since when), so that the one who waits can say who holds it.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package procid
