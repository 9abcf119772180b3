package pipelinespec

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePlaceholders(t *testing.T) {
	got, err := ParsePlaceholders("--in={{$.inputs.artifacts['data'].path}} {{$.inputs.parameters['lr']}}{{$}} {{$.outputs.parameters['auc'].output_file}} {{$.outputs.artifacts['model'].uri}} {{ not ours }}")
	if err != nil {
		t.Fatal(err)
	}
	want := []Placeholder{
		{Raw: "{{$.inputs.artifacts['data'].path}}", Kind: KindInputArtifact, Name: "data", Attr: "path"},
		{Raw: "{{$.inputs.parameters['lr']}}", Kind: KindInputParameter, Name: "lr"},
		{Raw: "{{$}}", Kind: KindExecutorInput},
		{Raw: "{{$.outputs.parameters['auc'].output_file}}", Kind: KindOutputParameter, Name: "auc", Attr: "output_file"},
		{Raw: "{{$.outputs.artifacts['model'].uri}}", Kind: KindOutputArtifact, Name: "model", Attr: "uri"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestParsePlaceholdersMalformed(t *testing.T) {
	for in, want := range map[string]string{
		"{{$.inputs.parameters['x']":                "no closing }}",
		"{{$.inputs.parameter['x']}}":               "unknown reference",
		"{{$.inputs.parameters[x]}}":                "single quotes",
		"{{$.inputs.parameters['x}}":                "not closed with ']",
		"{{$.inputs.parameters['']}}":               "empty name",
		"{{$.inputs.parameters['x'].path}}":         "takes no attribute",
		"{{$.outputs.parameters['x']}}":             "needs .output_file",
		"{{$.outputs.artifacts['x']}}":              "needs .path, .uri or .metadata",
		"{{$.inputs.artifacts['x'].size}}":          "needs .path, .uri or .metadata",
		"{{$.inputs.parameters['a$b']}}":            "holds one of",
		"ok {{$.inputs.parameters['x']}} {{$.foo}}": "unknown reference",
	} {
		_, err := ParsePlaceholders(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePlaceholders(%q) = %v, want %q", in, err, want)
		}
	}
}

func FuzzParsePlaceholders(f *testing.F) {
	for _, s := range []string{"{{$}}", "{{$.inputs.parameters['x']}}", "{{$.outputs.artifacts['m'].path}}", "{{$.inputs.parameters[", "a{{$}}b{{$.x}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		phs, err := ParsePlaceholders(s)
		for _, p := range phs {
			if !strings.Contains(s, p.Raw) {
				t.Fatalf("placeholder %q not in input", p.Raw)
			}
			if p.Kind != KindExecutorInput && p.Name == "" {
				t.Fatalf("placeholder %q without name", p.Raw)
			}
			// A parsed placeholder parses again to itself.
			again, err := ParsePlaceholders(p.Raw)
			if err != nil || len(again) != 1 || again[0] != p {
				t.Fatalf("reparse of %q = %v, %v", p.Raw, again, err)
			}
		}
		_ = err
	})
}

func FuzzCompose(f *testing.F) {
	f.Add(readTestdata(f, "small.yaml"))
	f.Add(readTestdata(f, "platform.yaml"))
	f.Add([]byte("root: {dag: {tasks: {a: {componentRef: {name: c}}}}}\n"))
	lock := testLock()
	f.Fuzz(func(t *testing.T, spec []byte) {
		c, err := Compose(spec, lock, nil)
		if err != nil {
			return
		}
		// A composed spec composes to itself.
		again, err := Compose(c.YAML, lock, nil)
		if err != nil {
			t.Fatalf("recompose: %v\n%s", err, c.YAML)
		}
		if again.Hash != c.Hash {
			t.Fatalf("recompose hash %s != %s", again.Hash, c.Hash)
		}
	})
}
