package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

type listed struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func list(t *testing.T) []listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", "./agents/...")
	cmd.Dir = moduleRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 40 {
		t.Fatalf("go list found %d packages under agents/; expected the whole tree", len(pkgs))
	}
	return pkgs
}

// TestImportDirections fails on any import between our packages that the
// layout forbids, and on any package outside its group's folder.
func TestImportDirections(t *testing.T) {
	var bad []string
	for _, p := range list(t) {
		from, err := Place(p.ImportPath)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, agents+"/") {
				if ok, why := ThirdParty(from, imp); !ok {
					bad = append(bad, "agents/"+from.Path+" -> "+imp+": "+why)
				}
				continue
			}
			to, err := Place(imp)
			if err != nil {
				bad = append(bad, err.Error())
				continue
			}
			if ok, why := Allowed(from, to); !ok {
				bad = append(bad, "agents/"+from.Path+" -> agents/"+to.Path+": "+why)
			}
		}
		// Tests may use fakes and implementations, but never a main package.
		for _, imp := range append(p.TestImports, p.XTestImports...) {
			if to, err := Place(imp); err == nil && to.Group == Cmd {
				bad = append(bad, "tests of agents/"+from.Path+" import the main package agents/"+to.Path)
			}
		}
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
}

// TestTopLevel keeps agents/ to the folders of the layout.
func TestTopLevel(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(moduleRoot(t), "agents"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := "README.md backends cli cmd config internal records stages"
	if strings.Join(got, " ") != want {
		t.Errorf("agents/ holds %q; the layout is %q (see agents/README.md)", strings.Join(got, " "), want)
	}
}

// TestRules checks the rules themselves on arrows that must fail and
// arrows that must pass, so that a rule loosened by mistake shows.
func TestRules(t *testing.T) {
	p := func(rel string) Pkg {
		pk, err := Place(agents + "/" + rel)
		if err != nil {
			t.Fatal(err)
		}
		return pk
	}
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{"backends/serving/local", "stages/deploy", false},
		{"backends/serving/local", "cli", false},
		{"backends/storage/trident", "backends/forge", false},
		{"backends/serving/local", "backends/serving/tfserving", true},
		{"stages/deploy", "backends/serving/local", false},
		{"stages/deploy", "backends/serving/servingfactory", false},
		{"stages/deploy", "backends/serving", true},
		{"stages/deploy/rollout", "backends/serving/tfserving", true},
		{"stages/train", "stages/deploy", false},
		{"stages/snapshot", "stages/train", true},
		{"stages/train", "stages/snapshot", false},
		{"stages/train", "cli/traincmd", false},
		{"stages/train", "cli", false},
		{"stages/train", "internal/agent", true},
		{"cli", "stages/train", false},
		{"cli", "internal/secrets", true},
		{"internal/secrets", "cli", false},
		{"internal/statedir", "config", true},
		{"internal/retry", "backends/forge", false},
		{"config", "internal/secrets", false},
		{"records", "backends/pipelines", true},
		{"records", "backends/pipelines/kfp", false},
		{"internal/fake/kfp", "stages/train", false},
		{"cli/traincmd", "internal/fake/kfp", false},
		{"cli/traincmd", "backends/pipelines/pipelinesfactory", true},
		{"cmd/branchml", "stages/train", false},
		{"cmd/branchml", "cli/branchmlcmd", true},
		{"cli/quickstart", "cmd/branchml", false},
	} {
		if ok, why := Allowed(p(c.from), p(c.to)); ok != c.ok {
			t.Errorf("Allowed(%s -> %s) = %v (%s), want %v", c.from, c.to, ok, why, c.ok)
		}
	}
	if _, err := Place(agents + "/rollout"); err == nil {
		t.Error("Place(agents/rollout): a package at the top level must be outside every group")
	}
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{"backends/serving/kubernetes", "k8s.io/client-go/kubernetes", true},
		{"stages/deploy", "k8s.io/client-go/kubernetes", false},
		{"stages/pipeline", "github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/run_model", false},
		{"backends/pipelines/kfp", "github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/run_model", true},
		{"backends/registry", "github.com/urfave/cli/v2", false},
		{"cli/buildcmd", "github.com/urfave/cli/v2", true},
	} {
		if ok, why := ThirdParty(p(c.from), c.to); ok != c.ok {
			t.Errorf("ThirdParty(%s -> %s) = %v (%s), want %v", c.from, c.to, ok, why, c.ok)
		}
	}
}
