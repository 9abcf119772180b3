// Package changes computes the content hash of a component's sources, which
// the build stage compares with the components lock to build only what
// changed.
//
// As part of the build stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package changes
