package build

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
)

// TestSharedPackageTestsRun: the tests of a shared package a component is
// built from run, and a failing one stops the components that import it
// (and, as nothing is pushed when a test fails, every component).
func TestSharedPackageTestsRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	writeFiles(t, e.root, map[string]string{
		"internal/greet/greet_test.go": "package greet\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) {\n\tif Hello(\"x\") != \"hello, x\" {\n\t\tt.Fatal(\"wrong greeting\")\n\t}\n}\n",
	})
	o := e.opts(t, "1111111111111111111111111111111111111111")
	var logged bytes.Buffer
	logger := logrus.New()
	logger.SetOutput(&logged)
	o.Log = logger
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	hello, other := res.Components[0], res.Components[1]
	// The log says what ran: "no tests" for other, never "passed".
	for _, want := range []string{
		`msg="hello: 2 tests passed in 2 of the 2 packages it is built from"`,
		`msg="other: no tests: none of the 1 packages it is built from has a test"`,
	} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logged.String())
		}
	}
	if strings.Contains(logged.String(), "other: 0 tests passed") || strings.Contains(logged.String(), "(the others have no tests)") {
		t.Errorf("log:\n%s", logged.String())
	}
	if hello.Tests != TestsPassed || hello.TestCount != 2 || other.Tests != TestsNone || other.TestCount != 0 {
		t.Fatalf("hello %+v\nother %+v", hello, other)
	}
	raw, _ := os.ReadFile(o.JUnitPath)
	for _, want := range []string{`<testsuite name="example.com/ml/internal/greet" tests="1"`, `<testcase classname="example.com/ml/internal/greet" name="TestHello"`} {
		if !strings.Contains(string(raw), want) {
			t.Fatalf("junit lacks %s:\n%s", want, raw)
		}
	}

	// A failing test in the shared package: nothing is pushed or written.
	writeFiles(t, e.root, map[string]string{
		"internal/greet/greet_test.go": "package greet\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) { t.Fatal(\"broken shared package\") }\n",
	})
	pushes := e.reg.pushes.Load()
	o = e.opts(t, "2222222222222222222222222222222222222222")
	res, err = Run(ctx, o)
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.What != "test hello" || !strings.Contains(err.Error(), "1 of 2 tests failed; nothing was pushed") {
		t.Fatalf("err = %v", err)
	}
	if actions(res) != "hello=failed,other=skipped" || res.Components[0].Tests != TestsFailed || e.reg.pushes.Load() != pushes {
		t.Fatalf("result %s %+v, %d pushes", actions(res), res.Components, e.reg.pushes.Load()-pushes)
	}
	if !strings.Contains(e.lockFile(t), `"sourceCommit": "1111111111111111111111111111111111111111"`) {
		t.Fatal("the lock changed after a failed test")
	}
}

// TestTestCompileError: a test file that does not compile is reported as a
// compile error of that package, not as failed tests.
func TestTestCompileError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	writeFiles(t, e.root, map[string]string{"internal/greet/greet_test.go": "package greet\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) { undefinedHelper() }\n"})
	o := e.opts(t, "1111111111111111111111111111111111111111")
	res, err := Run(context.Background(), o)
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.What != "test hello" ||
		!strings.Contains(err.Error(), "the tests of 1 package(s) do not compile (example.com/ml/internal/greet [example.com/ml/internal/greet.test] does not compile: internal/greet/greet_test.go:5:32: undefined: undefinedHelper); nothing was pushed") ||
		!strings.Contains(ce.Fix, "fix the compile error") {
		t.Fatalf("err = %v (fix %q)", err, ce.Fix)
	}
	if strings.Contains(err.Error(), "tests failed") {
		t.Fatalf("a compile error reported as failed tests: %v", err)
	}
	if r := res.Components[0]; r.Action != ActionFailed || r.Reason != "tests do not compile: example.com/ml/internal/greet [example.com/ml/internal/greet.test]" {
		t.Fatalf("hello %+v", r)
	}
	raw, _ := os.ReadFile(o.JUnitPath)
	if !strings.Contains(string(raw), `<testcase classname="example.com/ml/internal/greet" name="(build)"`) || !strings.Contains(string(raw), `<error message="example.com/ml/internal/greet [example.com/ml/internal/greet.test] does not compile`) {
		t.Fatalf("junit:\n%s", raw)
	}
	if _, err := e.forge.ReadFile(context.Background(), "build-components", records.ComponentsLockPath); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("lock written: %v", err)
	}
}
