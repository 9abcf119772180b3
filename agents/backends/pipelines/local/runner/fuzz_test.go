package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
)

// FuzzCompile feeds arbitrary YAML to the IR loader and planner, seeded
// with the control-flow IR files (conditions, loops, nested DAGs, exit
// handlers, placeholders) and hostile shapes: they must return a plan or an
// error, never panic, within the runner's bounds; a plan's DAG tasks come
// after their dependencies. Compiling starts no process.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(dagSpec))
	f.Add([]byte(failSpec))
	f.Add(runnertest.TrainSpec("r/t@sha256:00", false))
	f.Add([]byte("root: {dag: {tasks: {a: {componentRef: {name: x}}}}}"))
	f.Add([]byte("a: &a [*a, *a]\nroot: *a\n"))
	f.Add([]byte(strings.Repeat("[", 200) + strings.Repeat("]", 200)))
	f.Add([]byte(loopSpec(3, 2)))
	files, _ := filepath.Glob(filepath.Join("testdata", "ir", "*.yaml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, spec []byte) {
		p, err := Compile(spec)
		if err != nil {
			return
		}
		for _, c := range p.Components {
			seen := map[string]bool{}
			for _, task := range c.Tasks {
				for _, d := range task.Deps {
					if !seen[d] {
						t.Fatalf("component %s: task %s before its dependency %s", c.Name, task.Name, d)
					}
				}
				seen[task.Name] = true
			}
		}
		p.ResolveParams(nil)
	})
}
