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

// CodeOf maps an error to its exit code: an *Error's own code, 2 for a
// configuration ValidationError, 1 otherwise (0 for nil).
func CodeOf(err error) int {
	if err == nil {
		return ExitOK
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
