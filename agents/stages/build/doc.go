// Package build is the build-components stage: it hashes each component's
// sources, skips those unchanged since the components lock, runs the tests of
// the others (JUnit XML for Jenkins), builds their images without a daemon,
// pushes them and writes the lock back to the build branch.
//
// As part of the build stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package build
