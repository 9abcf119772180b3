package tfserving

import (
	"fmt"
	"sort"
	"strings"
)

// ModelConfig is one `config { … }` entry of TF Serving's model config file
// (tensorflow.serving.ModelServerConfig in protobuf text format): a model
// name, its base path, the specific versions to serve and version labels.
type ModelConfig struct {
	Name     string
	BasePath string
	// Platform is model_platform; "" means "tensorflow".
	Platform string
	// Versions are served with model_version_policy { specific { … } };
	// empty means TF Serving's default (latest).
	Versions []int64
	// Labels maps a version label to a version; TF Serving refuses a label on
	// a version that is not loaded, so add it only once the version is AVAILABLE.
	Labels map[string]int64
}

// FormatModelConfig renders configs as a model_config_list in text format,
// deterministically (versions ascending, labels by key).
func FormatModelConfig(configs ...ModelConfig) string {
	var b strings.Builder
	b.WriteString("model_config_list {\n")
	for _, c := range configs {
		platform := c.Platform
		if platform == "" {
			platform = "tensorflow"
		}
		b.WriteString("  config {\n")
		fmt.Fprintf(&b, "    name: %s\n", quote(c.Name))
		fmt.Fprintf(&b, "    base_path: %s\n", quote(c.BasePath))
		fmt.Fprintf(&b, "    model_platform: %s\n", quote(platform))
		if len(c.Versions) > 0 {
			vs := append([]int64(nil), c.Versions...)
			sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
			b.WriteString("    model_version_policy {\n      specific {\n")
			for _, v := range vs {
				fmt.Fprintf(&b, "        versions: %d\n", v)
			}
			b.WriteString("      }\n    }\n")
		}
		keys := make([]string, 0, len(c.Labels))
		for k := range c.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "    version_labels {\n      key: %s\n      value: %d\n    }\n", quote(k), c.Labels[k])
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
