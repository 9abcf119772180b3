package runner

import (
	"testing"

	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
)

// FuzzCompile feeds arbitrary YAML to the IR parser and planner: they must
// return a plan or an error, never panic, and a plan's tasks must come
// after their dependencies.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(dagSpec))
	f.Add([]byte(failSpec))
	f.Add(runnertest.TrainSpec("r/t@sha256:00", false))
	f.Add([]byte("root: {dag: {tasks: {a: {componentRef: {name: x}}}}}"))
	f.Fuzz(func(t *testing.T, spec []byte) {
		p, err := Compile(spec)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, task := range p.Root.Tasks {
			for _, d := range task.Deps {
				if !seen[d] {
					t.Fatalf("task %s before its dependency %s", task.Name, d)
				}
			}
			seen[task.Name] = true
		}
		p.ResolveParams(nil)
	})
}
