package procid

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrGone is returned (wrapped) when a named process no longer runs: it
// exited, or its PID now belongs to another process.
var ErrGone = errors.New("process is gone")

// ID is one process: its PID and its start time in clock ticks since boot.
// The zero ID names no process.
type ID struct {
	PID int `json:"pid"`
	// Start is field 22 (starttime) of /proc/<pid>/stat.
	Start uint64 `json:"startTicks"`
}

// String is "pid N".
func (id ID) String() string { return "pid " + strconv.Itoa(id.PID) }

// Self is the calling process.
func Self() ID {
	id, _ := Of(os.Getpid())
	return id
}

// Of returns the ID of the process that has pid now; an error wrapping
// ErrGone when none has.
func Of(pid int) (ID, error) {
	if pid <= 0 {
		return ID{}, fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	st, err := startTicks(pid)
	if err != nil {
		return ID{}, err
	}
	return ID{PID: pid, Start: st}, nil
}

// startTicks reads starttime from /proc/<pid>/stat. The command name
// (field 2) is in parentheses and may hold spaces and parentheses, so the
// fields are counted from the last ')'.
func startTicks(pid int) (uint64, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return 0, fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return parseStat(raw)
}

func parseStat(raw []byte) (uint64, error) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat %.40q", raw)
	}
	// After ") " come field 3 (state) onwards; starttime is field 22.
	fields := strings.Fields(string(raw[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the command", len(fields))
	}
	if fields[0] == "Z" || fields[0] == "X" {
		return 0, ErrGone // a zombie runs no more
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// Alive reports whether the process id names still runs (same PID, same
// start time, not a zombie).
func (id ID) Alive() bool {
	if id.PID <= 0 {
		return false
	}
	st, err := startTicks(id.PID)
	return err == nil && (id.Start == 0 || st == id.Start)
}

// Signal sends sig to the process id names, and only to it: the process
// is pinned with a pidfd (os.FindProcess on Linux), then its start time is
// checked, then the signal goes through the pidfd. A process that is gone
// (exited, or its PID reused) is an error wrapping ErrGone. An ID without a
// start time is refused: it cannot be checked.
func (id ID) Signal(sig syscall.Signal) error {
	if id.PID <= 0 || id.Start == 0 {
		return fmt.Errorf("signal %v to %s: no start time recorded, cannot tell it from a later process with that PID", sig, id)
	}
	p, err := os.FindProcess(id.PID)
	if err != nil {
		return fmt.Errorf("signal %v to %s: %w", sig, id, ErrGone)
	}
	defer p.Release()
	st, err := startTicks(id.PID)
	if err != nil || st != id.Start {
		return fmt.Errorf("signal %v to %s: %w (the PID now belongs to another process or none)", sig, id, ErrGone)
	}
	if err := p.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal %v to %s: %w", sig, id, ErrGone)
		}
		return fmt.Errorf("signal %v to %s: %w", sig, id, err)
	}
	return nil
}

// Stop sends SIGTERM to id, waits up to grace for it to go, then sends
// SIGKILL and waits up to 5 s more. A process already gone is no error.
func (id ID) Stop(grace time.Duration) error {
	if err := id.Signal(syscall.SIGTERM); err != nil {
		if errors.Is(err, ErrGone) {
			return nil
		}
		return err
	}
	if waitGone(id, grace) {
		return nil
	}
	if err := id.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, ErrGone) {
		return err
	}
	if waitGone(id, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("%s still runs after SIGKILL", id)
}

func waitGone(id ID, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !id.Alive() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Cmdline is the process's command line, words joined by spaces ("" when
// unreadable).
func Cmdline(pid int) string {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(raw), "\x00", " "))
}
