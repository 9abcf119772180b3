// Package filelock is an exclusive lock between processes on one machine,
// held on a file: flock(2) on Unix (released by the kernel when the holder
// dies), an exclusive directory elsewhere. The local forge guards its pull
// request numbering with it, and the local storage backend its state.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package filelock
