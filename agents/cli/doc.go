// Package cli holds the conventions every branchml binary shares: common
// flags, the --params JSON file, logging with secrets masked, the result and
// error-details JSON, exit codes, timeouts and signal handling. Commands are
// built with Command and run with Run; only Main exits the process.
//
// It imports only agents/config and helpers under agents/internal; the
// commands and the stages import it for its error and result types.
package cli
