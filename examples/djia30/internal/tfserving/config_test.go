package tfserving

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseModelConfig(t *testing.T) {
	text := `# TF Serving model config
model_config_list {
  config {
    name: "djia30"
    base_path: "/models/djia30"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: 'canary' value: 2 }
  }
  config: {
    name: 'other', base_path: "/m/other";
    model_version_policy: { latest: { num_versions: 3 } }
  }
  config { name: "all" base_path: "/m/all" model_version_policy { all {} } }
}
`
	got, err := ParseModelConfig(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []ModelConfig{
		{Name: "djia30", BasePath: "/models/djia30", ModelPlatform: "tensorflow", Policy: PolicySpecific, NumVersions: 1,
			Versions: []int64{1, 2}, Labels: map[string]int64{"stable": 1, "canary": 2}},
		{Name: "other", BasePath: "/m/other", Policy: PolicyLatest, NumVersions: 3},
		{Name: "all", BasePath: "/m/all", Policy: PolicyAll, NumVersions: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestParseModelConfigErrors(t *testing.T) {
	for text, want := range map[string]string{
		``: "no model config entries",
		`model_config_list { config { name: "a" } }`:                                                       "line 1: config needs name and base_path",
		"model_config_list {\n config { name: \"a\" base_path: \"/b\" bogus: 1 } }":                        `line 2: unknown field "bogus" in config`,
		`model_config_list { config { name: "a" base_path: "/b" } config { name: "a" base_path: "/c" } }`:  `duplicate model name "a"`,
		`model_config_list { config { name: "a" base_path: "/b" model_version_policy { specific { } } } }`: "specific needs at least one versions entry",
		`model_config_list { config { name: "a" base_path: "/b" version_labels { key: "x" value: -1 } } }`: "want an integer >= 1",
		`model_config_list { config { name: "a" base_path: "/b" }`:                                         "missing }",
		`model_config_list { config { name: "a }`:                                                          "unterminated string",
		`model_config_list { config { name: 5 base_path: "/b" } }`:                                         "want a string",
		`model_config_list { config { name: "a" base_path: "/b" model_version_policy { newest {} } } }`:    `unknown version policy "newest"`,
		`}`: "unexpected }",
	} {
		_, err := ParseModelConfig(text)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
}

func FuzzParseModelConfig(f *testing.F) {
	f.Add(`model_config_list { config { name: "djia30" base_path: "/models/djia30" model_platform: "tensorflow" model_version_policy { specific { versions: 1 } } version_labels { key: "stable" value: 1 } } }`)
	f.Add(`model_config_list { config { name: 'a' base_path: '/b' model_version_policy { latest { num_versions: 2 } } } }`)
	f.Add(`model_config_list { config { name: "a" base_path: "/b" model_version_policy { all {} } } } # c`)
	f.Add("model_config_list {\n config: { name: \"a\\\"b\", base_path: \"/x\" };\n}")
	f.Fuzz(func(t *testing.T, text string) {
		cfgs, err := ParseModelConfig(text)
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, c := range cfgs {
			if c.Name == "" || c.BasePath == "" || names[c.Name] || c.NumVersions < 1 {
				t.Fatalf("invalid config accepted: %+v", c)
			}
			names[c.Name] = true
			if c.Policy == PolicySpecific && len(c.Versions) == 0 {
				t.Fatalf("specific without versions: %+v", c)
			}
			for _, v := range c.Labels {
				if v < 1 {
					t.Fatalf("label version %d", v)
				}
			}
		}
	})
}

func TestParseMonitoringConfig(t *testing.T) {
	c, err := ParseMonitoringConfig("prometheus_config {\n  enable: true\n  path: \"/metrics/x\"\n}\n")
	if err != nil || !c.PrometheusEnable || c.PrometheusPath != "/metrics/x" {
		t.Fatalf("= %+v, %v", c, err)
	}
	c, err = ParseMonitoringConfig("prometheus_config { enable: false }")
	if err != nil || c.PrometheusEnable || c.PrometheusPath != DefaultMetricsPath {
		t.Fatalf("disabled = %+v, %v", c, err)
	}
	for in, want := range map[string]string{
		"prometheus_config { enable: maybe }": `monitoring config: line 1: enable: want true or false, got "maybe"`,
		"prometheus { enable: true }":         `monitoring config: line 1: unknown field "prometheus" (want prometheus_config)`,
		"prometheus_config {\n port: 1 }":     `monitoring config: line 2: unknown field "port" in prometheus_config (want enable or path)`,
	} {
		if _, err := ParseMonitoringConfig(in); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", in, err, want)
		}
	}
}

func FuzzParseMonitoringConfig(f *testing.F) {
	f.Add("prometheus_config { enable: true path: \"/m\" }")
	f.Add("prometheus_config { enable: 1 }")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseMonitoringConfig(s)
		if err == nil && c.PrometheusPath == "" {
			t.Fatalf("%q: no path and no error", s)
		}
	})
}
