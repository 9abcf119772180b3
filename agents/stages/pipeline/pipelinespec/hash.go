package pipelinespec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Canonical returns v as canonical JSON: object keys sorted, no
// insignificant whitespace, no HTML escaping, numbers as written
// (json.Number).
func Canonical(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Hash returns the content hash of a document, "sha256:<hex>": the SHA-256
// of the canonical JSON of the PipelineSpec, followed, when there is a
// PlatformSpec, by a newline and its canonical JSON.
func (d *Document) Hash() (string, error) {
	h := sha256.New()
	js, err := Canonical(d.Spec)
	if err != nil {
		return "", err
	}
	h.Write(js)
	if d.Platform != nil {
		js, err := Canonical(d.Platform)
		if err != nil {
			return "", err
		}
		h.Write([]byte("\n"))
		h.Write(js)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// jsonNumber keeps composed numbers in the same type as loaded ones.
type jsonNumber = json.Number
