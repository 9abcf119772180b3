package agent

import (
	"errors"
	"fmt"

	"github.com/branchml/branchml/agents/config"
)

// Exit codes of every branchml binary (documented in README.md).
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitGate        = 3
	ExitInterrupted = 130
)

// Error is a failure with its exit code and the three parts of the
// error-details JSON: what failed, why, and what to do about it.
type Error struct {
	Code int
	What string
	Fix  string
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.What
	}
	if e.What == "" {
		return e.Err.Error()
	}
	return e.What + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Failed is a stage failure (exit 1): what names the step and the object
// ("push djia30/train"), fix says what to do ("" when nothing helps but a retry).
func Failed(what string, err error, fix string) *Error {
	return &Error{Code: ExitFailed, What: what, Err: err, Fix: fix}
}

// Usage is bad usage or configuration (exit 2); nothing was changed.
func Usage(what string, err error, fix string) *Error {
	return &Error{Code: ExitUsage, What: what, Err: err, Fix: fix}
}

// Gate is a gate not met or a rollout rolled back (exit 3).
func Gate(what string, err error, fix string) *Error {
	return &Error{Code: ExitGate, What: what, Err: err, Fix: fix}
}

// Usagef formats a usage error without a cause.
func Usagef(fix, format string, args ...any) *Error {
	return &Error{Code: ExitUsage, Err: fmt.Errorf(format, args...), Fix: fix}
}

// StateError is corrupted state: a file the agents keep state in (a record
// or lock on a stage branch, a snapshot) that does not parse, is truncated,
// or does not match what recorded it. It is never warned about and worked
// around: every agent stops with exit code 2 (ExitUsage: nothing was
// changed), names the file and says how to repair it, whatever error wraps
// it (see CodeOf and Details).
type StateError struct {
	// File names the file: "<branch>:<path>" for a file on a branch (git's
	// rev:path), else a local path or object name.
	File string
	Err  error
	// Fix says how to repair the file.
	Fix string
}

func (e *StateError) Error() string { return "corrupted state: " + e.File + ": " + e.Err.Error() }

func (e *StateError) Unwrap() error { return e.Err }

// FixOf returns what to do about err: the repair of the file for corrupted
// state (a *StateError anywhere in the chain), else the outermost *Error's
// fix ("" when none).
func FixOf(err error) string {
	var se *StateError
	if errors.As(err, &se) && se.Fix != "" {
		return se.Fix
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Fix
	}
	return ""
}

// CodeOf maps an error to its exit code: 2 for corrupted state (a
// *StateError anywhere in the chain), else an *Error's own code, 2 for a
// configuration ValidationError, 1 otherwise (0 for nil).
func CodeOf(err error) int {
	if err == nil {
		return ExitOK
	}
	var se *StateError
	if errors.As(err, &se) {
		return ExitUsage
	}
	var e *Error
	if errors.As(err, &e) && e.Code != 0 {
		return e.Code
	}
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		return ExitUsage
	}
	return ExitFailed
}
