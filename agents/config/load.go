package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/santhosh-tekuri/jsonschema/v6"
	yamlv3 "go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/resources"
)

// EnvPrefix starts every environment variable that overrides a config field.
// The variable of a field is the prefix plus its path in upper snake case:
// backends.pipelines.endpoint is BRANCHML_BACKENDS_PIPELINES_ENDPOINT.
const EnvPrefix = "BRANCHML_"

// FieldError is one problem with one field of the configuration.
type FieldError struct {
	// Source is where the bad value came from: a file path, an environment
	// variable name, or "--set".
	Source string
	// Field is the dotted path of the field, e.g. "deploy.canary.steps[0]";
	// "" for the document itself.
	Field string
	// Value is the offending value as JSON ("" when the field is missing).
	Value string
	// Problem says what is wrong and what is allowed.
	Problem string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	if e.Value != "" {
		b.WriteString(": ")
		b.WriteString(e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	return b.String()
}

// ValidationError lists every FieldError found in one load. Callers match it
// with errors.As; the CLI maps it to exit code 2.
type ValidationError struct {
	Errors []*FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		msgs[i] = fe.Error()
	}
	if len(msgs) == 1 {
		return "invalid configuration: " + msgs[0]
	}
	return "invalid configuration:\n  " + strings.Join(msgs, "\n  ")
}

type options struct {
	environ []string
	sets    []string
}

// Option changes how Load layers the configuration.
type Option func(*options)

// WithEnviron uses env (KEY=VALUE entries) instead of os.Environ() for the
// BRANCHML_* layer.
func WithEnviron(env []string) Option { return func(o *options) { o.environ = env } }

// WithSets applies "field.path=value" overrides (the flags layer, --set);
// values are parsed as YAML scalars or flow collections ("[10, 50, 100]").
func WithSets(sets ...string) Option { return func(o *options) { o.sets = append(o.sets, sets...) } }

// Load reads the configuration: built-in defaults, then the YAML file at path
// (skipped when path is ""), then BRANCHML_* environment variables, then the
// --set overrides; validates the result against the JSON Schema in resources/
// and derives the defaults that depend on the project name.
// A missing or unreadable file is an *os.PathError; a bad value a
// *ValidationError that names the source, field, value and what is allowed.
func Load(path string, opts ...Option) (*Config, error) {
	o := options{environ: os.Environ()}
	for _, opt := range opts {
		opt(&o)
	}
	doc, err := loadDefaults()
	if err != nil {
		return nil, err
	}
	origin := map[string]string{} // field path -> source
	src := "defaults"
	if path != "" {
		src = path
		raw, err := ReadFileLimited(path, MaxConfigBytes)
		var tl *TooLargeError
		if errors.As(err, &tl) {
			return nil, &ValidationError{Errors: []*FieldError{{Source: path, Problem: tl.Error() + "; keep branchml.yaml to its settings (long texts belong in files it names)"}}}
		}
		if err != nil {
			return nil, err
		}
		file, err := parseYAMLDoc(path, raw)
		if err != nil {
			return nil, err
		}
		merge(doc, file)
	}
	if err := applyEnv(doc, o.environ, origin); err != nil {
		return nil, err
	}
	if err := applySets(doc, o.sets, origin); err != nil {
		return nil, err
	}
	if err := validate(doc, src, origin); err != nil {
		return nil, err
	}
	cfg, err := decode(doc, src)
	if err != nil {
		return nil, err
	}
	if path != "" {
		cfg.File = path
		cfg.Dir = filepath.Dir(path)
	}
	cfg.derive()
	if err := cfg.check(src); err != nil {
		return nil, err
	}
	return cfg, nil
}

func loadDefaults() (map[string]any, error) {
	raw, err := fs.ReadFile(resources.FS, resources.DefaultsPath)
	if err != nil {
		return nil, err
	}
	return parseYAMLDoc("built-in defaults", raw)
}

// parseYAMLDoc parses one YAML mapping document into generic JSON values.
func parseYAMLDoc(name string, raw []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, &ValidationError{Errors: []*FieldError{{Source: name, Problem: "the file is empty; it needs at least apiVersion, project and branches"}}}
	}
	if extraDocument(raw) {
		return nil, &ValidationError{Errors: []*FieldError{{Source: name, Problem: "has more than one YAML document (a '---' line after content); keep one"}}}
	}
	if err := duplicateKeys(raw); err != nil {
		return nil, &ValidationError{Errors: []*FieldError{{Source: name, Problem: err.Error()}}}
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, &ValidationError{Errors: []*FieldError{{Source: name, Problem: "not valid YAML: " + err.Error()}}}
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, &ValidationError{Errors: []*FieldError{{Source: name, Problem: "not valid YAML: " + err.Error()}}}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &ValidationError{Errors: []*FieldError{{Source: name, Value: short(v), Problem: "the document must be a mapping of keys to values"}}}
	}
	return m, nil
}

// duplicateKeys fails on a key given twice in one mapping, which YAML
// forbids. Keys brought in by a merge key ("<<: *anchor") are not the
// mapping's own: a key after it overrides the merged one, as the YAML merge
// key type says (yaml.org/type/merge.html), so only the keys written in
// each mapping are compared. Aliases are not followed (their mapping is
// checked where it is written).
func duplicateKeys(raw []byte) error {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	var walk func(n *yamlv3.Node, path string) error
	walk = func(n *yamlv3.Node, path string) error {
		switch n.Kind {
		case yamlv3.DocumentNode, yamlv3.SequenceNode:
			for i, c := range n.Content {
				p := path
				if n.Kind == yamlv3.SequenceNode {
					p = fmt.Sprintf("%s[%d]", path, i)
				}
				if err := walk(c, p); err != nil {
					return err
				}
			}
		case yamlv3.MappingNode:
			seen := map[string]int{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if k.Kind == yamlv3.ScalarNode && k.Tag != "!!merge" {
					if line, ok := seen[k.Value]; ok {
						return fmt.Errorf("not valid YAML: line %d: key %s is given twice (first on line %d); keep one", k.Line, p, line)
					}
					seen[k.Value] = k.Line
				}
				if err := walk(v, p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(&doc, "")
}

// extraDocument reports whether raw has a document separator after content
// (a leading "---" is allowed).
func extraDocument(raw []byte) bool {
	content := false
	for _, line := range strings.Split(string(raw), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasPrefix(line, "---") && strings.TrimSpace(strings.TrimPrefix(line, "---")) == "" {
			if content {
				return true
			}
			continue
		}
		content = true
	}
	return false
}

// merge deep-merges src into dst: mappings merge key by key, everything else
// (scalars, lists) replaces.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// envFields maps each BRANCHML_ variable to the field path it sets: every
// scalar or list field of the schema outside maps keyed by user names.
func envFields() map[string][]string {
	out := map[string][]string{}
	var walk func(path []string, s map[string]any)
	walk = func(path []string, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			ps, _ := p.(map[string]any)
			child := append(append([]string{}, path...), name)
			if _, nested := ps["properties"]; nested {
				walk(child, ps)
				continue
			}
			if t, _ := ps["type"].(string); t == "object" {
				continue
			}
			out[envName(child)] = child
		}
	}
	walk(nil, schemaDoc())
	return out
}

func envName(path []string) string {
	var b strings.Builder
	b.WriteString(EnvPrefix)
	for i, p := range path {
		if i > 0 {
			b.WriteByte('_')
		}
		for j, r := range p {
			// A word starts at an upper-case letter after a lower-case one
			// (maxLatency), or at the last capital of an acronym that a
			// word follows (targetCPUUtilization: TARGET_CPU_UTILIZATION;
			// a plural acronym's s is its own: userIDs, USER_IDS).
			next := j+1 < len(p) && unicode.IsLower(rune(p[j+1])) && !(p[j+1] == 's' && j+2 == len(p))
			if unicode.IsUpper(r) && j > 0 && (!unicode.IsUpper(rune(p[j-1])) || next) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

// EnvVars lists the environment variables that override config fields, with
// the dotted field path each sets, sorted by name.
func EnvVars() [][2]string {
	var out [][2]string
	for name, path := range envFields() {
		out = append(out, [2]string{name, strings.Join(path, ".")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func applyEnv(doc map[string]any, environ []string, origin map[string]string) error {
	fields := envFields()
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		path, ok := fields[name]
		if !ok {
			// A runtime parameter: BRANCHML_TRAINING_PARAMETERS_BATCH_SIZE sets
			// training.parameters.batch_size.
			if key, isParam := strings.CutPrefix(name, paramsPrefix); isParam && key != "" {
				path = []string{"training", "parameters", strings.ToLower(key)}
			} else {
				continue // agents' flag variables (BRANCHML_DRY_RUN …) are not config fields
			}
		}
		if err := setPath(doc, path, val, name, origin); err != nil {
			return err
		}
	}
	return nil
}

// paramsPrefix starts the variables of training.parameters entries.
const paramsPrefix = EnvPrefix + "TRAINING_PARAMETERS_"

// UnknownEnv returns the BRANCHML_* variables of environ that are neither a
// config field, a training parameter, nor one of known (the agents' flag
// variables): most likely typos, which would otherwise do nothing.
func UnknownEnv(environ []string, known map[string]bool) []string {
	fields := envFields()
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || known[name] || strings.HasPrefix(name, paramsPrefix) {
			continue
		}
		if _, ok := fields[name]; !ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func applySets(doc map[string]any, sets []string, origin map[string]string) error {
	for _, s := range sets {
		key, val, ok := strings.Cut(s, "=")
		if !ok || key == "" {
			return &ValidationError{Errors: []*FieldError{{Source: "--set", Value: strconv.Quote(s), Problem: "expected field.path=value, e.g. --set deploy.strategy=ab"}}}
		}
		if err := setPath(doc, strings.Split(key, "."), val, "--set "+key, origin); err != nil {
			return err
		}
	}
	return nil
}

func setPath(doc map[string]any, path []string, raw, source string, origin map[string]string) error {
	var v any
	if leafType(path) == "string" {
		v = raw // "0123", "on", "no" stay strings where the schema wants one
	} else if err := yaml.Unmarshal([]byte(raw), &v); err != nil || v == nil {
		v = raw
	}
	// Keep numbers as json.Number like the file layer, so validation sees one shape.
	js, _ := json.Marshal(v)
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	_ = dec.Decode(&v)
	m := doc
	for i, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			if _, exists := m[p]; exists {
				return &ValidationError{Errors: []*FieldError{{Source: source, Field: strings.Join(path[:i+1], "."), Problem: "is not a mapping; cannot set a key below it"}}}
			}
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
	origin[strings.Join(path, ".")] = source
	return nil
}

// leafType is the JSON Schema type of the field at path ("string",
// "integer", "array", …; "" when the schema does not say one type).
func leafType(path []string) string {
	root := schemaDoc()
	defs, _ := root["$defs"].(map[string]any)
	node := root
	resolve := func(n map[string]any) map[string]any {
		if ref, ok := n["$ref"].(string); ok {
			if d, ok := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any); ok {
				return d
			}
		}
		return n
	}
	for _, p := range path {
		props, _ := node["properties"].(map[string]any)
		next, ok := props[p].(map[string]any)
		if !ok {
			if ap, isMap := node["additionalProperties"].(map[string]any); isMap {
				next = ap
			} else {
				return ""
			}
		}
		node = resolve(next)
	}
	if t, ok := node["type"].(string); ok {
		return t
	}
	if enum, ok := node["enum"].([]any); ok && len(enum) > 0 {
		if _, isString := enum[0].(string); isString {
			return "string"
		}
	}
	if c, ok := node["const"].(string); ok && c != "" {
		return "string"
	}
	return ""
}

var (
	compileOnce sync.Once
	compiled    *jsonschema.Schema
	compileErr  error
)

var printer = message.NewPrinter(language.English)

func schemaDoc() map[string]any {
	raw, err := fs.ReadFile(resources.FS, resources.SchemaPath)
	if err != nil {
		panic(err) // embedded: cannot fail unless the build is broken
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		panic(err)
	}
	return m
}

func schema() (*jsonschema.Schema, error) {
	compileOnce.Do(func() { compiled, compileErr = compileSchema() })
	return compiled, compileErr
}

func compileSchema() (*jsonschema.Schema, error) {
	raw, err := fs.ReadFile(resources.FS, resources.SchemaPath)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("branchml.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("branchml.schema.json")
}

func validate(doc map[string]any, src string, origin map[string]string) error {
	s, err := schema()
	if err != nil {
		return fmt.Errorf("compile the config schema: %w", err)
	}
	// The validator wants the same shapes UnmarshalJSON makes.
	js, _ := json.Marshal(doc)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return err
	}
	err = s.Validate(inst)
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	var out []*FieldError
	for _, leaf := range leaves(ve) {
		field := fieldPath(leaf.InstanceLocation)
		fe := &FieldError{Source: src, Field: field, Problem: problem(leaf)}
		if v, ok := lookup(inst, leaf.InstanceLocation); ok && !isContainer(v) {
			fe.Value = short(v)
		}
		for f := field; f != ""; f = parent(f) {
			if o, ok := origin[stripIndex(f)]; ok {
				fe.Source = o
				break
			}
		}
		out = append(out, fe)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return &ValidationError{Errors: dedupe(out)}
}

// leaves returns the innermost causes: the ones that say what is wrong.
func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// friendly replaces the pattern messages of the schema's shared definitions
// with what a person can act on.
var friendly = map[string]string{
	"duration":   "is not a duration: write a Go duration such as 30s, 5m or 1h30m",
	"quantity":   "is not a Kubernetes quantity: write e.g. 500m, 2, 512Mi or 1Gi",
	"name":       "is not a DNS-1123 name: use lower-case letters, digits and '-', at most 63 characters",
	"metricPath": "is not a metric path: use dotted keys of metrics.json, e.g. validation.auc",
	"branch":     "is not a valid branch name",
}

func problem(e *jsonschema.ValidationError) string {
	msg := e.ErrorKind.LocalizedString(printer)
	if i := strings.Index(e.SchemaURL, "/$defs/"); i >= 0 {
		def, _, _ := strings.Cut(e.SchemaURL[i+len("/$defs/"):], "/")
		if f, ok := friendly[def]; ok && strings.Contains(msg, "pattern") {
			return f
		}
	}
	// Make the library's wording name the fix where it is terse.
	switch {
	case strings.HasPrefix(msg, "additional properties"), strings.HasPrefix(msg, "additionalProperties"):
		return msg + " (unknown key: remove it or fix its spelling; see resources/schema/branchml.schema.json)"
	}
	return msg
}

func fieldPath(loc []string) string {
	var b strings.Builder
	for _, p := range loc {
		if _, err := strconv.Atoi(p); err == nil {
			b.WriteString("[" + p + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func parent(f string) string {
	if i := strings.LastIndexAny(f, ".["); i > 0 {
		return f[:i]
	}
	return ""
}

func stripIndex(f string) string {
	if i := strings.IndexByte(f, '['); i >= 0 {
		return f[:i]
	}
	return f
}

func lookup(v any, loc []string) (any, bool) {
	for _, p := range loc {
		switch t := v.(type) {
		case map[string]any:
			v = t[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func isContainer(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}

func short(v any) string {
	js, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(js) > 80 {
		return string(js[:77]) + "..."
	}
	return string(js)
}

func dedupe(in []*FieldError) []*FieldError {
	seen := map[string]bool{}
	var out []*FieldError
	for _, e := range in {
		k := e.Error()
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

func decode(doc map[string]any, src string) (*Config, error) {
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, &ValidationError{Errors: []*FieldError{{Source: src, Problem: err.Error()}}}
	}
	return &cfg, nil
}

// derive fills the defaults that depend on the project name.
func (c *Config) derive() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Pipeline.Name, c.Project)
	def(&c.Training.Experiment, c.Project)
	def(&c.Training.Data.Volume, c.Project+"-data")
	def(&c.Training.Model.Volume, c.Project+"-model")
	def(&c.Deploy.Model, c.Project)
	for i := range c.Components {
		def(&c.Components[i].Binary, "/ko-app/"+c.Components[i].Name)
	}
}

// check enforces what the schema cannot say: unique component names,
// ascending canary steps, components referenced by the serving section.
func (c *Config) check(src string) error {
	var errs []*FieldError
	seen := map[string]bool{}
	for i, comp := range c.Components {
		if seen[comp.Name] {
			errs = append(errs, &FieldError{Source: src, Field: fmt.Sprintf("components[%d].name", i), Value: strconv.Quote(comp.Name), Problem: "duplicate component name; names must be unique"})
		}
		seen[comp.Name] = true
		if comp.Kind == "dockerfile" && comp.Dockerfile == "" {
			errs = append(errs, &FieldError{Source: src, Field: fmt.Sprintf("components[%d].dockerfile", i), Problem: "is required when kind is dockerfile: give the Dockerfile's path"})
		}
	}
	steps := c.Deploy.Canary.Steps
	for i := 1; i < len(steps); i++ {
		if steps[i] <= steps[i-1] {
			errs = append(errs, &FieldError{Source: src, Field: fmt.Sprintf("deploy.canary.steps[%d]", i), Value: strconv.Itoa(steps[i]), Problem: fmt.Sprintf("canary weights must ascend; it follows %d", steps[i-1])})
		}
	}
	if c.Backends.Serving.Type == "kubernetes" {
		// The Kubernetes backend splits traffic by pod count (its
		// ReplicaRouter): a weight is a whole number of the replicas or
		// it is not what the canary gets.
		n := c.Deploy.Serving.Replicas
		if n <= 0 {
			n = 2
		}
		check := func(field string, w int) {
			if w > 0 && w <= 100 && n*w%100 != 0 {
				real := 100 * ((n*w + 99) / 100) / n
				errs = append(errs, &FieldError{Source: src, Field: field, Value: strconv.Itoa(w),
					Problem: fmt.Sprintf("backends.serving.type kubernetes splits traffic by pods: %d%% of deploy.serving.replicas %d is not a whole pod (the canary would get %d%%); use weights that are multiples of %s%%, or more replicas", w, n, real, strconv.FormatFloat(100/float64(n), 'f', -1, 64))})
			}
		}
		if c.Deploy.Serving.Autoscale != nil {
			// Under an autoscaler the canary's pods follow the stable's
			// count (kubernetes.AutoscaleRouter): any weight, rounded to
			// whole pods at each count.
		} else {
			for i, w := range steps {
				check(fmt.Sprintf("deploy.canary.steps[%d]", i), w)
			}
			if c.Deploy.Strategy == "ab" {
				check("deploy.ab.weight", c.Deploy.AB.Weight)
			}
		}
	}
	// Checked whatever the serving backend (the local one ignores the
	// autoscaler; the same file serves on Kubernetes elsewhere).
	if as := c.Deploy.Serving.Autoscale; as != nil {
		if as.MinReplicas > as.MaxReplicas {
			errs = append(errs, &FieldError{Source: src, Field: "deploy.serving.autoscale.minReplicas", Value: strconv.Itoa(as.MinReplicas),
				Problem: fmt.Sprintf("is above maxReplicas %d; set minReplicas <= maxReplicas", as.MaxReplicas)})
		}
		// A limit alone is the request too (Kubernetes defaults a
		// container's request to its limit).
		res := c.Deploy.Serving.Resources
		field := "deploy.serving.resources.requests.cpu"
		cpu, set := res.Requests["cpu"]
		if !set {
			field = "deploy.serving.resources.limits.cpu"
			cpu = res.Limits["cpu"]
		}
		q, err := resource.ParseQuantity(cpu)
		switch {
		case cpu == "":
			errs = append(errs, &FieldError{Source: src, Field: "deploy.serving.resources.requests.cpu",
				Problem: "is required with deploy.serving.autoscale: the HorizontalPodAutoscaler's CPU target is a percentage of the request (e.g. cpu: 100m)"})
		case err == nil && q.Sign() <= 0:
			errs = append(errs, &FieldError{Source: src, Field: field, Value: strconv.Quote(cpu),
				Problem: "must be above zero with deploy.serving.autoscale: the HorizontalPodAutoscaler's CPU target is a percentage of the request (e.g. cpu: 100m)"})
		}
	}
	// Kubernetes refuses a container whose request is above its limit.
	for _, name := range []string{"cpu", "memory"} {
		r, l := c.Deploy.Serving.Resources.Requests[name], c.Deploy.Serving.Resources.Limits[name]
		rq, err1 := resource.ParseQuantity(r)
		lq, err2 := resource.ParseQuantity(l)
		if r != "" && l != "" && err1 == nil && err2 == nil && rq.Cmp(lq) > 0 {
			errs = append(errs, &FieldError{Source: src, Field: "deploy.serving.resources.requests." + name, Value: strconv.Quote(r),
				Problem: fmt.Sprintf("is above limits.%s %s, which Kubernetes refuses; lower the request or raise the limit", name, l)})
		}
	}
	for i, k := range c.Training.KPIs {
		if k.Op == "" && c.Training.Gate.Split == "" {
			errs = append(errs, &FieldError{Source: src, Field: fmt.Sprintf("training.kpis[%d]", i), Value: k.Metric, Problem: "a KPI with confidence (no op) needs training.gate.split: name the held-out split the pipeline writes predictions for"})
		}
	}
	if comp := c.Deploy.Serving.Component; comp != "" && !seen[comp] {
		errs = append(errs, &FieldError{Source: src, Field: "deploy.serving.component", Value: strconv.Quote(comp), Problem: "names no component in components[]; use one of their names"})
	}
	if len(errs) > 0 {
		return &ValidationError{Errors: errs}
	}
	return nil
}

// StagesForBranch returns the stage keys that a merge into branch runs, in
// lifecycle order (StageOrder); none for an unmapped branch.
func (c *Config) StagesForBranch(branch string) []string {
	var out []string
	for _, s := range StageOrder {
		if c.Branches[s] == branch {
			out = append(out, s)
		}
	}
	return out
}

// Path resolves p relative to the configuration file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// UnmarshalJSON reads a Go duration string ("30s").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }
