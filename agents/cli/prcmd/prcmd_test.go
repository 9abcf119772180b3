package prcmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/prcmd"
)

// The data scientist's path on the local forge: open, approve (not by
// the author), merge, list, show, close; with -o json records.
func TestPRLifecycle(t *testing.T) {
	ctx := context.Background()
	remote := filepath.Join(t.TempDir(), "ml.git")
	f, err := gitremote.Init(ctx, remote, map[string][]byte{"README.md": []byte("# ml\n")}, []string{"main", "ds1", "build-components"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Message: "tune", Files: map[string][]byte{"x": []byte("1\n")}}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(prcmd.RemoteEnv, remote)
	t.Setenv(gitremote.UserEnv, "ds1")
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		app := cli.NewApp("branchml", "test", prcmd.Command())
		code := cli.Run(ctx, app, append([]string{"branchml", "pr"}, args...), cli.Streams{Out: &out, Err: &errb})
		return code, out.String(), errb.String()
	}
	code, out, errs := run("open", "--head", "ds1", "--base", "build-components", "--title", "Tune the network")
	if code != 0 || out != "opened #1   open    ds1 → build-components  Tune the network  (by ds1; not approved)\n" {
		t.Fatalf("open = %d %q %s", code, out, errs)
	}
	if code, _, errs = run("approve", "1"); code != 2 || !strings.Contains(errs, "ds1 opened it and cannot approve") || !strings.Contains(errs, "fix: approve as another user: --as NAME") {
		t.Fatalf("self-approval = %d %s", code, errs)
	}
	if code, out, errs = run("approve", "--base", "build-components", "--as", "reviewer", "--body", "lgtm"); code != 0 || !strings.Contains(out, "(by ds1; approved by reviewer)") {
		t.Fatalf("approve = %d %s %s", code, out, errs)
	}
	if code, _, errs = run("merge", "build-components", "--as", "reviewer"); code != 2 || !strings.Contains(errs, "no open pull request from build-components") {
		t.Fatalf("merge of a branch with no PR = %d %s", code, errs)
	}
	if code, out, errs = run("merge", "ds1", "--base", "build-components", "--as", "reviewer"); code != 0 || !strings.Contains(out, "merged #1   merged  ds1 → build-components  Tune the network  (by ds1; approved by reviewer; merged by reviewer)") ||
		!strings.Contains(out, "build-components is now ") {
		t.Fatalf("merge = %d %s %s", code, out, errs)
	}
	if code, out, _ = run("list"); code != 0 || out != "no open pull requests\n" {
		t.Fatalf("list = %d %q", code, out)
	}
	code, out, _ = run("list", "--state", "all", "-o", "json")
	var lj struct {
		Outputs struct {
			PullRequests []gitremote.PullRecord `json:"pullRequests"`
		} `json:"outputs"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &lj) != nil || len(lj.Outputs.PullRequests) != 1 || lj.Outputs.PullRequests[0].MergedBy != "reviewer" ||
		lj.Outputs.PullRequests[0].Approvals[0].User != "reviewer" {
		t.Fatalf("list -o json = %d %s", code, out)
	}
	if code, out, _ = run("show", "1"); code != 0 || !strings.Contains(out, "\nreviews:\n") || !strings.Contains(out, "APPROVED          reviewer on ") || !strings.Contains(out, ": lgtm") {
		t.Fatalf("show = %d %s", code, out)
	}
	if code, _, errs = run("show", "9"); code != 2 || !strings.Contains(errs, "branchml pr list --state all") {
		t.Fatalf("show 9 = %d %s", code, errs)
	}
	f.WriteBack(ctx, forge.WriteBack{Branch: "ds1", Message: "more", Files: map[string][]byte{"x": []byte("2\n")}})
	run("open", "--head", "ds1", "--base", "main")
	if code, out, _ = run("close", "2", "--as", "alice"); code != 0 || !strings.Contains(out, "closed #2   closed  ds1 → main  Merge ds1 into main  (by ds1; closed by alice)") {
		t.Fatalf("close = %d %s", code, out)
	}
	if code, _, errs = run("merge", "2"); code != 2 || !strings.Contains(errs, "it is closed") {
		t.Fatalf("merge of a closed PR = %d %s", code, errs)
	}
	os.Unsetenv(prcmd.RemoteEnv)
	if code, _, errs = run("list", "--config", filepath.Join(t.TempDir(), "none.yaml")); code != 2 || !strings.Contains(errs, "export "+prcmd.RemoteEnv) {
		t.Fatalf("no forge = %d %s", code, errs)
	}
}
