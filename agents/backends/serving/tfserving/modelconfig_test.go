package tfserving_test

import (
	"reflect"
	"testing"

	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
)

const wantConfig = `model_config_list {
  config {
    name: "djia30"
    base_path: "/models/djia30"
    model_platform: "tensorflow"
    model_version_policy {
      specific {
        versions: 1
        versions: 2
      }
    }
    version_labels {
      key: "canary"
      value: 2
    }
    version_labels {
      key: "stable"
      value: 1
    }
  }
}
`

func TestFormatAndParseModelConfig(t *testing.T) {
	mc := tfs.ModelConfig{Name: "djia30", BasePath: "/models/djia30", Versions: []int64{2, 1}, Labels: map[string]int64{"stable": 1, "canary": 2}}
	got := tfs.FormatModelConfig(mc)
	if got != wantConfig {
		t.Fatalf("FormatModelConfig:\n%s\nwant:\n%s", got, wantConfig)
	}
	parsed, err := tfs.ParseModelConfig(got)
	if err != nil {
		t.Fatal(err)
	}
	want := []tfs.ModelConfig{{Name: "djia30", BasePath: "/models/djia30", Platform: "tensorflow", Versions: []int64{1, 2}, Labels: map[string]int64{"stable": 1, "canary": 2}}}
	if !reflect.DeepEqual(parsed, want) {
		t.Fatalf("ParseModelConfig = %+v", parsed)
	}
	// TF Serving's own docs use single quotes and "key: value" on one line.
	single := "model_config_list: { config: { name: 'a', base_path: '/m/a', model_platform: 'tensorflow' } } # comment"
	p2, err := tfs.ParseModelConfig(single)
	if err != nil || len(p2) != 1 || p2[0].Name != "a" || p2[0].BasePath != "/m/a" {
		t.Fatalf("single-quoted config = %+v, %v", p2, err)
	}
	for _, bad := range []string{"model_config_list {", "model_config_list { config { name: 'x }}", "}", "model_config_list { config { base_path: '/x' } }", "model_config_list { config { name: 'x' model_version_policy { specific { versions: abc } } } }"} {
		if _, err := tfs.ParseModelConfig(bad); err == nil {
			t.Errorf("ParseModelConfig(%q) gave no error", bad)
		}
	}
}

func FuzzParseModelConfig(f *testing.F) {
	f.Add(wantConfig)
	f.Add("model_config_list: { config: { name: 'a' } }")
	f.Fuzz(func(t *testing.T, in string) {
		cfgs, err := tfs.ParseModelConfig(in)
		if err != nil {
			return
		}
		// What parses re-formats and re-parses to the same names and versions.
		again, err := tfs.ParseModelConfig(tfs.FormatModelConfig(cfgs...))
		if err != nil || len(again) != len(cfgs) {
			t.Fatalf("round trip of %q: %v", in, err)
		}
		for i := range cfgs {
			if again[i].Name != cfgs[i].Name || len(again[i].Versions) != len(cfgs[i].Versions) {
				t.Fatalf("round trip changed %+v into %+v", cfgs[i], again[i])
			}
		}
	})
}
