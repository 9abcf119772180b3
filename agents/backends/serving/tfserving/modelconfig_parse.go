package tfserving

import (
	"fmt"
	"strconv"
	"strings"
)

// textField is one field of a protobuf text-format message: a scalar or a
// nested message.
type textField struct {
	name   string
	scalar string
	msg    []textField
	isMsg  bool
}

// ParseModelConfig reads a TF Serving model config file (ModelServerConfig in
// protobuf text format, as FormatModelConfig writes it and as
// --model_config_file accepts): model_config_list { config { name, base_path,
// model_platform, model_version_policy { specific { versions } | latest |
// all }, version_labels { key value } } }. Unknown fields are skipped.
func ParseModelConfig(text string) ([]ModelConfig, error) {
	p := &textParser{s: text}
	fields, err := p.message(false)
	if err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	var out []ModelConfig
	for _, f := range fields {
		if f.name != "model_config_list" {
			continue
		}
		if !f.isMsg {
			return nil, fmt.Errorf("model config: model_config_list must be a message")
		}
		for _, cf := range f.msg {
			if cf.name != "config" || !cf.isMsg {
				continue
			}
			mc, err := configOf(cf.msg)
			if err != nil {
				return nil, fmt.Errorf("model config: %w", err)
			}
			out = append(out, mc)
		}
	}
	return out, nil
}

func configOf(fields []textField) (ModelConfig, error) {
	var mc ModelConfig
	for _, f := range fields {
		switch f.name {
		case "name":
			mc.Name = f.scalar
		case "base_path":
			mc.BasePath = f.scalar
		case "model_platform":
			mc.Platform = f.scalar
		case "model_version_policy":
			for _, pf := range f.msg {
				if pf.name != "specific" {
					continue
				}
				for _, vf := range pf.msg {
					if vf.name != "versions" {
						continue
					}
					v, err := strconv.ParseInt(vf.scalar, 10, 64)
					if err != nil {
						return mc, fmt.Errorf("config %q: versions %q is not an integer", mc.Name, vf.scalar)
					}
					mc.Versions = append(mc.Versions, v)
				}
			}
		case "version_labels":
			var key string
			var val int64
			for _, lf := range f.msg {
				switch lf.name {
				case "key":
					key = lf.scalar
				case "value":
					v, err := strconv.ParseInt(lf.scalar, 10, 64)
					if err != nil {
						return mc, fmt.Errorf("config %q: version label value %q is not an integer", mc.Name, lf.scalar)
					}
					val = v
				}
			}
			if mc.Labels == nil {
				mc.Labels = map[string]int64{}
			}
			mc.Labels[key] = val
		}
	}
	if mc.Name == "" {
		return mc, fmt.Errorf("a config has no name")
	}
	return mc, nil
}

type textParser struct {
	s     string
	i     int
	depth int
}

func (p *textParser) skip() {
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '#':
			for p.i < len(p.s) && p.s[p.i] != '\n' {
				p.i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ';':
			p.i++
		default:
			return
		}
	}
}

func (p *textParser) message(nested bool) ([]textField, error) {
	if p.depth > 32 {
		return nil, fmt.Errorf("offset %d: nested too deep", p.i)
	}
	p.depth++
	defer func() { p.depth-- }()
	var out []textField
	for {
		p.skip()
		if p.i >= len(p.s) {
			if nested {
				return nil, fmt.Errorf("offset %d: missing }", p.i)
			}
			return out, nil
		}
		if p.s[p.i] == '}' {
			if !nested {
				return nil, fmt.Errorf("offset %d: unexpected }", p.i)
			}
			p.i++
			return out, nil
		}
		start := p.i
		for p.i < len(p.s) && (isIdent(p.s[p.i])) {
			p.i++
		}
		if p.i == start {
			return nil, fmt.Errorf("offset %d: want a field name, got %q", p.i, p.s[p.i])
		}
		f := textField{name: p.s[start:p.i]}
		p.skip()
		colon := false
		if p.i < len(p.s) && p.s[p.i] == ':' {
			colon = true
			p.i++
			p.skip()
		}
		if p.i < len(p.s) && p.s[p.i] == '{' {
			p.i++
			sub, err := p.message(true)
			if err != nil {
				return nil, err
			}
			f.msg, f.isMsg = sub, true
		} else {
			if !colon {
				return nil, fmt.Errorf("offset %d: want ':' or '{' after %s", p.i, f.name)
			}
			v, err := p.scalar()
			if err != nil {
				return nil, err
			}
			f.scalar = v
		}
		out = append(out, f)
	}
}

func isIdent(c byte) bool {
	return c == '_' || c == '.' || c == '-' || c == '+' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func (p *textParser) scalar() (string, error) {
	if p.i >= len(p.s) {
		return "", fmt.Errorf("offset %d: missing value", p.i)
	}
	q := p.s[p.i]
	if q == '"' || q == '\'' {
		p.i++
		var b strings.Builder
		for p.i < len(p.s) {
			c := p.s[p.i]
			if c == '\\' && p.i+1 < len(p.s) {
				p.i++
				switch p.s[p.i] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(p.s[p.i])
				}
				p.i++
				continue
			}
			if c == q {
				p.i++
				return b.String(), nil
			}
			if c == '\n' {
				break
			}
			b.WriteByte(c)
			p.i++
		}
		return "", fmt.Errorf("offset %d: unterminated string", p.i)
	}
	start := p.i
	for p.i < len(p.s) && isIdent(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", fmt.Errorf("offset %d: want a value, got %q", p.i, p.s[p.i])
	}
	return p.s[start:p.i], nil
}
