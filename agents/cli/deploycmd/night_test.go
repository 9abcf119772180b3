package deploycmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/internal/procid"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
)

func loadMain(args []string) int { return loadgen.Main(args, os.Stdout, os.Stderr) }

// agentProc is one agent run as a process of its own.
type agentProc struct {
	cmd       *exec.Cmd
	out, errb bytes.Buffer
}

func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{cmd: exec.Command(os.Args[0], args...)}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errb
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *agentProc) wait() int {
	err := p.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// serversRunning lists the model servers that run (processes of bin).
func serversRunning(bin string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if strings.HasPrefix(procid.Cmdline(pid), bin+" ") {
			if id, err := procid.Of(pid); err == nil && id.Alive() {
				pids = append(pids, pid)
			}
		}
	}
	sort.Ints(pids)
	return pids
}

// The operator's night, with real processes: the serving plane runs in a
// process of its own (as the quickstart --serve hosts it), an independent
// load generator sends ≥100 predicts/s through its gateway, and meanwhile
// a by-hand deploy, a rollback, a rollback during a rollout and two
// concurrent deploys run, each as its own process. Not one request fails,
// and afterwards every model server that runs is one status shows.
func TestOperatorsNightUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process load test skipped with -short")
	}
	bin := build(t)
	ws, state, remote := deployWorkspace(t, map[int]string{1: "", 2: ""}, "  canary: {steps: [20, 50, 100], interval: 400ms, threshold: 2, minRequests: 5, successRate: 99, maxLatencyP99: 2s}\n  serving: {command: ["+strconv.Quote(bin)+"]}\n")
	spec := func(v int) { writeSpec(t, ws, v) }
	// The plane's owner, as the quickstart --serve is.
	owner := startAgent(t, "serve", "--model", "djia30", "--state-dir", state)
	t.Cleanup(func() {
		_ = owner.cmd.Process.Signal(syscall.SIGTERM)
		owner.wait()
		if left := serversRunning(bin); len(left) > 0 {
			t.Errorf("model servers left after the plane stopped: %v", left)
		}
	})
	var url string
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, u, ok := local.PlaneOwner(state, "djia30"); ok {
			url = u
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plane did not start: %s", owner.errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	run := func(args ...string) *agentProc {
		args = append(args, "--workspace", ws)
		if args[0] == "run" {
			args = append(args, "--load", "0") // the independent load is all the traffic
		}
		return startAgent(t, args...)
	}
	expect := func(what string, p *agentProc, code int) {
		t.Helper()
		if got := p.wait(); got != code {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, got, code, p.out.String(), p.errb.String())
		}
	}
	spec(1)
	expect("first deploy", run("run", "--commit", "c1"), 0)

	// The independent load: 150 predicts/s through the plane's gateway.
	stopFile := filepath.Join(ws, "stop-load")
	load := &agentProc{cmd: exec.Command(os.Args[0], url+"/v1/models/djia30:predict", "150", "120", stopFile)}
	load.cmd.Env = append(os.Environ(), "DEPLOYCMD_TEST_LOAD=1")
	load.cmd.Stdout, load.cmd.Stderr = &load.out, &load.errb
	load.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := time.Now()
	if err := load.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	// 1. A by-hand deploy of v2: a canary rollout on the live gateway.
	spec(2)
	expect("by-hand deploy of v2", run("run", "--commit", "c2"), 0)
	// 2. A rollback: v1 again.
	expect("rollback", run("rollback"), 0)
	// 3. A rollback during a rollout: the rollout ends preempted (exit 3,
	// not blaming the model), the rollback wins.
	rollout := run("run", "--commit", "c3")
	for deadline := time.Now().Add(20 * time.Second); ; {
		if st, _ := local.ReadState(context.Background(), state, "djia30"); st.CanaryWeight >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rollout did not reach its first step")
		}
		time.Sleep(5 * time.Millisecond)
	}
	expect("rollback during the rollout", run("rollback"), 0)
	expect("the preempted rollout", rollout, 3)
	if !strings.Contains(rollout.errb.String(), "rolled back: canary djia30 v2: preempted by pid ") || strings.Contains(rollout.errb.String(), "success rate") {
		t.Errorf("the preempted rollout says:\n%s", rollout.errb.String())
	}
	// 4. Two deploys at once: one rolls v2 out, the other waits for it,
	// naming it, then finds nothing to do.
	a, b := run("run", "--commit", "c4"), run("run", "--commit", "c4")
	expect("concurrent deploy a", a, 0)
	expect("concurrent deploy b", b, 0)
	waited := a
	if !strings.Contains(a.errb.String(), "rollout in progress by pid ") {
		waited = b
	}
	if !strings.Contains(waited.errb.String(), "rollout in progress by pid ") || !strings.Contains(waited.out.String(), "djia30: Succeeded; stable v2") {
		t.Errorf("neither deploy waited for the other:\n%s\n---\n%s", a.errb.String(), b.errb.String())
	}
	// With --no-wait the second one says who holds the rollout and exits.
	spec(1)
	c := run("run", "--commit", "c5")
	for deadline := time.Now().Add(20 * time.Second); ; {
		if st, _ := local.ReadState(context.Background(), state, "djia30"); st.CanaryWeight > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rollout of v1 did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := run("run", "--commit", "c5", "--no-wait")
	expect("--no-wait while a rollout runs", d, 1)
	if want := fmt.Sprintf("rollout of djia30 in progress by pid %d (branchml-deploy run: deploy djia30 v1, since ", c.cmd.Process.Pid); !strings.Contains(d.errb.String(), want) {
		t.Errorf("--no-wait says:\n%s\nwant %q", d.errb.String(), want)
	}
	expect("the rollout of v1", c, 0)

	os.WriteFile(stopFile, nil, 0o644)
	if code := load.wait(); code != 0 {
		t.Fatalf("load generator: exit %d: %s", code, load.errb.String())
	}
	var rep loadgen.Report
	if err := json.Unmarshal(load.out.Bytes(), &rep); err != nil {
		t.Fatalf("load report %q: %v", load.out.String(), err)
	}
	secs := time.Since(started).Seconds()
	t.Logf("load: %d sent in %.1fs (%.0f/s), %d failed, by variant %v", rep.Sent, secs, float64(rep.Sent)/secs, rep.Failed, rep.ByVariant)
	if rep.Failed != 0 {
		t.Errorf("%d of %d requests failed: %q", rep.Failed, rep.Sent, rep.Errors)
	}
	if float64(rep.Sent)/secs < 100 {
		t.Errorf("the load was %.0f/s, want at least 100", float64(rep.Sent)/secs)
	}
	// Every model server that runs is one status knows.
	st, err := local.ReadState(context.Background(), state, "djia30")
	if err != nil {
		t.Fatal(err)
	}
	var known []int
	for _, v := range st.Variants {
		known = append(known, v.PID)
	}
	sort.Ints(known)
	if got := serversRunning(bin); fmt.Sprint(got) != fmt.Sprint(known) || len(st.Orphans) != 0 {
		t.Errorf("servers running %v, status knows %v (orphans %v)", got, known, st.Orphans)
	}
	if s := st.Get("stable"); s == nil || s.Model.Version != 1 || len(st.Variants) != 1 {
		t.Errorf("at the end: %+v", st)
	}
	// The history on the deploy branch has every act of the night.
	raw, err := remote.ReadFile(context.Background(), "deploy-model", records.DeployStatusPath)
	if err != nil {
		t.Fatal(err)
	}
	var ds records.DeployStatus
	json.Unmarshal(raw, &ds)
	var acts []string
	for _, e := range ds.History {
		switch {
		case e.Event == "promoted" || e.Event == "rolled-back":
			acts = append(acts, fmt.Sprintf("%s v%d", e.Event, e.Version))
		}
	}
	want := "promoted v1, promoted v2, rolled-back v1, rolled-back v2, rolled-back v2, promoted v2, promoted v1"
	if got := strings.Join(acts, ", "); got != want {
		t.Errorf("history:\n%s\nwant\n%s", got, want)
	}
}
