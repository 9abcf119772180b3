// Package tfserving is a TensorFlow Serving-compatible REST model server for
// the example's model format (package model): model status, metadata and
// predict endpoints with TF Serving's URLs and JSON bodies, Prometheus metrics
// with TF Serving's metric names, TF Serving's model config file (text
// protobuf) and polling of the model base paths for new versions.
//
// REST API reference: https://www.tensorflow.org/tfx/serving/api_rest
// Model config reference: https://www.tensorflow.org/tfx/serving/serving_config
package tfserving

import (
	"fmt"
	"strconv"
	"strings"
)

// PolicyKind is the kind of a model_version_policy.
type PolicyKind int

// Version policies of TF Serving's ServableVersionPolicy.
const (
	PolicyLatest   PolicyKind = iota // serve the N highest versions (default N = 1)
	PolicyAll                        // serve every version found
	PolicySpecific                   // serve the listed versions
)

// ModelConfig is one model_config_list.config entry: the subset of TF
// Serving's ModelConfig proto this server understands.
type ModelConfig struct {
	Name          string
	BasePath      string
	ModelPlatform string // accepted and ignored (e.g. "tensorflow")
	Policy        PolicyKind
	NumVersions   int     // for PolicyLatest; 1 when unset
	Versions      []int64 // for PolicySpecific
	Labels        map[string]int64
}

// ParseModelConfig parses TF Serving's model config file (protobuf text format,
// message ModelServerConfig) for the subset:
//
//	model_config_list {
//	  config {
//	    name: "djia30"
//	    base_path: "/models/djia30"
//	    model_platform: "tensorflow"
//	    model_version_policy { specific { versions: 1 versions: 2 } }   # or
//	    model_version_policy { latest { num_versions: 2 } }              # or
//	    model_version_policy { all {} }
//	    version_labels { key: "stable" value: 1 }
//	  }
//	}
//
// Fields may be written "field: value", "field { ... }" or "field: { ... }";
// strings use double or single quotes; "#" starts a comment; "," and ";" may
// separate fields. Unknown fields, duplicate names and bad values are errors
// carrying the line number.
func ParseModelConfig(text string) ([]ModelConfig, error) {
	p := &parser{toks: nil}
	if err := p.lex(text); err != nil {
		return nil, err
	}
	var out []ModelConfig
	names := map[string]bool{}
	err := p.message(func(field string, line int) error {
		if field != "model_config_list" {
			return fmt.Errorf("line %d: unknown field %q (want model_config_list)", line, field)
		}
		return p.sub(func(field string, line int) error {
			if field != "config" {
				return fmt.Errorf("line %d: unknown field %q in model_config_list (want config)", line, field)
			}
			c := ModelConfig{NumVersions: 1}
			if err := p.sub(func(field string, line int) error { return p.configField(&c, field, line) }); err != nil {
				return err
			}
			if c.Name == "" || c.BasePath == "" {
				return fmt.Errorf("line %d: config needs name and base_path", line)
			}
			if names[c.Name] {
				return fmt.Errorf("line %d: duplicate model name %q", line, c.Name)
			}
			names[c.Name] = true
			out = append(out, c)
			return nil
		})
	}, true)
	if err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("model config: no model config entries")
	}
	return out, nil
}

type token struct {
	kind byte // 'i' ident, 's' string, 'n' number, or the punctuation char
	text string
	line int
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) lex(s string) error {
	line := 1
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == ',' || c == ';':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{' || c == '}' || c == ':':
			p.toks = append(p.toks, token{c, string(c), line})
			i++
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				if j < len(s) && s[j] == '\n' {
					return fmt.Errorf("model config: line %d: newline in string", line)
				}
				j++
			}
			if j >= len(s) {
				return fmt.Errorf("model config: line %d: unterminated string", line)
			}
			v, err := strconv.Unquote(`"` + strings.ReplaceAll(s[i+1:j], `"`, `\"`) + `"`)
			if err != nil {
				v = s[i+1 : j]
			}
			p.toks = append(p.toks, token{'s', v, line})
			i = j + 1
		case c == '-' || c == '+' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(s) && (isIdent(s[j]) || s[j] == '.') {
				j++
			}
			p.toks = append(p.toks, token{'n', s[i:j], line})
			i = j
		case isIdent(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			p.toks = append(p.toks, token{'i', s[i:j], line})
			i = j
		default:
			return fmt.Errorf("model config: line %d: unexpected character %q", line, c)
		}
	}
	return nil
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (p *parser) peek() *token {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

func (p *parser) lastLine() int {
	if len(p.toks) == 0 {
		return 1
	}
	return p.toks[len(p.toks)-1].line
}

// message reads fields until "}" (or end of input when top is true), calling
// f with each field name; f consumes the field's value.
func (p *parser) message(f func(field string, line int) error, top bool) error {
	for {
		t := p.peek()
		if t == nil {
			if top {
				return nil
			}
			return fmt.Errorf("line %d: missing }", p.lastLine())
		}
		if t.kind == '}' {
			if top {
				return fmt.Errorf("line %d: unexpected }", t.line)
			}
			p.pos++
			return nil
		}
		if t.kind != 'i' {
			return fmt.Errorf("line %d: want a field name, got %q", t.line, t.text)
		}
		p.pos++
		if err := f(t.text, t.line); err != nil {
			return err
		}
	}
}

// sub consumes an optional ":" and "{", then a message body.
func (p *parser) sub(f func(field string, line int) error) error {
	if t := p.peek(); t != nil && t.kind == ':' {
		p.pos++
	}
	t := p.peek()
	if t == nil || t.kind != '{' {
		line := p.lastLine()
		if t != nil {
			line = t.line
		}
		return fmt.Errorf("line %d: want {", line)
	}
	p.pos++
	return p.message(f, false)
}

// scalar consumes ":" and a value token of the given kind.
func (p *parser) scalar(kind byte) (token, error) {
	t := p.peek()
	if t == nil || t.kind != ':' {
		return token{}, fmt.Errorf("line %d: want :", p.lastLine())
	}
	p.pos++
	t = p.peek()
	if t == nil {
		return token{}, fmt.Errorf("line %d: missing value", p.lastLine())
	}
	p.pos++
	if t.kind != kind && !(kind == 's' && t.kind == 'i') {
		want := map[byte]string{'s': "a string", 'n': "a number"}[kind]
		return token{}, fmt.Errorf("line %d: want %s, got %q", t.line, want, t.text)
	}
	return *t, nil
}

func (p *parser) int64Value(min int64) (int64, error) {
	t, err := p.scalar('n')
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(t.text, 10, 64)
	if err != nil || v < min {
		return 0, fmt.Errorf("line %d: want an integer >= %d, got %q", t.line, min, t.text)
	}
	return v, nil
}

func (p *parser) configField(c *ModelConfig, field string, line int) error {
	switch field {
	case "name", "base_path", "model_platform", "model_type":
		t, err := p.scalar('s')
		if err != nil {
			return err
		}
		switch field {
		case "name":
			c.Name = t.text
		case "base_path":
			c.BasePath = t.text
		case "model_platform":
			c.ModelPlatform = t.text
		}
		return nil
	case "model_version_policy":
		return p.sub(func(kind string, line int) error {
			switch kind {
			case "latest":
				c.Policy = PolicyLatest
				return p.sub(func(f string, line int) error {
					if f != "num_versions" {
						return fmt.Errorf("line %d: unknown field %q in latest", line, f)
					}
					v, err := p.int64Value(1)
					if err != nil {
						return err
					}
					if v > 1<<20 {
						return fmt.Errorf("line %d: num_versions too large", line)
					}
					c.NumVersions = int(v)
					return nil
				})
			case "all":
				c.Policy = PolicyAll
				return p.sub(func(f string, line int) error {
					return fmt.Errorf("line %d: unknown field %q in all", line, f)
				})
			case "specific":
				c.Policy = PolicySpecific
				err := p.sub(func(f string, line int) error {
					if f != "versions" {
						return fmt.Errorf("line %d: unknown field %q in specific", line, f)
					}
					v, err := p.int64Value(1)
					if err != nil {
						return err
					}
					c.Versions = append(c.Versions, v)
					return nil
				})
				if err == nil && len(c.Versions) == 0 {
					err = fmt.Errorf("line %d: specific needs at least one versions entry", line)
				}
				return err
			}
			return fmt.Errorf("line %d: unknown version policy %q (want latest, all or specific)", line, kind)
		})
	case "version_labels":
		var key string
		var val int64
		var haveKey, haveVal bool
		err := p.sub(func(f string, line int) error {
			switch f {
			case "key":
				t, err := p.scalar('s')
				if err != nil {
					return err
				}
				key, haveKey = t.text, true
			case "value":
				v, err := p.int64Value(1)
				if err != nil {
					return err
				}
				val, haveVal = v, true
			default:
				return fmt.Errorf("line %d: unknown field %q in version_labels", line, f)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !haveKey || !haveVal || key == "" {
			return fmt.Errorf("line %d: version_labels needs key and value", line)
		}
		if c.Labels == nil {
			c.Labels = map[string]int64{}
		}
		c.Labels[key] = val
		return nil
	}
	return fmt.Errorf("line %d: unknown field %q in config", line, field)
}
