package pipelinespec

import (
	"bytes"
	"testing"
)

// Whatever Load reads, MarshalYAML writes so that Load reads it back the
// same (the composed spec means what the input meant).
func FuzzYAMLRoundTrip(f *testing.F) {
	for _, n := range []string{"constructs/yaml11_strings.yaml", "constructs/platform_pvc.yaml", "small.yaml"} {
		f.Add(readTestdata(f, n))
	}
	f.Add([]byte("root: {a: y, b: 'n', c: 0x1F, d: 1_000, e: .5, f: 1e3, g: ~, h: [on, off], i: 2015-12-31, j: \"\\t\\u2028x\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Load(data)
		if err != nil {
			return
		}
		want, err := Canonical(d.Spec)
		if err != nil {
			return
		}
		out, err := MarshalYAML(d.Spec)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := Load(out)
		if err != nil {
			t.Fatalf("reload %q: %v", out, err)
		}
		got, _ := Canonical(again.Spec)
		if !bytes.Equal(got, want) {
			t.Fatalf("round trip changed the spec:\n%s\nwant\n%s\nYAML:\n%s", got, want, out)
		}
	})
}
