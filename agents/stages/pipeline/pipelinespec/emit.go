package pipelinespec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	yaml2 "go.yaml.in/yaml/v2"
	yaml "go.yaml.in/yaml/v3"
)

// MarshalYAML writes a JSON tree (as Load returns it) as block YAML: keys
// sorted, two-space indent, numbers as written. A string that a YAML 1.1
// or 1.2 reader would take for anything but that string (y, n, on, off,
// yes, no, true, null, 0777, 1:20, 2015-12-31 …) is double-quoted, so the
// KFP API server (YAML 1.2) and older YAML 1.1 tools read the same values.
func MarshalYAML(v any) ([]byte, error) {
	n, err := toNode(v)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	enc.CompactSeqIndent() // "- item" under its key, as the KFP compiler writes
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func toNode(v any) (*yaml.Node, error) {
	switch x := v.(type) {
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	case bool:
		s := "false"
		if x {
			s = "true"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: s}, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(x), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(x)}, nil
	case float64:
		return toNode(json.Number(fmt.Sprint(x)))
	case int:
		return toNode(json.Number(fmt.Sprint(x)))
	case int64:
		return toNode(json.Number(fmt.Sprint(x)))
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x, Style: quoting(x)}, nil
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range x {
			c, err := toNode(e)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		return n, nil
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			kn, _ := toNode(k)
			vn, err := toNode(x[k])
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, kn, vn)
		}
		return n, nil
	}
	return nil, fmt.Errorf("cannot write %T as YAML", v)
}

// quoting is the style of string s: plain when that reads back as s in
// both YAML versions; else single-quoted, as the KFP compiler (PyYAML)
// writes, unless s holds characters only double quotes can escape.
func quoting(s string) yaml.Style {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\ufeff' {
			return yaml.DoubleQuotedStyle // tabs, newlines: escaped, as the KFP compiler writes them
		}
	}
	plain, err := yaml.Marshal(s)
	if !ambiguous(s) && err == nil && !bytes.HasPrefix(plain, []byte(`"`)) && !bytes.HasPrefix(plain, []byte(`'`)) {
		return 0
	}
	return yaml.SingleQuotedStyle
}

// ambiguous reports whether plain s would not read back as the string s
// under YAML 1.1 (go.yaml.in/yaml/v2) or YAML 1.2 (v3).
func ambiguous(s string) bool {
	if s == "" {
		return false // the encoder quotes it itself
	}
	var a any
	if err := yaml2.Unmarshal([]byte(s), &a); err != nil {
		return true
	}
	if str, ok := a.(string); !ok || str != s {
		return true
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil || len(n.Content) != 1 {
		return true
	}
	c := n.Content[0]
	return c.Kind != yaml.ScalarNode || c.ShortTag() != "!!str" || c.Value != s
}

// DiffText is d as YAML (the PipelineSpec, then "---" and the
// PlatformSpec) with every number in its shortest form: the text dry runs
// diff, so that 42.0 in a file and 42 in the API server's JSON compare equal.
func (d *Document) DiffText() ([]byte, error) {
	out, err := MarshalYAML(shortNumbers(d.Spec))
	if err != nil || d.Platform == nil {
		return out, err
	}
	pl, err := MarshalYAML(shortNumbers(d.Platform))
	if err != nil {
		return nil, err
	}
	return append(append(out, "---\n"...), pl...), nil
}

func shortNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
		}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = shortNumbers(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = shortNumbers(e)
		}
		return out
	}
	return v
}

// FromJSON is the Document of a pipeline_spec as the KFP API server
// returns it: the PipelineSpec object, or {"pipeline_spec": …,
// "platform_spec": …}.
func FromJSON(js []byte) (*Document, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if ps, ok := m["pipeline_spec"].(map[string]any); ok {
		d := &Document{Spec: ps}
		if pl, ok := m["platform_spec"].(map[string]any); ok {
			d.Platform = pl
		}
		return d, nil
	}
	return &Document{Spec: m}, nil
}
