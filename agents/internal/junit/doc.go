// Package junit writes test results as JUnit XML for Jenkins' junit step,
// converting the event stream of `go test -json` (cmd/test2json's format) or
// the outcome of any test command.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package junit
