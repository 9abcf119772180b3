package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// Bounds on what a spec may ask of the runner, so that a hostile or broken
// spec gets a clear error instead of unbounded memory or processes.
const (
	// MaxSpecBytes is the largest composed IR the runner reads (16 MiB).
	MaxSpecBytes = 16 << 20
	// MaxYAMLDepth bounds the nesting of the YAML documents.
	MaxYAMLDepth = 128
	// MaxDAGDepth bounds how deep DAG components nest (pipeline in pipeline).
	MaxDAGDepth = 64
	// MaxIterations bounds the items of one ParallelFor.
	MaxIterations = 10000
	// MaxTasks bounds the task executions of one run (iterations included).
	MaxTasks = 100000
	// MaxExpressionLength bounds a condition or selector expression.
	MaxExpressionLength = 8 << 10
)

// IR is a loaded composed KFP v2 IR: the pipeline spec (protojson into the
// pinned IR protos, unknown fields discarded), its deployment config, the
// same document as plain JSON values (for fields newer than the pinned
// protos, e.g. resourceCpuLimit, cacheKey, downloadToWorkspace) and the
// kubernetes platform spec.
type IR struct {
	Spec   *pipelinespec.PipelineSpec
	Deploy *pipelinespec.PipelineDeploymentConfig
	// Raw is the pipeline spec document as decoded JSON values.
	Raw map[string]any
	// Kubernetes is platforms.kubernetes.deploymentSpec.executors: executor
	// label → its kfp-kubernetes KubernetesExecutorConfig as JSON values.
	Kubernetes map[string]map[string]any
	// PipelineConfig is platforms.kubernetes.pipelineConfig (KFP 2.14+), nil when absent.
	PipelineConfig map[string]any
}

// LoadIR reads a composed IR: one or two YAML 1.2 documents (the pipeline
// spec, then optionally the platform spec), or the same as one JSON object
// (which is YAML). Strings like y, n, yes, no stay strings (YAML 1.2 core
// schema); dates stay strings. Errors name what is wrong.
func LoadIR(data []byte) (*IR, error) {
	if len(data) > MaxSpecBytes {
		return nil, fmt.Errorf("pipeline spec is %d bytes, more than the local runner reads (%d)", len(data), MaxSpecBytes)
	}
	docs, err := decodeYAML(data)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, errors.New("pipeline spec is empty")
	}
	ir := &IR{Kubernetes: map[string]map[string]any{}}
	specDoc, ok := docs[0].(map[string]any)
	if !ok {
		return nil, errors.New("pipeline spec is not a KFP v2 PipelineSpec: the first document is not a mapping")
	}
	var platform map[string]any
	if p, ok := specDoc["platforms"].(map[string]any); ok && specDoc["root"] == nil {
		platform, specDoc = p, nil
	}
	for i, d := range docs[1:] {
		m, ok := d.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("pipeline spec document %d is not a mapping", i+2)
		}
		if p, ok := m["platforms"].(map[string]any); ok {
			platform = p
		} else if specDoc == nil {
			specDoc = m
		}
	}
	if specDoc == nil {
		return nil, errors.New("pipeline spec has no pipeline document, only a platform spec")
	}
	ir.Raw = specDoc
	js, err := json.Marshal(specDoc)
	if err != nil {
		return nil, fmt.Errorf("pipeline spec: %w", err)
	}
	var spec pipelinespec.PipelineSpec
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(js, &spec); err != nil {
		return nil, fmt.Errorf("pipeline spec is not a KFP v2 PipelineSpec: %w", err)
	}
	ir.Spec = &spec
	ir.Deploy = &pipelinespec.PipelineDeploymentConfig{}
	if ds, ok := specDoc["deploymentSpec"]; ok {
		djs, _ := json.Marshal(ds)
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(djs, ir.Deploy); err != nil {
			return nil, fmt.Errorf("deploymentSpec: %w", err)
		}
	}
	if k8s, ok := platform["kubernetes"].(map[string]any); ok {
		if ds, ok := k8s["deploymentSpec"].(map[string]any); ok {
			if ex, ok := ds["executors"].(map[string]any); ok {
				for label, v := range ex {
					m, ok := v.(map[string]any)
					if !ok {
						return nil, fmt.Errorf("platform spec: executor %q is not a mapping", label)
					}
					ir.Kubernetes[label] = m
				}
			}
		}
		if pc, ok := k8s["pipelineConfig"].(map[string]any); ok {
			ir.PipelineConfig = pc
		}
	}
	return ir, nil
}

// decodeYAML decodes every document of data with YAML 1.2 scalar rules
// into JSON-shaped values (map[string]any, []any, string, float64, bool, nil).
func decodeYAML(data []byte) ([]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []any
	for i := 1; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("pipeline spec is not valid YAML: %w", err)
		}
		v, err := nodeValue(&n, 0)
		if err != nil {
			return nil, fmt.Errorf("pipeline spec document %d: %w", i, err)
		}
		if v != nil {
			out = append(out, v)
		}
	}
}

func nodeValue(n *yaml.Node, depth int) (any, error) {
	if depth > MaxYAMLDepth {
		return nil, fmt.Errorf("nested more than %d levels deep (line %d)", MaxYAMLDepth, n.Line)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return nodeValue(n.Content[0], depth)
	case yaml.AliasNode:
		return nodeValue(n.Alias, depth+1)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				merged, err := nodeValue(v, depth+1)
				if err != nil {
					return nil, err
				}
				mm, ok := merged.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("line %d: merge key of a non-mapping", k.Line)
				}
				for mk, mv := range mm {
					if _, set := m[mk]; !set {
						m[mk] = mv
					}
				}
				continue
			}
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a mapping key must be a scalar", k.Line)
			}
			val, err := nodeValue(v, depth+1)
			if err != nil {
				return nil, err
			}
			m[k.Value] = val
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := nodeValue(c, depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, nil
		case "!!bool":
			return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", nil
		case "!!int":
			if i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err == nil {
				return float64(i), nil
			}
			return n.Value, nil
		case "!!float":
			s := strings.ToLower(n.Value)
			switch s {
			case ".inf", "+.inf", ".nan", "-.inf":
				return nil, fmt.Errorf("line %d: %s is not a JSON number", n.Line, n.Value)
			}
			f, err := strconv.ParseFloat(n.Value, 64)
			if err != nil || math.IsInf(f, 0) {
				return n.Value, nil
			}
			return f, nil
		default: // !!str, !!timestamp, !!binary and custom tags keep their text
			return n.Value, nil
		}
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

// SplitDocuments returns the YAML documents of a multi-document stream
// (separated by lines that are exactly "---"), empty ones dropped.
func SplitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(cur.Bytes())) > 0 {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

// jpath walks JSON values by keys; nil when a key is missing.
func jpath(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func pathString(v any, keys ...string) string {
	s, _ := jpath(v, keys...).(string)
	return s
}
