package branchmlcmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/cli"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), App(), append([]string{"branchml"}, args...), cli.Streams{Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestValidateExample(t *testing.T) {
	code, out, errOut := run(t, "config", "validate", "--config", "../../../examples/djia30/branchml.yaml")
	if code != 0 || out != "../../../examples/djia30/branchml.yaml: valid (project djia30)\n" {
		t.Fatalf("code %d out %q err %q", code, out, errOut)
	}
}

func TestValidateInvalidExits2NamingTheField(t *testing.T) {
	p := filepath.Join(t.TempDir(), "branchml.yaml")
	os.WriteFile(p, []byte("apiVersion: branchml.dev/v1\nproject: demo\nbranches: {build: a, pipeline: b, train: c, deploy: d}\ndeploy: {canary: {steps: [-5]}}\n"), 0o644)
	code, _, errOut := run(t, "config", "validate", "--config", p)
	want := "branchml: error: load configuration: invalid configuration: " + p + ": deploy.canary.steps[0]: -5: minimum: got -5, want 1\n" +
		"  fix: fix the fields named above; the schema is resources/schema/branchml.schema.json\n"
	if code != 2 || errOut != want {
		t.Errorf("code %d\n got %q\nwant %q", code, errOut, want)
	}
}

func TestValidateMissingFile(t *testing.T) {
	code, _, errOut := run(t, "config", "validate", "--config", "/nonexistent/branchml.yaml")
	if code != 2 || !strings.Contains(errOut, "fix: run in the ML repository's root, or pass --config (or --workspace)") {
		t.Errorf("code %d err %q", code, errOut)
	}
}

func TestStagesJSON(t *testing.T) {
	code, out, _ := run(t, "config", "stages", "--branch", "kf-pipeline", "-o", "json", "--config", "../../../examples/djia30/branchml.yaml")
	if code != 0 || !strings.Contains(out, `"stages": [
      "pipeline"
    ]`) {
		t.Errorf("code %d out %s", code, out)
	}
}

func TestShowMasksNothingButPrintsEffective(t *testing.T) {
	t.Setenv("BRANCHML_DEPLOY_STRATEGY", "ab")
	code, out, _ := run(t, "config", "show", "--config", "../../../examples/djia30/branchml.yaml", "--set", "snapshot.keep=4")
	if code != 0 || !strings.Contains(out, "strategy: ab\n") || !strings.Contains(out, "keep: 4\n") {
		t.Errorf("code %d out %s", code, out)
	}
}

// Credentials in endpoint URLs, from the file or the environment, in every
// backend's settings: config show (text and JSON) and the errors mask them.
func TestConfigShowMasksURLUserinfo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "branchml.yaml")
	os.WriteFile(p, []byte("apiVersion: branchml.dev/v1\nproject: demo\nbranches: {build: a, pipeline: b, train: c, deploy: d}\n"+
		"backends:\n  pipelines: {type: kfp, endpoint: 'https://kfp:KfpPass1@kfp.example.com'}\n  forge: {type: local, remote: 'https://git:ForgePass2@git.example.com/r.git'}\n"), 0o644)
	t.Setenv("BRANCHML_BACKENDS_REGISTRY_HOST", "robot:RegPass3@127.0.0.1:5000")
	t.Setenv("BRANCHML_BACKENDS_FORGE_API_URL", "https://u:GhePass4@ghe.example.com/api/v3")
	for _, format := range []string{"text", "json"} {
		code, out, errOut := run(t, "config", "show", "-o", format, "--config", p)
		if code != 0 {
			t.Fatalf("%s: exit %d %s", format, code, errOut)
		}
		for _, pw := range []string{"KfpPass1", "ForgePass2", "RegPass3"} {
			if strings.Contains(out+errOut, pw) {
				t.Errorf("%s: %s shown:\n%s%s", format, pw, out, errOut)
			}
		}
		if !strings.Contains(out, "robot:***@127.0.0.1:5000") || !strings.Contains(out, "https://kfp:***@kfp.example.com") {
			t.Errorf("%s: masked endpoints missing:\n%s", format, out)
		}
	}
}
