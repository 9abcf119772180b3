package pipelinespec

import (
	"fmt"
	"strings"
)

// Placeholder kinds, after the KFP v2 IR placeholders a container's command
// and args may hold (kfp.dsl placeholders as the compiler writes them).
const (
	// KindExecutorInput is "{{$}}": the whole ExecutorInput as JSON.
	KindExecutorInput = "executor-input"
	// KindInputParameter is "{{$.inputs.parameters['x']}}".
	KindInputParameter = "input-parameter"
	// KindInputArtifact is "{{$.inputs.artifacts['x'].path}}" (or .uri,
	// .metadata), or "{{$.inputs.artifacts['x']}}" (Attr "") for an input
	// that is a list of artifacts.
	KindInputArtifact = "input-artifact"
	// KindOutputParameter is "{{$.outputs.parameters['x'].output_file}}".
	KindOutputParameter = "output-parameter"
	// KindOutputArtifact is "{{$.outputs.artifacts['x'].path}}" (or .uri, .metadata).
	KindOutputArtifact = "output-artifact"
)

// Placeholder is one "{{$...}}" reference inside a command or argument.
type Placeholder struct {
	// Raw is the placeholder as written, braces included.
	Raw string
	// Kind is one of the Kind* constants.
	Kind string
	// Name is the parameter or artifact name ("" for KindExecutorInput).
	Name string
	// Attr is "path", "uri", "metadata" or "output_file" ("" for input
	// parameters and for a list of input artifacts).
	Attr string
}

// PlaceholderError is a malformed placeholder in a string.
type PlaceholderError struct {
	// Text is the offending placeholder (or the rest of the string when unclosed).
	Text   string
	Reason string
}

func (e *PlaceholderError) Error() string {
	return fmt.Sprintf("malformed placeholder %q: %s", e.Text, e.Reason)
}

const placeholderForms = "use {{$.inputs.parameters['x']}}, {{$.inputs.artifacts['x'].path}}, {{$.outputs.artifacts['x'].path}} or {{$.outputs.parameters['x'].output_file}}"

// ParsePlaceholders returns every "{{$...}}" placeholder in s, in order.
// Text outside "{{$" ... "}}" is ignored. An unclosed placeholder, an
// unknown path, an empty or unquoted name, or an attribute that does not fit
// the kind is a *PlaceholderError.
func ParsePlaceholders(s string) ([]Placeholder, error) {
	var out []Placeholder
	for {
		i := strings.Index(s, "{{$")
		if i < 0 {
			return out, nil
		}
		s = s[i:]
		j := strings.Index(s, "}}")
		if j < 0 {
			return out, &PlaceholderError{Text: s, Reason: "no closing }}"}
		}
		raw := s[:j+2]
		p, err := parsePlaceholder(raw)
		if err != nil {
			return out, err
		}
		out = append(out, p)
		s = s[j+2:]
	}
}

func parsePlaceholder(raw string) (Placeholder, error) {
	body := raw[len("{{$") : len(raw)-2]
	p := Placeholder{Raw: raw}
	if body == "" {
		p.Kind = KindExecutorInput
		return p, nil
	}
	bad := func(reason string) (Placeholder, error) {
		return Placeholder{}, &PlaceholderError{Text: raw, Reason: reason}
	}
	var dir, what string
	switch {
	case strings.HasPrefix(body, ".inputs.parameters["):
		dir, what = "inputs", "parameters"
	case strings.HasPrefix(body, ".inputs.artifacts["):
		dir, what = "inputs", "artifacts"
	case strings.HasPrefix(body, ".outputs.parameters["):
		dir, what = "outputs", "parameters"
	case strings.HasPrefix(body, ".outputs.artifacts["):
		dir, what = "outputs", "artifacts"
	default:
		return bad("unknown reference; " + placeholderForms)
	}
	rest := body[len("."+dir+"."+what+"["):]
	if !strings.HasPrefix(rest, "'") {
		return bad("the name must be in single quotes, e.g. ['x']")
	}
	end := strings.Index(rest[1:], "']")
	if end < 0 {
		return bad("the name is not closed with ']")
	}
	p.Name = rest[1 : 1+end]
	if p.Name == "" {
		return bad("empty name")
	}
	if strings.ContainsAny(p.Name, "'[]{}$") {
		return bad("the name holds one of ' [ ] { } $")
	}
	attr := rest[1+end+2:]
	switch {
	case dir == "inputs" && what == "parameters":
		if attr != "" {
			return bad("an input parameter takes no attribute; use {{$.inputs.parameters['" + p.Name + "']}}")
		}
		p.Kind = KindInputParameter
	case dir == "outputs" && what == "parameters":
		if attr != ".output_file" {
			return bad("an output parameter needs .output_file; use {{$.outputs.parameters['" + p.Name + "'].output_file}}")
		}
		p.Kind, p.Attr = KindOutputParameter, "output_file"
	case dir == "inputs" && attr == "":
		// {{$.inputs.artifacts['x']}}: a list of artifacts (isArtifactList), as JSON.
		p.Kind = KindInputArtifact
		return p, nil
	default:
		switch attr {
		case ".path", ".uri", ".metadata":
		default:
			return bad("an artifact needs .path, .uri or .metadata")
		}
		p.Kind, p.Attr = KindInputArtifact, attr[1:]
		if dir == "outputs" {
			p.Kind = KindOutputArtifact
		}
	}
	return p, nil
}
