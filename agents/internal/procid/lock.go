package procid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Holder is who holds a Lock, as written into the lock file.
type Holder struct {
	ID
	// What the holder does, e.g. "branchml-deploy run (deploy djia30 v2)".
	What  string    `json:"what"`
	Since time.Time `json:"since"`
}

// String is e.g. "pid 4242 (branchml-deploy run, since 12:00:01)".
func (h Holder) String() string {
	var extra []string
	if h.What != "" {
		extra = append(extra, h.What)
	}
	if !h.Since.IsZero() {
		extra = append(extra, "since "+h.Since.Local().Format("15:04:05"))
	}
	if len(extra) == 0 {
		return h.ID.String()
	}
	return h.ID.String() + " (" + strings.Join(extra, ", ") + ")"
}

// HeldError is a Lock that another process holds.
type HeldError struct {
	Path   string
	Holder Holder
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is held by %s", e.Path, e.Holder)
}

// LockOptions say how to wait.
type LockOptions struct {
	// What the caller does, recorded for whoever waits.
	What string
	// Wait waits for the holder to let go (until ctx ends); without it a
	// held lock is a *HeldError at once.
	Wait bool
	// OnWait is called once, with the holder, when the lock is held and
	// Wait is set (to say so in the log).
	OnWait func(Holder)
}

// Lock takes an exclusive flock(2) on path and writes the caller as its
// holder into it. The kernel drops the lock when the holder dies, so a
// crash leaves no stale lock. A held lock is a *HeldError (or, with Wait,
// waited for; ctx ending then is an error wrapping ctx.Err() and naming
// the holder).
func Lock(ctx context.Context, path string, o LockOptions) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	told := false
	for {
		err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			fh.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		h := readHolderSettled(path)
		if !o.Wait {
			fh.Close()
			return nil, &HeldError{Path: path, Holder: h}
		}
		if !told && o.OnWait != nil {
			o.OnWait(h)
			told = true
		}
		select {
		case <-ctx.Done():
			fh.Close()
			return nil, fmt.Errorf("waiting for %s, held by %s: %w", path, h, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	h := Holder{ID: Self(), What: o.What, Since: time.Now().UTC().Truncate(time.Millisecond)}
	raw, _ := json.Marshal(h)
	// Written in place (the lock is on this inode): truncate, then write.
	if err := fh.Truncate(0); err == nil {
		_, _ = fh.WriteAt(append(raw, '\n'), 0)
	}
	return func() {
		_ = fh.Truncate(0)
		_ = syscall.Flock(int(fh.Fd()), syscall.LOCK_UN)
		fh.Close()
	}, nil
}

// readHolderSettled reads the holder, giving a holder that just took the
// lock (and has not written its name yet) a moment to write it.
func readHolderSettled(path string) Holder {
	var h Holder
	for i := 0; i < 10; i++ {
		if h, _ = ReadHolder(path); h.PID > 0 {
			return h
		}
		time.Sleep(5 * time.Millisecond)
	}
	return h
}

// ReadHolder reads who holds (or last held) the lock at path; the zero
// Holder when the file is empty or unreadable.
func ReadHolder(path string) (Holder, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Holder{}, err
	}
	var h Holder
	if len(strings.TrimSpace(string(raw))) == 0 {
		return h, nil
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return Holder{}, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}
