package runner

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Tasks die with their runner. Each task process gets a parent-death signal
// (SIGKILL when the runner dies), but a container's processes are not the
// runner's children and a task's own children outlive a signal to it. So
// the first task a process starts also starts a reaper: the same executable,
// re-executed in a session of its own, told over a pipe which containers,
// process groups and mounts are live. When the pipe closes without a
// goodbye (the runner was killed, even with SIGKILL), the reaper kills the
// containers through the runtime, kills the process groups, unmounts, and
// exits. A runner that finds a dead runner's run later cleans up the same
// way (cleanupDead) before it continues the run.

// reaperEnv marks the re-executed reaper process.
const reaperEnv = "BRANCHML_RUNNER_REAPER"

func init() {
	if os.Getenv(reaperEnv) == "1" {
		reaperMain()
		os.Exit(0)
	}
}

type reaper struct {
	mu      sync.Mutex
	w       *os.File
	started bool
	err     error
}

var reap = &reaper{}

func (r *reaper) start() {
	r.started = true
	exe, err := os.Executable()
	if err != nil {
		r.err = err
		return
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		r.err = err
		return
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), reaperEnv+"=1")
	cmd.Stdin = pr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.err = err
		pr.Close()
		pw.Close()
		return
	}
	pr.Close()
	go cmd.Wait() // reap the reaper when this process outlives it
	r.w = pw
}

func (r *reaper) send(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		r.start()
	}
	if r.w != nil {
		fmt.Fprintln(r.w, line)
	}
}

// track tells the reaper about a live container ("c", runtime\0root\0id),
// process group ("p", pgid) or mount ("m", path).
func (r *reaper) track(kind, v string) { r.send("+" + kind + " " + strconv.Quote(v)) }

func (r *reaper) untrack(kind, v string) { r.send("-" + kind + " " + strconv.Quote(v)) }

func reaperMain() {
	live := map[string]bool{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 3 {
			continue
		}
		v, err := strconv.Unquote(line[3:])
		if err != nil {
			continue
		}
		key := line[1:2] + " " + v
		if line[0] == '+' {
			live[key] = true
		} else {
			delete(live, key)
		}
	}
	// The runner is gone: containers and process groups first, mounts last.
	for k := range live {
		kind, v, _ := strings.Cut(k, " ")
		switch kind {
		case "c":
			parts := strings.Split(v, "\x00")
			if len(parts) == 3 {
				killContainer(parts[0], parts[1], parts[2])
			}
		case "p":
			if pg, err := strconv.Atoi(v); err == nil && pg > 1 {
				_ = syscall.Kill(-pg, syscall.SIGKILL)
			}
		}
	}
	for k := range live {
		if kind, v, _ := strings.Cut(k, " "); kind == "m" {
			_ = unmountAll(v)
		}
	}
}

func killContainer(bin, root, id string) {
	_ = exec.Command(bin, "--root", root, "kill", id, "KILL").Run()
	_ = exec.Command(bin, "--root", root, "delete", "--force", id).Run()
}

// cleanupDead stops what a dead runner of st may have left: the containers
// and process groups of its running tasks (the reaper normally did).
func cleanupDead(st *State) {
	for _, t := range st.Tasks {
		if t.Container == "" || (t.State != "RUNNING" && t.State != "PENDING") {
			continue
		}
		for _, bin := range []string{"runc", "crun"} {
			if p, err := exec.LookPath(bin); err == nil {
				killContainer(p, RuntimeStateDir+"/"+bin, t.Container)
			}
		}
	}
}
