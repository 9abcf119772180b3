package pipelinespec

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestCorpus validates the KFP SDK's compiled test pipelines
// (test_data/sdk_compiled_pipelines of kubeflow/pipelines) when
// BRANCHML_KFP_CORPUS names that folder: every YAML under valid/ (and
// argo_compatibility/) must be accepted, every file under invalid/ (YAML,
// zip, png) refused.
// The corpus is not part of this repository; without the variable the test
// is skipped. It prints the accepted and refused counts.
func TestCorpus(t *testing.T) {
	root := os.Getenv("BRANCHML_KFP_CORPUS")
	if root == "" {
		t.Skip("set BRANCHML_KFP_CORPUS to test_data/sdk_compiled_pipelines of a kubeflow/pipelines checkout")
	}
	var files []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		yamlFile := strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")
		if err == nil && !d.IsDir() && (yamlFile || (strings.HasPrefix(rel, "invalid/") && !strings.HasSuffix(p, ".py"))) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	counts := map[string]int{}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Validate(data)
		invalid := strings.HasPrefix(rel, "invalid/")
		switch {
		case invalid && err == nil:
			counts["invalid accepted"]++
			t.Errorf("%s: accepted, but it is invalid", rel)
		case invalid:
			counts["invalid refused"]++
		case err != nil:
			counts["valid refused"]++
			t.Errorf("%s: %v", rel, err)
		default:
			counts["valid accepted"]++
		}
	}
	t.Logf("%d files: valid accepted %d, valid refused %d, invalid refused %d, invalid accepted %d", len(files),
		counts["valid accepted"], counts["valid refused"], counts["invalid refused"], counts["invalid accepted"])
}
