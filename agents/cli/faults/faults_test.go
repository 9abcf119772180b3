package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
)

// The agents, built once for the package's tests.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// agents builds the six binaries into a directory shared by the tests.
func agents(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "branchml-faults-bin-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + "/"}
		for _, a := range []string{"branchml", "branchml-build", "branchml-pipeline", "branchml-train", "branchml-snapshot", "branchml-deploy"} {
			args = append(args, "./agents/cmd/"+a)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = moduleRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// proc is an agent or quickstart process in its own process group, killed
// with its group when the test ends.
type proc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func start(t *testing.T, dir string, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(agents(t), name), args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(append(agentEnv(), "PATH="+agents(t)+":"+os.Getenv("PATH")), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); <-p.done })
	return p
}

// agentEnv is the test's environment without its BRANCHML_ settings: an
// agent sees only what the test (as the Jenkins step) sets, so a test
// knob such as BRANCHML_REQUIRE_INTEGRATION in CI, or a developer's own
// settings, neither changes the flow nor adds a warning to its output.
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BRANCHML_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Fatalf("%s did not end within %s:\n%s", p.cmd.Args, timeout, p.out.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// quickstart runs `branchml quickstart` on workdir to its end.
func quickstart(t *testing.T, work string) (time.Duration, string) {
	t.Helper()
	t0 := time.Now()
	p := start(t, moduleRoot(t), nil, "branchml", "quickstart", "--workdir", work)
	if code := p.wait(t, 10*time.Minute); code != 0 {
		if strings.Contains(p.out.String(), "no DJIA 30 data") {
			t.Skipf("no DJIA 30 data: %s", p.out.String())
		}
		t.Fatalf("quickstart on %s: exit %d\n%s\n%s", work, code, p.out.String(), logs(work))
	}
	return time.Since(t0), p.out.String()
}

func logs(work string) string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(work, "logs", "*.log"))
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		if len(raw) > 4000 {
			raw = raw[len(raw)-4000:]
		}
		fmt.Fprintf(&b, "--- %s (tail)\n%s\n", filepath.Base(f), raw)
	}
	return b.String()
}

// The stage branches whose state is compared.
var stageBranches = []string{"build-components", "kf-pipeline", "training", "deploy-model"}

var (
	// Identities that differ between two equal runs (commit SHAs hold commit
	// times; run and lineage IDs derive from commits), and what differs by
	// machine state (ports, the workdir).
	uuidRe = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	linRe  = regexp.MustCompile(`lin-[0-9a-f]{16}`)
	// Image digests: two builds of the same sources in two workdirs differ
	// (the builds are not reproducible across paths), and so do the spec
	// hashes that pin them.
	imageRe = regexp.MustCompile(`@sha256:[0-9a-f]{64}`)
	shaRe   = regexp.MustCompile(`\b[0-9a-f]{40}\b`)
	shortRe = regexp.MustCompile(`\b[0-9a-f]{12}\b`)
	portRe  = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)
	// Keys whose values are times or durations.
	timeKeys = map[string]bool{"startedAt": true, "finishedAt": true, "createdAt": true, "mergedAt": true, "since": true, "updatedAt": true, "time": true, "took": true}
)

// normalize makes s comparable across runs: identities become their kind.
func normalize(s, work string) string {
	s = strings.ReplaceAll(s, work, "<workdir>")
	s = imageRe.ReplaceAllString(s, "@<image-digest>")
	s = portRe.ReplaceAllString(s, "127.0.0.1:<port>")
	s = uuidRe.ReplaceAllString(s, "<uuid>")
	s = linRe.ReplaceAllString(s, "<lineage>")
	s = shaRe.ReplaceAllString(s, "<commit>")
	return shortRe.ReplaceAllString(s, "<commit12>")
}

func dropTimes(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if timeKeys[k] {
				delete(t, k)
				continue
			}
			if k == "digest" || k == "specHash" {
				t[k] = "<image-digest>"
				continue
			}
			t[k] = dropTimes(x)
		}
	case []any:
		for i, x := range t {
			t[i] = dropTimes(x)
		}
	}
	return v
}

// dropRestored leaves out the "restored" events of a deploy history: a
// kill that takes the serving plane down is followed, on the rerun, by the
// deploy stage restoring the recorded stable version, and that restoration
// is rightly recorded. Every other event must match an uninterrupted run.
func dropRestored(h any) any {
	events, ok := h.([]any)
	if !ok {
		return h
	}
	var kept []any
	for _, e := range events {
		if m, ok := e.(map[string]any); ok && m["event"] == "restored" {
			continue
		}
		kept = append(kept, e)
	}
	return kept
}

// branchState is every file of the stage branches' tips, normalized: JSON
// records without times, identities replaced by their kind. Files whose
// normalized names collide (runs/<uuid>.json …) are kept as a sorted list.
// canceled counts the run records in state CANCELED, which are left out:
// an interrupted run leaves one, an uninterrupted flow none.
func branchState(t *testing.T, work string) (state map[string][]string, canceled int, other []string) {
	t.Helper()
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"--git-dir", filepath.Join(work, "remote.git")}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return string(out)
	}
	state = map[string][]string{}
	for _, b := range stageBranches {
		for _, line := range strings.Split(strings.TrimSpace(git("ls-tree", "-r", "refs/heads/"+b)), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			path, content := strings.Join(f[3:], " "), git("cat-file", "-p", f[2])
			if strings.HasSuffix(path, ".json") && strings.HasPrefix(path, ".branchml/") {
				var v any
				if err := json.Unmarshal([]byte(content), &v); err != nil {
					t.Fatalf("%s:%s is not JSON: %v", b, path, err)
				}
				if m, ok := v.(map[string]any); ok && m["kind"] == "RunRecord" && strings.HasPrefix(path, records.RunsDir+"/") && m["state"] != "SUCCEEDED" {
					if m["state"] == "CANCELED" {
						canceled++
					} else {
						other = append(other, fmt.Sprintf("%s:%s is %v", b, path, m["state"]))
					}
					continue
				}
				if m, ok := v.(map[string]any); ok && m["kind"] == "DeployStatus" {
					m["history"] = dropRestored(m["history"])
				}
				js, _ := json.MarshalIndent(dropTimes(v), "", " ")
				content = string(js)
			}
			key := b + ":" + normalize(path, work)
			state[key] = append(state[key], normalize(content, work))
		}
	}
	for _, v := range state {
		sort.Strings(v)
	}
	return state, canceled, other
}

// pulls lists the local forge's pull requests of a quickstart workdir, one
// line each: number, head → base, state, author.
func pulls(work string) string {
	files, _ := filepath.Glob(filepath.Join(work, "remote.git.branchml", "pulls", "*.json"))
	type pr struct {
		Number     int
		Head, Base string
		State      string
		Author     string
	}
	var all []pr
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		var p pr
		if json.Unmarshal(raw, &p) == nil && p.Number > 0 {
			all = append(all, p)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Number < all[j].Number })
	var b strings.Builder
	for _, p := range all {
		fmt.Fprintf(&b, "  #%d %s → %s %s (%s)\n", p.Number, p.Head, p.Base, p.State, p.Author)
	}
	return b.String()
}

// diffStates lists what differs between two branch states.
func diffStates(want, got map[string][]string) []string {
	var out []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			out = append(out, "missing "+k)
		case strings.Join(g, "\x00") != strings.Join(w, "\x00"):
			out = append(out, fmt.Sprintf("differs %s:\n  want %q\n  got  %q", k, w, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	sort.Strings(out)
	return out
}

// processesUnder lists live processes running a file under dir.
func processesUnder(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		if cmd := strings.ReplaceAll(string(raw), "\x00", " "); strings.Contains(cmd, dir) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}

// settledProcessesUnder is processesUnder once the processes that are on
// their way out (a parent-death signal delivered, exit in progress) have
// gone, waiting at most max.
func settledProcessesUnder(dir string, max time.Duration) []string {
	deadline := time.Now().Add(max)
	for {
		left := processesUnder(dir)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killProcessesUnder kills what a killed quickstart left running under dir
// (task processes, model servers), so that nothing outlives the test.
func killProcessesUnder(dir string) {
	for _, p := range processesUnder(dir) {
		if pid, err := strconv.Atoi(strings.SplitN(p, ":", 2)[0]); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// stageAt returns the stage the quickstart was in when killed, from its
// progress lines: the stage after the last one it finished.
func stageAt(out string) string {
	order := []string{"repository", "build", "pipeline", "train", "deploy"}
	done := ""
	for _, line := range strings.Split(out, "\n") {
		for _, s := range order {
			if strings.Contains(line, "] "+s+" ") {
				done = s
			}
		}
	}
	for i, s := range order {
		if s == done && i+1 < len(order) {
			return order[i+1]
		}
	}
	if done == "" {
		return "repository"
	}
	return "build" // after deploy of pass 1: the next pass starts
}

// killPoints is how many kills TestKillAtRandomPointsThenRerun makes
// (FAULTS_KILLS overrides it; FAULTS_AT=11.5s,20s replaces the random
// moments by those).
const killPoints = 3

// kill -9 of the quickstart (which runs each agent as the Jenkins step
// does) at random moments, with a fixed seed, then a plain rerun on the
// same workdir: the stage branches end as after an uninterrupted run, up to
// identities (commit SHAs, run and lineage IDs), times and ports; the only
// extra files allowed are the records of interrupted runs, in state
// CANCELED. The same workdir after each rerun also keeps no process
// running.
func TestKillAtRandomPointsThenRerun(t *testing.T) {
	if testing.Short() {
		t.Skip("kill tests run the quickstart several times; skipped with -short")
	}
	n := killPoints
	if s := os.Getenv("FAULTS_KILLS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ref := filepath.Join(t.TempDir(), "ref")
	total, _ := quickstart(t, ref)
	want, canceled, other := branchState(t, ref)
	if canceled != 0 || len(other) != 0 {
		t.Fatalf("the uninterrupted run left %d CANCELED and %v other run records", canceled, other)
	}
	t.Logf("uninterrupted quickstart: %s", total.Round(time.Second))
	// The kill points: n at random times of the uninterrupted run's length,
	// and one in the middle of a canary rollout (after a promotion was
	// merged into deploy-model, before its deploy finished).
	type point struct {
		name string
		wait func(p *proc, work string) bool // false when the quickstart ended first
		must bool                            // the uninterrupted flow reaches it: not reaching it fails the test
	}
	var points []point
	rng := rand.New(rand.NewPCG(19, 19))
	delays := make([]time.Duration, n)
	for i := range n {
		delays[i] = time.Duration(float64(time.Second) + rng.Float64()*float64(total-2*time.Second))
	}
	if s := os.Getenv("FAULTS_AT"); s != "" { // reproduces a failed kill point: FAULTS_AT=11.5s,20s
		delays = nil
		for _, f := range strings.Split(s, ",") {
			d, err := time.ParseDuration(f)
			if err != nil {
				t.Fatalf("FAULTS_AT=%s: %v (want durations, comma-separated: 11.5s,20s)", s, err)
			}
			delays = append(delays, d)
		}
	}
	for i, delay := range delays {
		points = append(points, point{fmt.Sprintf("kill-%d-at-%s", i, delay.Round(100*time.Millisecond)), func(p *proc, _ string) bool {
			select {
			case <-p.done:
				return false
			case <-time.After(delay):
				return true
			}
		}, false})
	}
	points = append(points, point{"kill-in-canary", func(p *proc, work string) bool {
		for {
			if raw, _ := os.ReadFile(filepath.Join(work, "logs", "quickstart.log")); strings.Contains(string(raw), "(canary, pid") {
				return true
			}
			select {
			case <-p.done:
				return false
			case <-time.After(50 * time.Millisecond):
			}
		}
	}, true})
	for _, pt := range points {
		t.Run(pt.name, func(t *testing.T) {
			work := filepath.Join(t.TempDir(), "w")
			t.Cleanup(func() { killProcessesUnder(work) })
			p := start(t, moduleRoot(t), nil, "branchml", "quickstart", "--workdir", work)
			if !pt.wait(p, work) {
				if pt.must {
					t.Fatalf("the quickstart ended before the kill point %s:\n%s", pt.name, p.out.String())
				}
				t.Skipf("the quickstart ended before the kill point %s", pt.name)
			}
			syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL) // the process only, as a killed Jenkins agent
			<-p.done
			stage := stageAt(p.out.String())
			// Tasks die with their runner (own process group, parent-death
			// signal): once the killed process is gone, nothing it started
			// may keep running, except the model servers of a deploy, which
			// are recorded and taken over by the next run.
			left := settledProcessesUnder(work, 10*time.Second)
			t.Logf("killed in stage %s; left running: %d processes", stage, len(left))
			if len(left) > 0 && stage != "deploy" {
				t.Errorf("orphans of a kill in stage %s (tasks must die with their runner):\n%s", stage, strings.Join(left, "\n"))
			}
			r := start(t, moduleRoot(t), nil, "branchml", "quickstart", "--workdir", work)
			if code := r.wait(t, 10*time.Minute); code != 0 {
				t.Fatalf("rerun after a kill in stage %s: exit %d\n%s\n%s", stage, code, r.out.String(), logs(work))
			}
			got, _, other := branchState(t, work)
			if len(other) > 0 {
				t.Errorf("run records of interrupted runs not CANCELED: %v", other)
			}
			if d := diffStates(want, got); len(d) > 0 {
				t.Errorf("branch state after a kill in stage %s and a rerun differs from an uninterrupted run:\n%s\npull requests of the uninterrupted run:\n%s\npull requests after the kill and the rerun:\n%s\nquickstart output before the kill:\n%s",
					stage, strings.Join(d, "\n"), pulls(ref), pulls(work), p.out.String())
				if keep := os.Getenv("FAULTS_KEEP"); keep != "" { // FAULTS_KEEP=DIR keeps both workdirs for a look
					exec.Command("cp", "-a", work, filepath.Join(keep, pt.name)).Run()
					exec.Command("cp", "-a", ref, filepath.Join(keep, "ref")).Run()
				}
			}
			if left := processesUnder(work); len(left) > 0 {
				t.Errorf("processes left after the rerun:\n%s", strings.Join(left, "\n"))
			}
		})
	}
	// The corrupted-state rule on the same flow's records.
	t.Run("corrupted-locks", func(t *testing.T) { corruptedLocks(t, ref) })
}

// corruptedLocks truncates the components lock and the training lock on
// their branches and runs every agent that reads them, as the Jenkins
// step does: each exits 2 with error details naming the file and the same
// repair; none plans new work.
func corruptedLocks(t *testing.T, work string) {
	env := []string{"BRANCHML_BACKENDS_STATE_DIR=" + filepath.Join(work, "state"), "BRANCHML_BACKENDS_FORGE_REMOTE=" + filepath.Join(work, "remote.git")}
	truncate(t, work, "build-components", records.ComponentsLockPath)
	truncate(t, work, "training", records.TrainingLockPath)
	var fixes []string
	for _, c := range []struct{ agent, branch, file string }{
		{"branchml-build", "build-components", "build-components:" + records.ComponentsLockPath},
		{"branchml-pipeline", "kf-pipeline", "build-components:" + records.ComponentsLockPath},
		{"branchml-deploy", "deploy-model", "build-components:" + records.ComponentsLockPath},
		{"branchml-train", "training", "training:" + records.TrainingLockPath},
	} {
		dir := filepath.Join(work, "jenkins", "results", c.branch)
		errFile := filepath.Join(t.TempDir(), "error.json")
		p := start(t, filepath.Join(work, "jenkins", "workspace", c.branch), env, c.agent, "run",
			"--params", filepath.Join(dir, c.agent+"-params.json"), "--error-details", errFile)
		code := p.wait(t, 2*time.Minute)
		var d agent.ErrorDetails
		raw, _ := os.ReadFile(errFile)
		json.Unmarshal(raw, &d)
		if code != 2 || d.ExitCode != 2 || !strings.Contains(d.Why, "corrupted state: "+c.file+": ") || d.Fix != records.Repair(c.file) {
			t.Errorf("%s with %s truncated: exit %d, error details %s\n%s", c.agent, c.file, code, raw, p.out.String())
		}
		if c.file == "build-components:"+records.ComponentsLockPath {
			fixes = append(fixes, d.Fix)
		}
		if strings.Contains(p.out.String(), "started") || strings.Contains(p.out.String(), "level=warning") {
			t.Errorf("%s worked around the corrupted file:\n%s", c.agent, p.out.String())
		}
	}
	for _, f := range fixes[1:] {
		if f != fixes[0] {
			t.Errorf("the agents give different fixes for the same file: %q", fixes)
		}
	}
}

// truncate commits path on branch cut to half its length, as a disk-full
// write or a bad hand edit leaves it.
func truncate(t *testing.T, work, branch, path string) {
	t.Helper()
	clone := filepath.Join(t.TempDir(), "c")
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@localhost", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@localhost")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	run(work, "clone", "-q", "-b", branch, filepath.Join(work, "remote.git"), clone)
	raw, err := os.ReadFile(filepath.Join(clone, path))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(clone, path), raw[:len(raw)/2], 0o644)
	run(clone, "commit", "-q", "-am", "truncate "+path)
	run(clone, "push", "-q", "origin", branch)
}
