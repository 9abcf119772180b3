package registrycmd

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/internal/agent"
)

func TestServeCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "registry")
	app := cli.NewApp("branchml", "test", Command())
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, app, []string{"branchml", "registry", "serve", "--dir", dir, "--addr", "127.0.0.1:0", "--config", ""}, cli.Streams{Out: &out, Err: &errb})
	}()
	var addr string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if addr = registry.RecordedAddr(dir); addr != "" && registry.Probe(context.Background(), dir, addr, time.Second) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !registry.Probe(context.Background(), dir, addr, time.Second) {
		t.Fatalf("serve did not come up; logs:\n%s", errb.String())
	}
	// A stage in another process would now reuse it.
	got, stop, err := registry.EnsureLocal(context.Background(), filepath.Dir(dir))
	if err != nil || got != addr {
		t.Fatalf("EnsureLocal = %q, %v; want the served %q", got, err, addr)
	}
	stop()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on cancel")
	}
	if !strings.Contains(errb.String(), "registry serving") || !strings.Contains(out.String(), "registry stopped") {
		t.Fatalf("logs:\n%s\nout:\n%s", errb.String(), out.String())
	}
}

func TestServeCommandRefusesPublicAddr(t *testing.T) {
	app := cli.NewApp("branchml", "test", Command())
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), app, []string{"branchml", "registry", "serve", "--dir", t.TempDir(), "--addr", "0.0.0.0:5000", "--config", ""}, cli.Streams{Out: &out, Err: &errb})
	if code != agent.ExitUsage || !strings.Contains(errb.String(), "is not loopback") {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
}
