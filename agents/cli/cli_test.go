package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/secrets"
)

type seen struct {
	env   *Env
	name  string
	count int
	steps []string
}

func testApp(s *seen, run func(*Env) (*agent.Result, error)) *ucli.App {
	return NewApp("branchml-test", "test", Command(Spec{
		Name: "run", Stage: "test", BuildFlags: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "name"},
			&ucli.IntFlag{Name: "count"},
			&ucli.StringSliceFlag{Name: "step"},
		},
		Run: func(e *Env) (*agent.Result, error) {
			s.env, s.name, s.count, s.steps = e, e.CLI.String("name"), e.CLI.Int("count"), e.CLI.StringSlice("step")
			return run(e)
		},
	}))
}

func runApp(t *testing.T, app *ucli.App, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), app, append([]string{"branchml-test"}, args...), Streams{Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestParamsFileAndFlagsWin(t *testing.T) {
	dir := t.TempDir()
	params := filepath.Join(dir, "p.json")
	os.WriteFile(params, []byte(`{"name":"from-file","count":3,"step":["a","b"],"commit":"abc123","dry-run":true}`), 0o644)
	var s seen
	app := testApp(&s, func(*Env) (*agent.Result, error) { return &agent.Result{Summary: "ok"}, nil })
	code, out, _ := runApp(t, app, "run", "--params", params, "--name", "from-flag")
	if code != 0 || out != "ok\n" {
		t.Fatalf("code %d out %q", code, out)
	}
	if s.name != "from-flag" || s.count != 3 || strings.Join(s.steps, ",") != "a,b" || s.env.Build.Commit != "abc123" || !s.env.DryRun {
		t.Errorf("got name=%q count=%d steps=%v commit=%q dry=%v", s.name, s.count, s.steps, s.env.Build.Commit, s.env.DryRun)
	}
}

func TestParamsUnknownKeyIsUsage(t *testing.T) {
	params := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(params, []byte(`{"nmae":"x"}`), 0o644)
	var s seen
	code, _, errOut := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }), "run", "--params", params)
	if code != agent.ExitUsage || !strings.Contains(errOut, `"nmae" is not a flag of this command`) {
		t.Errorf("code %d err %q", code, errOut)
	}
}

func TestChangeIDForcesDryRun(t *testing.T) {
	var s seen
	code, _, _ := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }), "run", "--change-id", "7")
	if code != 0 || !s.env.DryRun || s.env.Build.ChangeID != "7" {
		t.Errorf("code %d dry %v", code, s.env.DryRun)
	}
}

func TestExitCodesAndErrorDetails(t *testing.T) {
	cases := []struct {
		err  error
		code int
		what string
	}{
		{agent.Failed("push djia30/train", errors.New("503"), "retry later"), 1, "push djia30/train"},
		{agent.Usagef("pass --commit", "no commit"), 2, ""},
		{agent.Gate("kpi gate", errors.New("validation.auc 0.49 <= 0.5"), "improve the model"), 3, "kpi gate"},
		{context.Canceled, 130, ""},
		{errors.New("plain"), 1, ""},
	}
	for _, c := range cases {
		dir := t.TempDir()
		var s seen
		res, det := filepath.Join(dir, "r.json"), filepath.Join(dir, "e.json")
		code, _, _ := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, c.err }), "run", "--result", res, "--error-details", det)
		if code != c.code {
			t.Errorf("%v: code %d want %d", c.err, code, c.code)
		}
		var r agent.Result
		var d agent.ErrorDetails
		readJSON(t, res, &r)
		readJSON(t, det, &d)
		if r.OK || r.ExitCode != c.code || r.Stage != "test" || d.ExitCode != c.code || d.What != c.what || d.Kind != "ErrorDetails" {
			t.Errorf("%v: result %+v details %+v", c.err, r, d)
		}
	}
}

func TestBadFlagIsUsage(t *testing.T) {
	var s seen
	code, _, errOut := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }), "run", "--no-such-flag")
	if code != agent.ExitUsage || !strings.Contains(errOut, "flag provided but not defined") {
		t.Errorf("code %d err %q", code, errOut)
	}
}

func TestSecretsMaskedInResultErrorAndLogs(t *testing.T) {
	secrets.Reset()
	t.Setenv("KFP_TOKEN", "kfp-very-secret-token")
	dir := t.TempDir()
	var s seen
	app := testApp(&s, func(e *Env) (*agent.Result, error) {
		tok, _ := secrets.Require("KFP_TOKEN")
		e.Log.Debugf("using token %s", tok)
		e.Log.WithField("token", tok).Info("calling")
		return &agent.Result{Summary: "token " + tok}, agent.Failed("upload", errors.New("401 for token "+tok), "check "+tok)
	})
	res, det := filepath.Join(dir, "r.json"), filepath.Join(dir, "e.json")
	code, out, errOut := runApp(t, app, "run", "--log-level", "debug", "--log-format", "json", "-o", "json", "--result", res, "--error-details", det)
	if code != 1 {
		t.Fatalf("code %d", code)
	}
	all := out + errOut + readFile(t, res) + readFile(t, det)
	if strings.Contains(all, "kfp-very-secret-token") {
		t.Fatalf("secret leaked:\n%s", all)
	}
	if !strings.Contains(errOut, "upload: 401 for token ***") || !strings.Contains(errOut, `"fix":"check ***"`) {
		t.Errorf("stderr: %s", errOut)
	}
}

func TestJSONOutput(t *testing.T) {
	var s seen
	code, out, _ := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) {
		return &agent.Result{Summary: "done", Outputs: map[string]any{"id": "r-1"}}, nil
	}), "run", "-o", "json")
	var r agent.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
		t.Fatalf("%v %q", err, out)
	}
	if r.APIVersion != "branchml.dev/v1" || r.Kind != "Result" || !r.OK || r.Outputs.(map[string]any)["id"] != "r-1" {
		t.Errorf("%+v", r)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readJSON(t *testing.T, p string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(readFile(t, p)), v); err != nil {
		t.Fatal(err)
	}
}

func TestFlagsAfterPositionalArguments(t *testing.T) {
	var got []string
	var ws string
	app := NewApp("branchml-test", "test", Command(Spec{
		Name: "lineage",
		Subcommands: []*ucli.Command{Command(Spec{
			Name: "show", Stage: "test", ArgsUsage: "ID",
			Flags: []ucli.Flag{&ucli.StringFlag{Name: "workspace"}},
			Run: func(e *Env) (*agent.Result, error) {
				got, ws = e.CLI.Args().Slice(), e.CLI.String("workspace")
				return nil, nil
			},
		})},
	}))
	for _, args := range [][]string{
		{"lineage", "show", "lin-1", "--workspace", "ws", "--dry-run"},
		{"lineage", "show", "--workspace=ws", "lin-1"},
		{"lineage", "show", "--dry-run", "lin-1", "--workspace", "ws"},
	} {
		got, ws = nil, ""
		code, _, errOut := runApp(t, app, args...)
		if code != 0 || strings.Join(got, ",") != "lin-1" || ws != "ws" {
			t.Errorf("%v: code %d args %v workspace %q %s", args, code, got, ws, errOut)
		}
	}
	if got := FlagsFirst(app, []string{"b", "lineage", "show", "x", "--", "-y"}); strings.Join(got, " ") != "b lineage show -- x -y" {
		t.Errorf("FlagsFirst = %v", got)
	}
}

func TestUnexpectedArgumentIsUsage(t *testing.T) {
	var s seen
	code, _, errOut := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }), "run", "extra-arg")
	if code != agent.ExitUsage || !strings.Contains(errOut, `unexpected argument "extra-arg": 'run' takes no arguments`) {
		t.Errorf("code %d err %q", code, errOut)
	}
}

// A secret in a known variable is masked even in errors that come before
// any agent reads it (a bad --set value echoing it).
func TestKnownSecretsMaskedFromTheStart(t *testing.T) {
	secrets.Reset()
	t.Setenv("GITHUB_TOKEN", "ghp_secretvalue123")
	var s seen
	app := testApp(&s, func(e *Env) (*agent.Result, error) {
		return nil, agent.Usagef("", "bad value %q", "ghp_secretvalue123")
	})
	code, out, errOut := runApp(t, app, "run", "-o", "json")
	if code != agent.ExitUsage || strings.Contains(out+errOut, "ghp_secretvalue123") || !strings.Contains(errOut, `bad value "***"`) {
		t.Errorf("code %d out %s err %s", code, out, errOut)
	}
}

func TestSliceFlagsKeepCommas(t *testing.T) {
	var s seen
	code, _, _ := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }), "run", "--step", "a,b", "--step", "[1, 2]")
	if code != 0 || len(s.steps) != 2 || s.steps[0] != "a,b" || s.steps[1] != "[1, 2]" {
		t.Errorf("steps = %q", s.steps)
	}
}

func TestCommitDefaultsToWorkspaceHEAD(t *testing.T) {
	ws := t.TempDir()
	for _, args := range [][]string{{"init", "-q"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = ws
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	head, _ := exec.Command("git", "-C", ws, "rev-parse", "HEAD").Output()
	var s seen
	code, _, _ := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }), "run", "--workspace", ws)
	if code != 0 || s.env.Build.Commit != strings.TrimSpace(string(head)) || len(s.env.Build.Commit) != 40 {
		t.Errorf("commit = %q, HEAD %q", s.env.Build.Commit, head)
	}
}

func TestParamsWrongTypeNamesTheType(t *testing.T) {
	params := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(params, []byte(`{"timeout": 5, "dry-run": "yes"}`), 0o644)
	var s seen
	code, _, errOut := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }), "run", "--params", params)
	if code != agent.ExitUsage || !strings.Contains(errOut, `"dry-run": "yes" is not a boolean (true or false)`) {
		t.Errorf("code %d err %q", code, errOut)
	}
	os.WriteFile(params, []byte(`{"timeout": 5}`), 0o644)
	code, _, errOut = runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }), "run", "--params", params)
	if code != agent.ExitUsage || !strings.Contains(errOut, `"timeout": "5" is not a duration such as "30s" or "5m"`) {
		t.Errorf("code %d err %q", code, errOut)
	}
}

// The Jenkins step passes the target branch of a change request in --params
// while Jenkins exports BRANCH_NAME=PR-7: the file wins over the environment,
// the command line over both.
func TestParamsWinOverEnvironmentCommandLineWinsOverParams(t *testing.T) {
	t.Setenv("BRANCH_NAME", "PR-7")
	t.Setenv("CHANGE_ID", "7")
	params := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(params, []byte(`{"branch":"training","change-id":"7","name":"from-file"}`), 0o644)
	var s seen
	app := func() *ucli.App { return testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }) }
	if code, _, errOut := runApp(t, app(), "run", "--params", params); code != 0 || s.env.Build.Branch != "training" || s.env.Build.ChangeID != "7" || !s.env.DryRun {
		t.Fatalf("code %d branch %q change %q dry %v: %s", code, s.env.Build.Branch, s.env.Build.ChangeID, s.env.DryRun, errOut)
	}
	if code, _, _ := runApp(t, app(), "run", "--params", params, "--branch=main", "--name", "flag"); code != 0 || s.env.Build.Branch != "main" || s.name != "flag" {
		t.Fatalf("code %d branch %q name %q", code, s.env.Build.Branch, s.name)
	}
	t.Setenv("BRANCH_NAME", "")
	os.Unsetenv("BRANCH_NAME")
	if code, _, _ := runApp(t, app(), "run", "--params", params); code != 0 || s.env.Build.Branch != "training" {
		t.Fatalf("without BRANCH_NAME: code %d branch %q", code, s.env.Build.Branch)
	}
}

// `branchml config stages` marks --branch required; the step gives it only
// in --params, so the check happens after the file is read.
func TestRequiredFlagMayComeFromParams(t *testing.T) {
	dir := t.TempDir()
	params := filepath.Join(dir, "p.json")
	os.WriteFile(params, []byte(`{"target":"training"}`), 0o644)
	var got string
	app := func() *ucli.App {
		return NewApp("branchml-test", "test", Command(Spec{
			Name: "stages", Stage: "config",
			Flags: []ucli.Flag{&ucli.StringFlag{Name: "target", Required: true, EnvVars: []string{"BRANCHML_TEST_TARGET"}}},
			Run:   func(e *Env) (*agent.Result, error) { got = e.CLI.String("target"); return nil, nil },
		}))
	}
	if code, _, errOut := runApp(t, app(), "stages", "--params", params); code != 0 || got != "training" {
		t.Fatalf("code %d target %q: %s", code, got, errOut)
	}
	res, det := filepath.Join(dir, "r.json"), filepath.Join(dir, "e.json")
	code, _, errOut := runApp(t, app(), "stages", "--result", res, "--error-details", det)
	var d agent.ErrorDetails
	readJSON(t, det, &d)
	if code != agent.ExitUsage || !strings.Contains(errOut, `required flag "target" not set`) || d.ExitCode != agent.ExitUsage {
		t.Errorf("code %d err %q details %+v", code, errOut, d)
	}
}

// A --params file the command rejects still ends in the result and
// error-details files, where the Jenkins step reads what went wrong.
func TestBadParamsWriteResultAndErrorDetails(t *testing.T) {
	dir := t.TempDir()
	params, res, det := filepath.Join(dir, "p.json"), filepath.Join(dir, "r.json"), filepath.Join(dir, "e.json")
	os.WriteFile(params, []byte(`{"experimnt":"x"}`), 0o644)
	var s seen
	code, _, _ := runApp(t, testApp(&s, func(*Env) (*agent.Result, error) { return nil, nil }), "run",
		"--params", params, "--result", res, "--error-details", det)
	var r agent.Result
	var d agent.ErrorDetails
	readJSON(t, res, &r)
	readJSON(t, det, &d)
	if code != agent.ExitUsage || r.OK || r.ExitCode != agent.ExitUsage || r.Stage != "test" || d.What != "read --params" ||
		!strings.Contains(d.Why, `"experimnt" is not a flag of this command`) || d.Fix == "" {
		t.Errorf("code %d result %+v details %+v", code, r, d)
	}
}

// With --log-format json every line of stderr is JSON, the final error
// too (it used to end in two plain-text lines), also for a bad flag.
func TestJSONLogsStayJSONToTheLastLine(t *testing.T) {
	var s seen
	for _, args := range [][]string{
		{"run", "--log-format", "json"},
		{"run", "--log-format=json", "--no-such-flag"},
	} {
		code, _, errOut := runApp(t, testApp(&s, func(e *Env) (*agent.Result, error) {
			e.Log.Info("working")
			return nil, agent.Failed("push djia30/train", errors.New("503"), "retry later")
		}), args...)
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		for _, l := range lines {
			var v map[string]any
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("%v: stderr line %q is not JSON:\n%s", args, l, errOut)
			}
		}
		var last map[string]any
		json.Unmarshal([]byte(lines[len(lines)-1]), &last)
		if last["level"] != "error" || !strings.HasPrefix(last["msg"].(string), "branchml-test: error: ") || last["exitCode"] != float64(code) {
			t.Fatalf("%v: last line %v (exit %d)", args, last, code)
		}
		if code == 1 && last["fix"] != "retry later" {
			t.Fatalf("fix = %v", last["fix"])
		}
	}
}
