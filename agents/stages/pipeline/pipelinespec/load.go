package pipelinespec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
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

// Load parses a KFP v2 IR YAML (or JSON) file of one or two documents.
// Numbers keep their written form (json.Number). Errors name the document
// and what is wrong with it.
func Load(data []byte) (*Document, error) {
	var docs []map[string]any
	for i, part := range splitDocuments(data) {
		js, err := yaml.YAMLToJSON(part)
		if err != nil {
			return nil, fmt.Errorf("document %d: not valid YAML: %w", i+1, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue // only comments
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("document %d: not a mapping of fields: %w", i+1, err)
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

// splitDocuments splits a YAML stream at "---" separator lines.
func splitDocuments(data []byte) [][]byte {
	var out [][]byte
	var cur []byte
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		t := strings.TrimRight(string(line), " \t\r\n")
		if t == "---" || strings.HasPrefix(t, "--- ") {
			out = append(out, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(out, cur)
}
