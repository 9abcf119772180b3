package jenkinscmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/jenkinscmd"
	fake "github.com/branchml/branchml/agents/internal/fake/jenkins"
)

const token = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	app := cli.NewApp("branchml", "test", jenkinscmd.Command())
	code := cli.Run(context.Background(), app, append([]string{"branchml", "jenkins"}, args...), cli.Streams{Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func server(t *testing.T) *fake.Server {
	s := fake.New()
	s.User, s.Token, s.CrumbRequired = "ci-bot", token, true
	t.Cleanup(s.Close)
	t.Setenv("JENKINS_URL", s.URL())
	t.Setenv("JENKINS_USER", "ci-bot")
	t.Setenv("JENKINS_API_TOKEN", token)
	return s
}

func outputs(t *testing.T, stdout string) map[string]any {
	t.Helper()
	var res struct {
		OK       bool           `json:"ok"`
		ExitCode int            `json:"exitCode"`
		Outputs  map[string]any `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not a result JSON: %v\n%s", err, stdout)
	}
	return res.Outputs
}

func TestSeedCreatesRunsAndFollowsThenIsIdempotent(t *testing.T) {
	s := server(t)
	s.Created = fake.Script{Result: "SUCCESS", Log: []string{"Processing DSL script jobs/multibranch.groovy\n", "Finished: SUCCESS\n"}}
	code, stdout, stderr := run(t, "seed", "--library-repo", "https://github.com/branchml/branchml.git",
		"--wait", "--poll-interval", "1ms", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	out := outputs(t, stdout)
	for k, want := range map[string]any{"job": "branchml-seed", "action": "created", "jenkinsVersion": fake.Version,
		"queueId": 101.0, "number": 1.0, "result": "SUCCESS", "url": s.URL() + "/job/branchml-seed/1/"} {
		if out[k] != want {
			t.Errorf("outputs[%s] = %#v, want %#v", k, out[k], want)
		}
	}
	if !strings.Contains(stderr, "Processing DSL script jobs/multibranch.groovy\nFinished: SUCCESS\n") {
		t.Errorf("console not streamed to stderr with -o json:\n%s", stderr)
	}
	cfg, _ := s.Config("branchml-seed")
	if !strings.Contains(cfg, "<url>https://github.com/branchml/branchml.git</url>") {
		t.Errorf("seed config:\n%s", cfg)
	}
	if strings.Contains(stderr, token) || strings.Contains(stdout, token) {
		t.Fatal("token printed")
	}

	// The seed build's options (jobs/seed.groovy) add job properties, and
	// Jenkins answers config.xml re-serialized (its own XML declaration,
	// plugin versions, <actions/>): none of that is a change.
	s.SetConfig("branchml-seed", strings.Replace(cfg, "<properties/>", `<properties>
    <org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty>
      <abortPrevious>false</abortPrevious>
    </org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty>
    <jenkins.model.BuildDiscarderProperty>
      <strategy class="hudson.tasks.LogRotator"><daysToKeep>-1</daysToKeep><numToKeep>20</numToKeep></strategy>
    </jenkins.model.BuildDiscarderProperty>
  </properties>`, 1))
	cfg, _ = s.Config("branchml-seed")
	for i := 0; i < 2; i++ {
		code, stdout, _ = run(t, "seed", "--library-repo", "https://github.com/branchml/branchml.git", "--no-build", "-o", "json")
		if code != 0 || outputs(t, stdout)["action"] != "unchanged" {
			t.Fatalf("seed #%d after the first: exit %d %s", i+2, code, stdout)
		}
	}
	if cfg2, _ := s.Config("branchml-seed"); cfg2 != cfg {
		t.Fatal("an unchanged seed posted its config.xml")
	}
	code, stdout, _ = run(t, "seed", "--library-repo", "https://github.com/branchml/other.git", "--dry-run")
	if code != 0 || !strings.HasPrefix(stdout, "would update seed job branchml-seed and run it\n") {
		t.Fatalf("dry run: exit %d %q", code, stdout)
	}
	if cfg2, _ := s.Config("branchml-seed"); cfg2 != cfg {
		t.Fatal("dry run changed the seed job")
	}
}

func TestTriggerWaitMapsResultsToExitCodes(t *testing.T) {
	for _, c := range []struct {
		result string
		code   int
	}{{"SUCCESS", 0}, {"FAILURE", 1}, {"UNSTABLE", 3}} {
		s := server(t)
		s.AddFolder("ml")
		s.AddFolder("ml/djia30")
		s.AddJob("ml/djia30/training", fake.Script{QueuePolls: 1, Result: c.result, Log: []string{"train\n"}})
		code, stdout, stderr := run(t, "trigger", "--job", "ml/djia30", "--branch", "training", "--wait", "--poll-interval", "1ms")
		if code != c.code {
			t.Fatalf("%s: exit %d, want %d\n%s", c.result, code, c.code, stderr)
		}
		if !strings.HasPrefix(stdout, "train\nml/djia30 branch training build #1 "+c.result+"\n") {
			t.Errorf("%s: stdout %q", c.result, stdout)
		}
	}
}

func TestTriggerWithoutBranchScansTheMultibranchJob(t *testing.T) {
	s := server(t)
	s.AddMultibranch("ml/djia30")
	code, stdout, stderr := run(t, "trigger", "--job", "ml/djia30", "--wait", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if out := outputs(t, stdout); out["scan"] != true || out["job"] != "ml/djia30" || out["queueId"] != nil {
		t.Errorf("outputs: %v", out)
	}
	if s.Scans("ml/djia30") != 1 || !strings.Contains(stderr, "a branch indexing has no build to wait for") {
		t.Errorf("scans %d; stderr:\n%s", s.Scans("ml/djia30"), stderr)
	}
	code, stdout, _ = run(t, "trigger", "--job", "ml/djia30")
	if code != 0 || !strings.HasPrefix(stdout, "scheduled a branch indexing (scan) of ml/djia30; branches with new commits build by themselves\n") {
		t.Errorf("text: exit %d %q", code, stdout)
	}
}

func TestCancelledQueueItemFails(t *testing.T) {
	s := server(t)
	s.AddJob("djia30/training", fake.Script{Cancel: true})
	code, _, stderr := run(t, "trigger", "--job", "djia30", "--branch", "training", "--wait", "--poll-interval", "1ms")
	if code != 1 || !strings.Contains(stderr, "queue item 101 was cancelled before it started a build") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}

func TestUnauthorizedIsExit2WithAFixAndNoToken(t *testing.T) {
	server(t)
	t.Setenv("JENKINS_API_TOKEN", "not-the-right-token-1234")
	code, _, stderr := run(t, "status", "--job", "djia30", "--branch", "training")
	if code != 2 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "401 Unauthorized") || !strings.Contains(stderr, "fix: check JENKINS_USER and JENKINS_API_TOKEN") {
		t.Errorf("stderr: %s", stderr)
	}
	if strings.Contains(stderr, "not-the-right-token-1234") {
		t.Error("token printed")
	}
}

func TestForbiddenIsExit2(t *testing.T) {
	s := fake.NewWith(fake.Inject(&fake.Fault{Method: "POST", Status: 403, Body: "ci-bot is missing the Job/Build permission"}))
	t.Cleanup(s.Close)
	s.AddJob("djia30/training", fake.Script{})
	t.Setenv("JENKINS_URL", s.URL())
	t.Setenv("JENKINS_USER", "")
	t.Setenv("JENKINS_API_TOKEN", "")
	code, _, stderr := run(t, "trigger", "--job", "djia30", "--branch", "training")
	if code != 2 || !strings.Contains(stderr, "403 Forbidden: ci-bot is missing the Job/Build permission") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}

func TestStatusAndLogs(t *testing.T) {
	s := server(t)
	s.AddJob("djia30/deploy-model", fake.Script{Result: "FAILURE", Log: []string{"canary 10%\n", "rolled back\n"}})
	code, stdout, _ := run(t, "trigger", "--job", "djia30", "--branch", "deploy-model", "-o", "json")
	if code != 0 || outputs(t, stdout)["queueId"] != 101.0 {
		t.Fatalf("trigger: exit %d %s", code, stdout)
	}
	// The queue item becomes build #1 when it is polled.
	if code, _, stderr := run(t, "trigger", "--job", "djia30", "--branch", "deploy-model", "--wait", "--poll-interval", "1ms"); code != 1 {
		t.Fatalf("second trigger: exit %d %s", code, stderr)
	}
	code, stdout, _ = run(t, "status", "--job", "djia30", "--branch", "deploy-model", "--number", "1", "-o", "json")
	out := outputs(t, stdout)
	if code != 0 || out["number"] != 1.0 || out["result"] != "FAILURE" || out["building"] != false {
		t.Fatalf("status: exit %d %v", code, out)
	}
	start := time.Now()
	code, stdout, _ = run(t, "logs", "--job", "djia30", "--branch", "deploy-model", "--number", "1", "--poll-interval", "1ms")
	if code != 1 || !strings.HasPrefix(stdout, "canary 10%\nrolled back\n") {
		t.Fatalf("logs: exit %d %q (%s)", code, stdout, time.Since(start))
	}
}

func TestMissingURLAndTokenAreUsageErrors(t *testing.T) {
	t.Setenv("JENKINS_URL", "")
	code, _, stderr := run(t, "status", "--job", "x")
	if code != 2 || !strings.Contains(stderr, "set JENKINS_URL") {
		t.Fatalf("exit %d %s", code, stderr)
	}
	t.Setenv("JENKINS_URL", "https://ci.example.com")
	t.Setenv("JENKINS_USER", "ci-bot")
	t.Setenv("JENKINS_API_TOKEN", "")
	t.Setenv("JENKINS_API_TOKEN_FILE", "")
	code, _, stderr = run(t, "status", "--job", "x")
	if code != 2 || !strings.Contains(stderr, "JENKINS_USER is set but no API token") {
		t.Fatalf("exit %d %s", code, stderr)
	}
	code, _, stderr = run(t, "trigger", "--job", "x", "--param", "novalue")
	if code != 2 || !strings.Contains(stderr, `bad --param "novalue"`) {
		t.Fatalf("exit %d %s", code, stderr)
	}
}

func TestScriptHashPrintsJCasCLines(t *testing.T) {
	dir := t.TempDir()
	f := dir + "/multibranch.groovy"
	if err := os.WriteFile(f, []byte(`folder("ml")`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "script-hash", f)
	// printf 'groovy:%s' 'folder("ml")' | sha512sum
	want := "- \"SHA512:95eb4ed64b2300ddb2c707103f9fb78d52a6b92f47cf5b9dab6a24bb294eb188729737d0c114c832a8860366aa7ba199fe5ea9cd834850cb8554ae37ae703e52\" # " + f + "\n"
	if code != 0 || stdout != want {
		t.Fatalf("exit %d\n got %q\nwant %q\n%s", code, stdout, want, stderr)
	}
	if code, _, stderr = run(t, "script-hash", dir+"/missing.groovy"); code != 2 || !strings.Contains(stderr, "missing.groovy") {
		t.Errorf("missing file: exit %d\n%s", code, stderr)
	}
}
