// Package cli holds the conventions every branchml binary shares: common
// flags, the --params JSON file, logging with secrets masked, writing the
// result and error-details JSON (whose types and exit codes are in
// agents/internal/agent), timeouts and signal handling. Commands are built
// with Command and run with Run; only Main exits the process.
//
// It imports only agents/config and helpers under agents/internal; only the
// command packages and agents/cmd import it.
package cli
