package runner

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Artifact is a runtime artifact: its URI is a local path (absolute), as
// kfp.local's are, so that the KFP SDK's executor maps .path to the URI.
type Artifact struct {
	Name          string         `json:"name"`
	SchemaTitle   string         `json:"schemaTitle,omitempty"`
	SchemaVersion string         `json:"schemaVersion,omitempty"`
	URI           string         `json:"uri"`
	Metadata      map[string]any `json:"metadata,omitempty"`
}

// Path is the artifact's local path.
func (a *Artifact) Path() string { return localPathOfURI(a.URI) }

// taskIO is what a container task's placeholders resolve from: its
// ExecutorInput (inputs with component defaults, as KFP's launcher adds
// them) and the run's identity.
type taskIO struct {
	params       map[string]any
	paramTypes   map[string]string
	inArtifacts  map[string][]*Artifact
	outParams    map[string]string // name → output file
	outArtifacts map[string]*Artifact
	outputFile   string
	pipeline     map[string]string // {{$.pipeline_job_name}} … → value
	executorJSON string
}

// pipelinePlaceholders are the run-level placeholders KFP resolves in
// container arguments and in task input constants.
var pipelinePlaceholders = []string{
	"{{$.pipeline_job_name}}", "{{$.pipeline_job_resource_name}}", "{{$.pipeline_job_uuid}}",
	"{{$.pipeline_task_name}}", "{{$.pipeline_task_uuid}}", "{{$.pipeline_root}}",
	"{{$.pipeline_job_create_time_utc}}", "{{$.pipeline_job_schedule_time_utc}}",
}

var placeholderRE = regexp.MustCompile(`\{\{\$[^{}]*\}\}`)

// placeholderForm is one parsed placeholder.
type placeholderForm struct {
	whole  bool   // {{$}}
	fixed  string // a run-level placeholder or {{$.outputs.output_file}}
	dir    string // inputs | outputs
	kind   string // parameters | artifacts
	name   string
	suffix string // "", .path, .uri, .metadata, .output_file
	key    string // metadata['key']
}

var ioPlaceholderRE = regexp.MustCompile(`^\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](\.path|\.uri|\.output_file|\.metadata(?:\['([^']+)'\])?)?\}\}$`)

// parsePlaceholder recognizes every placeholder form the KFP SDK emits; an
// unknown one is an error.
func parsePlaceholder(ph string) (placeholderForm, error) {
	if ph == "{{$}}" {
		return placeholderForm{whole: true}, nil
	}
	for _, p := range pipelinePlaceholders {
		if ph == p {
			return placeholderForm{fixed: ph}, nil
		}
	}
	if ph == "{{$.outputs.output_file}}" || ph == "{{$.outputMetadataUri}}" {
		return placeholderForm{fixed: "{{$.outputs.output_file}}"}, nil
	}
	m := ioPlaceholderRE.FindStringSubmatch(ph)
	if m == nil {
		return placeholderForm{}, fmt.Errorf("placeholder %s is not one the KFP SDK emits", ph)
	}
	f := placeholderForm{dir: m[1], kind: m[2], name: m[3], suffix: m[4], key: m[5]}
	if strings.HasPrefix(f.suffix, ".metadata") {
		f.suffix = ".metadata"
	}
	switch {
	case f.kind == "parameters" && f.dir == "inputs" && f.suffix == "":
	case f.kind == "parameters" && f.dir == "outputs" && f.suffix == ".output_file":
	case f.kind == "artifacts" && f.suffix != ".output_file":
	default:
		return placeholderForm{}, fmt.Errorf("placeholder %s is not one the KFP SDK emits", ph)
	}
	return f, nil
}

// checkArgs checks a container's command and args for placeholders the
// runner cannot resolve (compile time).
func checkArgs(args []string) error {
	for _, a := range args {
		if isStructPlaceholder(a) {
			var v any
			if err := json.Unmarshal([]byte(a), &v); err != nil {
				return fmt.Errorf("argument %s: not valid JSON: %w", a, err)
			}
			if _, err := checkStruct(v, 0); err != nil {
				return fmt.Errorf("argument %s: %w", a, err)
			}
			continue
		}
		for _, ph := range placeholderRE.FindAllString(a, -1) {
			if _, err := parsePlaceholder(ph); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkStruct(v any, depth int) (bool, error) {
	if depth > 32 {
		return false, fmt.Errorf("Concat/IfPresent nested more than 32 levels")
	}
	switch x := v.(type) {
	case string:
		for _, ph := range placeholderRE.FindAllString(x, -1) {
			if _, err := parsePlaceholder(ph); err != nil {
				return false, err
			}
		}
		return true, nil
	case []any:
		for _, e := range x {
			if _, err := checkStruct(e, depth+1); err != nil {
				return false, err
			}
		}
		return true, nil
	case map[string]any:
		if c, ok := x["Concat"]; ok {
			return checkStruct(c, depth+1)
		}
		if ip, ok := x["IfPresent"].(map[string]any); ok {
			if _, ok := ip["InputName"].(string); !ok {
				return false, fmt.Errorf("IfPresent without an InputName")
			}
			for _, k := range []string{"Then", "Else"} {
				if e, ok := ip[k]; ok && e != nil {
					if _, err := checkStruct(e, depth+1); err != nil {
						return false, err
					}
				}
			}
			return true, nil
		}
	case nil:
		return true, nil
	}
	return false, fmt.Errorf("%v is neither a string, a Concat nor an IfPresent placeholder", v)
}

func isStructPlaceholder(a string) bool {
	t := strings.TrimSpace(a)
	return strings.HasPrefix(t, `{"Concat":`) || strings.HasPrefix(t, `{"IfPresent":`)
}

// resolveArgs resolves a container's command line: Concat and IfPresent
// structures (an IfPresent in list form may add several arguments or
// none), then every placeholder, each replaced once by its value.
func (io *taskIO) resolveArgs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if isStructPlaceholder(a) {
			var v any
			if err := json.Unmarshal([]byte(a), &v); err != nil {
				return nil, fmt.Errorf("argument %s: %w", a, err)
			}
			parts, err := io.resolveStruct(v)
			if err != nil {
				return nil, fmt.Errorf("argument %s: %w", a, err)
			}
			out = append(out, parts...)
			continue
		}
		s, err := io.substitute(a)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (io *taskIO) present(name string) bool {
	if v, ok := io.params[name]; ok && v != nil {
		return true
	}
	return len(io.inArtifacts[name]) > 0
}

// resolveStruct resolves a Concat or IfPresent structure (or a string, or a
// list of them) to arguments.
func (io *taskIO) resolveStruct(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		s, err := io.substitute(x)
		return []string{s}, err
	case []any:
		var out []string
		for _, e := range x {
			p, err := io.resolveStruct(e)
			if err != nil {
				return nil, err
			}
			out = append(out, p...)
		}
		return out, nil
	case map[string]any:
		if c, ok := x["Concat"]; ok {
			parts, err := io.resolveStruct(c)
			if err != nil {
				return nil, err
			}
			return []string{strings.Join(parts, "")}, nil
		}
		if ip, ok := x["IfPresent"].(map[string]any); ok {
			name, _ := ip["InputName"].(string)
			if io.present(name) {
				return io.resolveStruct(ip["Then"])
			}
			return io.resolveStruct(ip["Else"])
		}
	}
	return nil, fmt.Errorf("%v is neither a string, a Concat nor an IfPresent placeholder", v)
}

// substitute replaces every placeholder of s by its value.
func (io *taskIO) substitute(s string) (string, error) {
	var perr error
	out := placeholderRE.ReplaceAllStringFunc(s, func(ph string) string {
		v, err := io.value(ph)
		if err != nil && perr == nil {
			perr = err
		}
		return v
	})
	return out, perr
}

func (io *taskIO) value(ph string) (string, error) {
	f, err := parsePlaceholder(ph)
	if err != nil {
		return "", err
	}
	switch {
	case f.whole:
		return io.executorJSON, nil
	case f.fixed == "{{$.outputs.output_file}}":
		return io.outputFile, nil
	case f.fixed != "":
		return io.pipeline[f.fixed], nil
	}
	switch {
	case f.dir == "inputs" && f.kind == "parameters":
		v, ok := io.params[f.name]
		if !ok || v == nil {
			return "", fmt.Errorf("placeholder %s: input parameter %q has no value (optional without a default? guard it with IfPresent)", ph, f.name)
		}
		return Format(io.paramTypes[f.name], v), nil
	case f.dir == "outputs" && f.kind == "parameters":
		p, ok := io.outParams[f.name]
		if !ok {
			return "", fmt.Errorf("placeholder %s: the component declares no output parameter %q", ph, f.name)
		}
		return p, nil
	case f.dir == "inputs":
		list, ok := io.inArtifacts[f.name]
		if !ok || len(list) == 0 {
			return "", fmt.Errorf("placeholder %s: the task has no input artifact %q", ph, f.name)
		}
		if f.suffix == "" {
			return artifactListJSON(list), nil
		}
		return artifactField(list[0], f)
	default:
		a, ok := io.outArtifacts[f.name]
		if !ok {
			return "", fmt.Errorf("placeholder %s: the component declares no output artifact %q", ph, f.name)
		}
		if f.suffix == "" {
			return artifactListJSON([]*Artifact{a}), nil
		}
		return artifactField(a, f)
	}
}

func artifactField(a *Artifact, f placeholderForm) (string, error) {
	switch f.suffix {
	case ".path":
		return a.Path(), nil
	case ".uri":
		return a.URI, nil
	}
	if f.key == "" {
		if a.Metadata == nil {
			return "{}", nil
		}
		return jsonString(a.Metadata), nil
	}
	v, ok := a.Metadata[f.key]
	if !ok {
		return "", fmt.Errorf("artifact %q has no metadata %q", a.Name, f.key)
	}
	if s, ok := v.(string); ok {
		return s, nil
	}
	return jsonString(v), nil
}

// artifactListJSON renders a list of artifacts as the ArtifactList of the
// executor input: {"artifacts":[{"name","type":{…},"uri","metadata"}…]}.
func artifactListJSON(list []*Artifact) string {
	type art struct {
		Name     string            `json:"name"`
		Type     map[string]string `json:"type"`
		URI      string            `json:"uri"`
		Metadata map[string]any    `json:"metadata"`
	}
	out := struct {
		Artifacts []art `json:"artifacts"`
	}{Artifacts: []art{}}
	for _, a := range list {
		md := a.Metadata
		if md == nil {
			md = map[string]any{}
		}
		out.Artifacts = append(out.Artifacts, art{Name: a.Name, Type: map[string]string{"schemaTitle": a.SchemaTitle, "schemaVersion": a.SchemaVersion}, URI: a.URI, Metadata: md})
	}
	return jsonString(out)
}

// resolveConstant resolves the run-level placeholders in a task input
// constant ("{{$.pipeline_job_name}}", "run-{{$.pipeline_job_uuid}}").
func resolveConstant(v any, pipeline map[string]string) any {
	s, ok := v.(string)
	if !ok || !strings.Contains(s, "{{$.") {
		return v
	}
	for _, p := range pipelinePlaceholders {
		if val, ok := pipeline[p]; ok {
			s = strings.ReplaceAll(s, p, val)
		}
	}
	return s
}

// resolveSelfReferences replaces {{$.inputs.parameters['x']}} in string
// inputs by the value of input x of the same task: the KFP SDK compiles an
// f-string argument this way.
func resolveSelfReferences(params map[string]any, types map[string]string) {
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s, ok := params[n].(string)
		if !ok || !strings.Contains(s, "{{$.inputs.parameters[") {
			continue
		}
		params[n] = placeholderRE.ReplaceAllStringFunc(s, func(ph string) string {
			f, err := parsePlaceholder(ph)
			if err != nil || f.dir != "inputs" || f.kind != "parameters" || f.name == n {
				return ph
			}
			v, ok := params[f.name]
			if !ok || v == nil {
				return ph
			}
			return Format(types[f.name], v)
		})
	}
}

// executorInput builds the ExecutorInput message of a task as KFP's driver
// does (inputs with component defaults, as its launcher adds them; outputs
// with their files and URIs).
func (io *taskIO) executorInput() (*pipelinespec.ExecutorInput, error) {
	in := &pipelinespec.ExecutorInput{
		Inputs:  &pipelinespec.ExecutorInput_Inputs{ParameterValues: map[string]*structpb.Value{}, Artifacts: map[string]*pipelinespec.ArtifactList{}},
		Outputs: &pipelinespec.ExecutorInput_Outputs{Parameters: map[string]*pipelinespec.ExecutorInput_OutputParameter{}, Artifacts: map[string]*pipelinespec.ArtifactList{}, OutputFile: io.outputFile},
	}
	for n, v := range io.params {
		if v == nil {
			continue
		}
		pv, err := structpb.NewValue(normalizeJSON(v))
		if err != nil {
			return nil, fmt.Errorf("input parameter %q: %w", n, err)
		}
		in.Inputs.ParameterValues[n] = pv
	}
	for n, list := range io.inArtifacts {
		al, err := artifactList(list)
		if err != nil {
			return nil, fmt.Errorf("input artifact %q: %w", n, err)
		}
		in.Inputs.Artifacts[n] = al
	}
	for n, f := range io.outParams {
		in.Outputs.Parameters[n] = &pipelinespec.ExecutorInput_OutputParameter{OutputFile: f}
	}
	for n, a := range io.outArtifacts {
		al, err := artifactList([]*Artifact{a})
		if err != nil {
			return nil, err
		}
		in.Outputs.Artifacts[n] = al
	}
	return in, nil
}

func artifactList(list []*Artifact) (*pipelinespec.ArtifactList, error) {
	al := &pipelinespec.ArtifactList{}
	for _, a := range list {
		md, err := structpb.NewStruct(normalizeMap(a.Metadata))
		if err != nil {
			return nil, err
		}
		al.Artifacts = append(al.Artifacts, &pipelinespec.RuntimeArtifact{Name: a.Name, Uri: a.URI, Metadata: md,
			Type: &pipelinespec.ArtifactTypeSchema{Kind: &pipelinespec.ArtifactTypeSchema_SchemaTitle{SchemaTitle: a.SchemaTitle}, SchemaVersion: a.SchemaVersion}})
	}
	return al, nil
}

// marshalExecutorInput is the {{$}} text: the ExecutorInput as protojson.
func marshalExecutorInput(in *pipelinespec.ExecutorInput) (string, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(in)
	if err != nil {
		return "", err
	}
	// protojson's output is valid but not byte-stable; compact it through
	// encoding/json so a task sees the same text for the same input.
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "", err
	}
	return jsonString(v), nil
}

func normalizeMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = normalizeJSON(v)
	}
	return out
}

// normalizeJSON turns numbers of any Go type into float64 and nested maps
// and lists into the shapes structpb accepts.
func normalizeJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return normalizeMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeJSON(e)
		}
		return out
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	if f, ok := toFloat(v); ok {
		return f
	}
	return v
}
