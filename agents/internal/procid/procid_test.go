package procid

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a helper process: with PROCID_HELPER=hold it
// takes the lock named by PROCID_LOCK, prints "held" and sleeps.
func TestMain(m *testing.M) {
	switch os.Getenv("PROCID_HELPER") {
	case "hold":
		if _, err := Lock(context.Background(), os.Getenv("PROCID_LOCK"), LockOptions{What: "helper holding the lock"}); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("held")
		time.Sleep(time.Minute)
		os.Exit(0)
	case "sleep":
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(t *testing.T, kind string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "PROCID_HELPER="+kind), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func TestParseStatCommandWithParenthesesAndSpaces(t *testing.T) {
	raw := []byte("4242 (a b) (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615")
	st, err := parseStat(raw)
	if err != nil || st != 987654 {
		t.Fatalf("parseStat = %d, %v; want 987654", st, err)
	}
	if _, err := parseStat([]byte("4242 (zombie) Z 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000")); !errors.Is(err, ErrGone) {
		t.Fatalf("zombie: %v", err)
	}
}

func TestSignalOnlyTheNamedProcess(t *testing.T) {
	cmd := helper(t, "sleep")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	id, err := Of(cmd.Process.Pid)
	if err != nil || id.Start == 0 || !id.Alive() {
		t.Fatalf("Of = %+v, %v", id, err)
	}
	// Same PID, another start time: a reused PID is never signalled.
	other := ID{PID: id.PID, Start: id.Start + 1}
	if other.Alive() {
		t.Fatal("an ID with another start time is alive")
	}
	if err := other.Signal(syscall.SIGTERM); !errors.Is(err, ErrGone) {
		t.Fatalf("signal to a reused PID: %v", err)
	}
	if err := (ID{PID: id.PID}).Signal(syscall.SIGTERM); err == nil || !strings.Contains(err.Error(), "no start time") {
		t.Fatalf("signal without a start time: %v", err)
	}
	if !id.Alive() {
		t.Fatal("the process was hit by a refused signal")
	}
	if err := id.Stop(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if id.Alive() {
		t.Fatal("still alive after Stop")
	}
	if err := id.Stop(time.Second); err != nil {
		t.Fatalf("Stop of a gone process: %v", err)
	}
}

func TestLockNamesItsHolderAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rollout.lock")
	cmd := helper(t, "hold", "PROCID_LOCK="+path)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf[:4]) != "held" {
		t.Fatalf("helper: %q, %v", buf, err)
	}
	_, err := Lock(context.Background(), path, LockOptions{What: "second"})
	var he *HeldError
	if !errors.As(err, &he) || he.Holder.PID != cmd.Process.Pid || he.Holder.What != "helper holding the lock" || !he.Holder.Alive() {
		t.Fatalf("second Lock = %v (%+v)", err, he)
	}
	if !strings.HasPrefix(err.Error(), path+" is held by pid "+fmt.Sprint(cmd.Process.Pid)+" (helper holding the lock, since ") {
		t.Fatalf("message = %q", err)
	}
	// A waiter is told once who holds it, and gets the lock when the holder dies.
	var told []Holder
	got := make(chan error, 1)
	go func() {
		rel, err := Lock(context.Background(), path, LockOptions{What: "waiter", Wait: true, OnWait: func(h Holder) { told = append(told, h) }})
		if err == nil {
			rel()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("took a held lock: %v", err)
	default:
	}
	_ = cmd.Process.Kill() // SIGKILL: the kernel drops the flock
	_ = cmd.Wait()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if len(told) != 1 || told[0].PID != cmd.Process.Pid {
		t.Fatalf("told = %+v", told)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rel, err := Lock(ctx, path, LockOptions{What: "third"})
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := ReadHolder(path); h.ID != Self() || h.What != "third" {
		t.Fatalf("holder = %+v", h)
	}
	rel()
}
