package runner

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// ParamError is a runtime parameter that is missing, unknown or of the
// wrong type.
type ParamError struct {
	Name    string
	Problem string
}

func (e *ParamError) Error() string { return fmt.Sprintf("parameter %q: %s", e.Name, e.Problem) }

// ResolveParams merges the root's defaults with runtime values and checks
// each against its declared KFP ParameterType (STRING: a string;
// NUMBER_INTEGER: a whole number; NUMBER_DOUBLE: a number; BOOLEAN: a bool;
// LIST: a JSON array; STRUCT: a JSON object). Numbers may come as any Go
// numeric type or json.Number. A runtime value the root does not declare,
// a required parameter with no value, or a wrong type is a *ParamError.
func (p *Plan) ResolveParams(runtime map[string]any) (map[string]any, error) {
	out := map[string]any{}
	names := make([]string, 0, len(runtime))
	for n := range runtime {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		def := p.Params[n]
		if def == nil {
			return nil, &ParamError{Name: n, Problem: fmt.Sprintf("the pipeline declares no such parameter (it has: %s)", strings.Join(p.paramNames(), ", "))}
		}
		v, err := coerce(def.Type, runtime[n])
		if err != nil {
			return nil, &ParamError{Name: n, Problem: err.Error()}
		}
		out[n] = v
	}
	for _, n := range p.paramNames() {
		if _, ok := out[n]; ok {
			continue
		}
		def := p.Params[n]
		if def.Default != nil {
			v, err := coerce(def.Type, def.Default)
			if err != nil {
				return nil, &ParamError{Name: n, Problem: "default value: " + err.Error()}
			}
			out[n] = v
			continue
		}
		if !def.Optional {
			return nil, &ParamError{Name: n, Problem: "is required and has no default; give it a value"}
		}
	}
	return out, nil
}

func (p *Plan) paramNames() []string {
	ns := make([]string, 0, len(p.Params))
	for n := range p.Params {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// coerce checks v against a KFP ParameterType name and normalizes numbers to
// float64 (JSON's number); an unspecified type accepts anything.
func coerce(typ string, v any) (any, error) {
	switch typ {
	case "STRING":
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("want a STRING, got %s (quote it)", describe(v))
	case "NUMBER_INTEGER":
		f, ok := toFloat(v)
		if !ok || f != math.Trunc(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("want a NUMBER_INTEGER, got %s", describe(v))
		}
		return f, nil
	case "NUMBER_DOUBLE":
		f, ok := toFloat(v)
		if !ok {
			return nil, fmt.Errorf("want a NUMBER_DOUBLE, got %s", describe(v))
		}
		return f, nil
	case "BOOLEAN":
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fmt.Errorf("want a BOOLEAN (true or false), got %s", describe(v))
	case "LIST":
		if l, ok := v.([]any); ok {
			return l, nil
		}
		return nil, fmt.Errorf("want a LIST, got %s", describe(v))
	case "STRUCT":
		if m, ok := v.(map[string]any); ok {
			return m, nil
		}
		return nil, fmt.Errorf("want a STRUCT, got %s", describe(v))
	}
	if f, ok := toFloat(v); ok {
		return f, nil
	}
	return v, nil
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	if f, ok := toFloat(v); ok {
		return "the number " + strconv.FormatFloat(f, 'g', -1, 64)
	}
	return fmt.Sprintf("%T", v)
}

// Format renders a parameter value as KFP's launcher substitutes it into a
// command line: strings as is, numbers in the shortest decimal form without
// an exponent (strconv 'f', -1: 3, 0.001, 0.0000001), booleans as
// true/false, lists and structs as compact JSON.
func Format(typ string, v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	if f, ok := toFloat(v); ok {
		if typ == "NUMBER_INTEGER" && f == math.Trunc(f) {
			return strconv.FormatInt(int64(f), 10)
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return jsonString(v)
}

// jsonString renders v as compact JSON without HTML escaping.
func jsonString(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// parseOutput reads an output parameter file's content by its declared type:
// STRING verbatim, the rest as JSON.
func parseOutput(typ string, raw []byte) (any, error) {
	switch typ {
	case "STRING":
		return string(raw), nil
	case "BOOLEAN": // true/True/false/False, as KFP's launcher reads them
		raw = []byte(strings.ToLower(strings.TrimSpace(string(raw))))
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("not %s JSON: %w", typ, err)
	}
	return coerce(typ, v)
}
