package pipelinespec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// MaxSpecBytes is the largest pipeline file the KFP API server accepts:
// 32 MiB, as the v2beta1 upload API documents for its uploadfile form field
// ("The pipeline to upload. Maximum size of 32MB is supported.", see
// backend/api/v2beta1/swagger/pipeline.upload.swagger.json in
// kubeflow/pipelines). Compose rejects larger specs before any call.
const MaxSpecBytes = 32 << 20

// Document is a KFP v2 IR file as generic JSON trees: the PipelineSpec
// document and, when the file has a second YAML document, the PlatformSpec
// (its "platforms" key, as the KFP compiler writes it for kfp-kubernetes).
type Document struct {
	Spec     map[string]any
	Platform map[string]any
}

// Load parses a KFP v2 IR YAML (or JSON) file of one or two documents as
// YAML 1.2, the way the KFP API server reads it (gopkg.in/yaml.v3, here
// go.yaml.in/yaml/v3): y, n, yes, no, on, off stay strings. Numbers keep
// their written form (json.Number) when it is a JSON number, else the
// shortest JSON form of their value; dates stay strings. Anchors and
// aliases are expanded (within MaxNodes); merge keys,
// duplicate keys and non-string keys are errors. Errors name the document
// and what is wrong with it.
func Load(data []byte) (*Document, error) {
	var docs []map[string]any
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	budget := min(MaxNodes, 16*len(data)+1024) // without aliases a node takes 2 bytes at least
	for i := 1; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: not valid YAML: %w", i, err)
		}
		if len(n.Content) == 0 {
			continue // only comments
		}
		v, err := toJSON(n.Content[0], &budget)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if v == nil {
			continue // an empty document
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("document %d: not a mapping of fields", i)
		}
		docs = append(docs, m)
	}
	d := &Document{}
	switch len(docs) {
	case 0:
		return nil, errors.New("empty spec: expected a KFP v2 IR PipelineSpec (compile the pipeline with the KFP compiler)")
	case 1:
		d.Spec = docs[0]
	case 2:
		d.Spec, d.Platform = docs[0], docs[1]
		if _, ok := d.Platform["platforms"]; !ok {
			return nil, errors.New("document 2: not a PlatformSpec: it has no \"platforms\" key")
		}
	default:
		return nil, fmt.Errorf("%d YAML documents: expected the PipelineSpec and at most one PlatformSpec", len(docs))
	}
	if _, ok := d.Spec["platforms"]; ok {
		return nil, errors.New("document 1: a PlatformSpec; the PipelineSpec must come first")
	}
	if _, ok := d.Spec["root"]; !ok {
		return nil, errors.New("document 1: not a PipelineSpec: it has no \"root\" (compile the pipeline with the KFP v2 compiler)")
	}
	return d, nil
}

// MaxNodes bounds the YAML nodes one spec may expand to (aliases count
// each time they are used), against alias bombs; a spec of n bytes may
// expand to at most 16n+1024 of them.
const MaxNodes = 4 << 20

var jsonNumberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// toJSON converts a YAML node into the JSON tree (map[string]any, []any,
// string, bool, json.Number, nil).
func toJSON(n *yaml.Node, budget *int) (any, error) {
	if *budget--; *budget < 0 {
		return nil, fmt.Errorf("more than %d YAML nodes (aliases expanded)", MaxNodes)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return toJSON(n.Alias, budget)
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return toJSON(n.Content[0], budget)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := toJSON(c, budget)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			for k.Kind == yaml.AliasNode {
				k = k.Alias
			}
			if k.Tag == "!!merge" {
				return nil, fmt.Errorf("line %d: merge keys (<<) are not part of a KFP pipeline spec", k.Line)
			}
			if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "!!int" && k.Tag != "!!bool" && k.Tag != "!!float" && k.Tag != "!!null") {
				return nil, fmt.Errorf("line %d: a mapping key must be a string", k.Line)
			}
			if _, dup := out[k.Value]; dup {
				return nil, fmt.Errorf("line %d: key %q appears twice", k.Line, k.Value)
			}
			v, err := toJSON(n.Content[i+1], budget)
			if err != nil {
				return nil, err
			}
			out[k.Value] = v
		}
		return out, nil
	}
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return b, nil
	case "!!int":
		if jsonNumberRE.MatchString(n.Value) {
			return json.Number(n.Value), nil
		}
		var i int64
		if err := n.Decode(&i); err != nil {
			var f float64
			if ferr := n.Decode(&f); ferr != nil {
				return nil, fmt.Errorf("line %d: %w", n.Line, err)
			}
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
		}
		return json.Number(strconv.FormatInt(i, 10)), nil
	case "!!float":
		if jsonNumberRE.MatchString(n.Value) {
			return json.Number(n.Value), nil
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("line %d: %s is not a JSON number", n.Line, n.Value)
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	}
	// !!str, !!timestamp, !!binary and unknown tags: the text as written.
	return n.Value, nil
}
