package runner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
)

// chainSpec is a chain of n trivial tasks (each runs `tool true`).
func chainSpec(n int) string {
	var b strings.Builder
	b.WriteString("pipelineInfo: {name: chain}\nroot:\n  dag:\n    tasks:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "      t%03d: {componentRef: {name: comp-true}", i)
		if i > 0 {
			fmt.Fprintf(&b, ", dependentTasks: [t%03d]", i-1)
		}
		b.WriteString("}\n")
	}
	b.WriteString("components:\n  comp-true: {executorLabel: exec-true}\ndeploymentSpec:\n  executors:\n    exec-true: {container: {image: \"r/t@sha256:00\", command: [/ko-app/tool], args: [\"true\"]}}\n")
	return b.String()
}

// BenchmarkRunnerOverhead compares a chain of N trivial tasks through the
// runner with N direct executions of the same binary; the reported
// overhead-ms/task is the difference per task (target: under 50 ms).
func BenchmarkRunnerOverhead(b *testing.B) {
	const n = 20
	images := runnertest.NewDirImages(b)
	bin := filepath.Join(images.Root, "ko-app", "tool")
	spec := chainSpec(n)
	r := New(images, WithParallelism(1), WithIsolation(testIsolation(b)))
	var direct, dag time.Duration
	for i := 0; i < b.N; i++ {
		d, l := directAndRun(b, r, bin, spec, n)
		direct, dag = direct+d, dag+l
	}
	per := float64(dag-direct) / float64(b.N*n) / float64(time.Millisecond)
	b.ReportMetric(per, "overhead-ms/task")
	b.ReportMetric(float64(direct)/float64(b.N*n)/float64(time.Millisecond), "direct-ms/task")
}

// directAndRun times n direct executions of bin (argument "true") and then
// one run of spec through r, which must succeed.
func directAndRun(b *testing.B, r *Runner, bin, spec string, n int) (direct, run time.Duration) {
	b.Helper()
	start := time.Now()
	for j := 0; j < n; j++ {
		if err := exec.Command(bin, "true").Run(); err != nil {
			b.Fatal(err)
		}
	}
	direct = time.Since(start)
	dir := filepath.Join(b.TempDir(), "run")
	if err := Prepare(dir, []byte(spec), Request{ID: "bench"}); err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	start = time.Now()
	st, err := r.Exec(context.Background(), dir)
	run = time.Since(start)
	if err != nil || st.State != pipelines.StateSucceeded {
		b.Fatalf("%v %+v", err, st)
	}
	return direct, run
}

// loopSpec is a ParallelFor of n trivial iterations, parallelismLimit p.
func loopSpec(n, p int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	return fmt.Sprintf(`pipelineInfo: {name: loop}
root:
  dag:
    tasks:
      for-loop-1:
        componentRef: {name: comp-for-loop-1}
        parameterIterator: {itemInput: item, items: {raw: '[%s]'}}
        iteratorPolicy: {parallelismLimit: %d}
components:
  comp-for-loop-1:
    inputDefinitions: {parameters: {item: {parameterType: NUMBER_INTEGER}}}
    dag: {tasks: {t: {componentRef: {name: comp-true}}}}
  comp-true: {executorLabel: exec-true}
deploymentSpec:
  executors:
    exec-true: {container: {image: "r/t@sha256:00", command: [/ko-app/tool], args: ["true"]}}
`, strings.Join(items, ","), p)
}

// BenchmarkParallelFor100 runs a 100-iteration ParallelFor of a trivial
// task with parallelism 8 and reports the wall time per iteration
// (ms/iteration) beside the direct execution time of the same binary
// (direct-ms/task, sequential): the target is that an iteration costs no
// more than the runner's per-task overhead budget (50 ms).
func BenchmarkParallelFor100(b *testing.B) {
	images := runnertest.NewDirImages(b)
	bin := filepath.Join(images.Root, "ko-app", "tool")
	r := New(images, WithParallelism(8), WithIsolation(testIsolation(b)))
	spec := loopSpec(100, 8)
	var direct, loop time.Duration
	for i := 0; i < b.N; i++ {
		d, l := directAndRun(b, r, bin, spec, 100)
		direct, loop = direct+d, loop+l
	}
	b.ReportMetric(float64(loop)/float64(b.N*100)/float64(time.Millisecond), "ms/iteration")
	b.ReportMetric(float64(direct)/float64(b.N*100)/float64(time.Millisecond), "direct-ms/task")
}
