package commitstatus_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/commitstatus"
	"github.com/branchml/branchml/agents/internal/agent"
)

const yaml = `apiVersion: branchml.dev/v1
project: tiny
branches:
  build: build-components
  pipeline: kf-pipeline
  train: training
  deploy: deploy-model
components:
  - name: hello
    path: components/hello
    kind: go
    image: tiny/hello
pipeline:
  spec: pipeline.yaml
backends:
  stateDir: state
  forge: {type: local, remote: remote.git}
`

const buildURL = "https://jenkins.example.com/job/ml/job/djia30/job/training/42/"

// setup makes an ML repository with a local forge and returns its
// directory, the forge and the commit statuses are set on.
func setup(t *testing.T) (string, *gitremote.Forge, string) {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "branchml.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := gitremote.Init(context.Background(), filepath.Join(root, "remote.git"), map[string][]byte{"README.md": []byte("x\n")}, []string{"main", "training"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "--git-dir", filepath.Join(root, "remote.git"), "rev-parse", "training").Output()
	if err != nil {
		t.Fatal(err)
	}
	return root, f, strings.TrimSpace(string(out))
}

// app is a stage command "run" of stage "train" whose work is fn, wrapped.
func app(fn func(*cli.Env) (*agent.Result, error)) *ucli.App {
	return cli.NewApp("branchml-train", "test", cli.Command(cli.Spec{
		Name: "run", Stage: "train", NeedsConfig: true, BuildFlags: true, Run: commitstatus.Wrap("train", fn),
	}))
}

func run(t *testing.T, ctx context.Context, a *ucli.App, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(ctx, a, append([]string{a.Name}, args...), cli.Streams{Out: &out, Err: &errb})
	return code, errb.String()
}

type status struct{ state, context, description, url string }

func statuses(t *testing.T, f *gitremote.Forge, sha string) []status {
	t.Helper()
	list, err := f.Statuses(context.Background(), sha)
	if err != nil {
		t.Fatal(err)
	}
	var out []status
	for _, s := range list {
		out = append(out, status{s.State, s.Context, s.Description, s.TargetURL})
	}
	return out
}

func TestStageStatusesPendingThenOutcome(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		res  *agent.Result
		args []string
		code int
		want status
	}{
		{"success", nil, &agent.Result{Summary: "run r-42 succeeded\n  metrics: …"}, nil, 0,
			status{"success", "branchml/train", "run r-42 succeeded", buildURL}},
		{"plan of a pull request", nil, &agent.Result{Summary: "would start a run of version v3"}, []string{"--change-id", "7"}, 0,
			status{"success", "branchml/train", "would start a run of version v3", buildURL}},
		{"failure", agent.Failed("run r-42", errors.New("task train failed"), "see the task log"), nil, nil, 1,
			status{"failure", "branchml/train", "run r-42: task train failed", buildURL}},
		{"gate", agent.Gate("KPI gate", errors.New("auc 0.51 < 0.55 (ghp_0123456789abcdefghij)"), ""), nil, nil, 3,
			status{"failure", "branchml/train", "gate not met: KPI gate: auc 0.51 < 0.55 (***)", buildURL}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, f, sha := setup(t)
			t.Setenv("GITHUB_TOKEN", "ghp_0123456789abcdefghij")
			var during []status
			a := app(func(e *cli.Env) (*agent.Result, error) {
				during = statuses(t, f, sha)
				return c.res, c.err
			})
			args := append([]string{"run", "--workspace", root, "--commit", sha, "--build-url", buildURL}, c.args...)
			code, logs := run(t, context.Background(), a, args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s", code, c.code, logs)
			}
			verb := "running train"
			if len(c.args) > 0 {
				verb = "planning train"
			}
			if want := []status{{"pending", "branchml/train", verb, buildURL}}; !equal(during, want) {
				t.Errorf("while running: %v, want %v", during, want)
			}
			if got := statuses(t, f, sha); !equal(got, []status{c.want}) {
				t.Errorf("after: %v, want %v", got, c.want)
			}
		})
	}
}

func TestInterruptedStageSetsErrorOnAFreshContext(t *testing.T) {
	root, f, sha := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := app(func(e *cli.Env) (*agent.Result, error) {
		cancel() // SIGTERM: Jenkins aborts the build
		<-e.Ctx.Done()
		return nil, e.Ctx.Err()
	})
	code, logs := run(t, ctx, a, "run", "--workspace", root, "--commit", sha, "--build-url", buildURL)
	if code != agent.ExitInterrupted {
		t.Fatalf("exit %d\n%s", code, logs)
	}
	if got, want := statuses(t, f, sha), []status{{"error", "branchml/train", "train interrupted", buildURL}}; !equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
}

func TestStatusesOnlyForCIBuildsUnlessAsked(t *testing.T) {
	root, f, sha := setup(t)
	a := app(func(*cli.Env) (*agent.Result, error) { return &agent.Result{Summary: "done"}, nil })
	// By hand (no --build-url): no status.
	if code, logs := run(t, context.Background(), a, "run", "--workspace", root, "--commit", sha); code != 0 {
		t.Fatalf("exit %d\n%s", code, logs)
	}
	if got := statuses(t, f, sha); len(got) != 0 {
		t.Fatalf("statuses by hand: %v", got)
	}
	// Off in a CI build.
	if code, _ := run(t, context.Background(), a, "run", "--workspace", root, "--commit", sha, "--build-url", buildURL, "--commit-status", "off"); code != 0 {
		t.Fatal(code)
	}
	if got := statuses(t, f, sha); len(got) != 0 {
		t.Fatalf("statuses with off: %v", got)
	}
	// On by hand: no target URL.
	if code, _ := run(t, context.Background(), a, "run", "--workspace", root, "--commit", sha, "--commit-status", "on"); code != 0 {
		t.Fatal(code)
	}
	if got, want := statuses(t, f, sha), []status{{"success", "branchml/train", "done", ""}}; !equal(got, want) {
		t.Fatalf("statuses with on: %v, want %v", got, want)
	}
	code, logs := run(t, context.Background(), a, "run", "--workspace", root, "--commit", sha, "--commit-status", "always")
	if code != 2 || !strings.Contains(logs, `--commit-status "always" is not auto, on or off`) {
		t.Fatalf("bad mode: exit %d\n%s", code, logs)
	}
}

func TestAStatusThatCannotBeSetDoesNotFailTheStage(t *testing.T) {
	root, _, _ := setup(t)
	a := app(func(*cli.Env) (*agent.Result, error) { return &agent.Result{Summary: "done"}, nil })
	// A commit the forge does not know: SetStatus fails, the stage succeeds.
	code, logs := run(t, context.Background(), a, "run", "--workspace", root, "--commit", strings.Repeat("ab", 20), "--build-url", buildURL)
	if code != 0 || !strings.Contains(logs, "commit status not set (the stage goes on)") {
		t.Fatalf("exit %d\n%s", code, logs)
	}
}

func TestCommitStatusCommand(t *testing.T) {
	root, f, sha := setup(t)
	a := cli.NewApp("branchml", "test", commitstatus.Command())
	code, logs := run(t, context.Background(), a, "commit-status", "--workspace", root, "--commit", sha, "--build-url", buildURL,
		"--context", "branchml/deploy", "--state", "error", "--description", "aborted or timed out (stage timeout 90 min)\nsecond line")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, logs)
	}
	if got, want := statuses(t, f, sha), []status{{"error", "branchml/deploy", "aborted or timed out (stage timeout 90 min)", buildURL}}; !equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	code, logs = run(t, context.Background(), a, "commit-status", "--workspace", root, "--commit", sha, "--context", "branchml/deploy", "--state", "done")
	if code != 2 || !strings.Contains(logs, `state "done" is not one of pending, success, failure, error`) {
		t.Errorf("bad state: exit %d\n%s", code, logs)
	}
}

func TestDescription(t *testing.T) {
	long := strings.Repeat("é", 150)
	if got := commitstatus.Description(long); got != strings.Repeat("é", 139)+"…" {
		t.Errorf("long: %q (%d runes)", got, len([]rune(got)))
	}
	if got := commitstatus.Description("\n\n  first \nsecond"); got != "first" {
		t.Errorf("first line: %q", got)
	}
}

func equal(a, b []status) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
