package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testIsolation is the isolation the tests run tasks with:
// BRANCHML_TEST_ISOLATION=process runs them as host processes; the default
// is containers with the machine's OCI runtime (root and runc or crun).
func testIsolation(t testing.TB) string {
	if os.Getenv("BRANCHML_TEST_ISOLATION") == IsolationProcess {
		return IsolationProcess
	}
	if os.Geteuid() != 0 {
		t.Skip("tasks in containers need root; BRANCHML_TEST_ISOLATION=process runs these tests with host processes")
	}
	if _, err := pickRuntime(""); err != nil {
		t.Skip(err)
	}
	return IsolationContainer
}

// testVolumes are local volumes under a temporary directory, created on
// first use: a stand-in for the storage backend.
type testVolumes struct {
	root string
	mu   sync.Mutex
	used []string
}

func (v *testVolumes) VolumePath(_ context.Context, name string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.used = append(v.used, name)
	p := filepath.Join(v.root, name)
	return p, os.MkdirAll(p, 0o755)
}

func newRunner(t testing.TB, images Images, opts ...Option) *Runner {
	t.Helper()
	r, _ := newRunnerVols(t, images, opts...)
	return r
}

// scratch is a platform spec document that mounts the test volume
// "scratch" at /scratch in each of the executors named.
func scratch(executors ...string) string {
	var b strings.Builder
	b.WriteString("---\nplatforms:\n  kubernetes:\n    deploymentSpec:\n      executors:\n")
	for _, e := range executors {
		b.WriteString("        " + e + ":\n          pvcMount:\n          - {constant: scratch, mountPath: /scratch}\n")
	}
	return b.String()
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func newRunnerVols(t testing.TB, images Images, opts ...Option) (*Runner, *testVolumes) {
	t.Helper()
	vols := &testVolumes{root: t.TempDir()}
	base := []Option{WithIsolation(testIsolation(t)), WithVolumes(vols), WithLogf(func(f string, a ...any) { t.Logf(f, a...) })}
	return New(images, append(base, opts...)...), vols
}

// procsWith lists the processes whose command line holds token.
func procsWith(token string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), token) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
			continue
		}
		out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return out
}
