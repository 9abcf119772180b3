package runner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// Plan is a parsed pipeline: the root DAG's tasks in a deterministic
// topological order, with their executors, and the root's parameters.
type Plan struct {
	Name  string
	Tasks []*Task
	// Params are the root component's input parameters by name.
	Params map[string]*ParamDef
	byName map[string]*Task
}

// ParamDef is a declared input parameter.
type ParamDef struct {
	Name string
	// Type is a KFP ParameterType name: STRING, NUMBER_INTEGER,
	// NUMBER_DOUBLE, BOOLEAN, LIST or STRUCT.
	Type     string
	Default  any // JSON value; nil when there is none
	Optional bool
}

// Task is one task of the root DAG.
type Task struct {
	Name      string
	Component string
	// Deps are the tasks this one waits for (dependentTasks plus data producers), sorted.
	Deps      []string
	Image     string
	Command   []string
	Args      []string
	Env       []string // NAME=value
	Inputs    map[string]*Input
	Artifacts map[string]string // input artifact name → "producer/outputKey"
	// OutputParams and OutputArtifacts are the component's declared outputs.
	OutputParams    map[string]*ParamDef
	OutputArtifacts []string
	InputDefs       map[string]*ParamDef
	Retry           Retry
}

// Input is where an input parameter's value comes from: exactly one of
// Constant, RootParam, or Producer/Key is set.
type Input struct {
	Constant   any
	HasConst   bool
	RootParam  string
	Producer   string
	ProducerOf string // output parameter key of Producer
}

// Retry is a task's retry policy (PipelineTaskSpec.RetryPolicy): at most
// MaxRetries retries after the first attempt, waiting Backoff, multiplied by
// Factor after each retry, capped at MaxBackoff.
type Retry struct {
	MaxRetries int
	Backoff    time.Duration
	Factor     float64
	MaxBackoff time.Duration
}

// Delay is the wait before retry number n (1-based).
func (r Retry) Delay(n int) time.Duration {
	d := float64(r.Backoff)
	for i := 1; i < n; i++ {
		d *= r.Factor
	}
	if r.MaxBackoff > 0 && d > float64(r.MaxBackoff) {
		return r.MaxBackoff
	}
	return time.Duration(d)
}

// Task returns the task named name, or nil.
func (p *Plan) Task(name string) *Task { return p.byName[name] }

// SplitDocuments returns the YAML documents of a multi-document stream
// (separated by lines that are exactly "---"), empty ones dropped.
func SplitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(cur.Bytes())) > 0 {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

// ParseSpec parses the pipeline spec document of a composed KFP v2 IR YAML
// (the first document; a second one, the platform spec, is ignored locally).
func ParseSpec(data []byte) (*pipelinespec.PipelineSpec, error) {
	docs := SplitDocuments(data)
	if len(docs) == 0 {
		return nil, fmt.Errorf("pipeline spec is empty")
	}
	js, err := yaml.YAMLToJSON(docs[0])
	if err != nil {
		return nil, fmt.Errorf("pipeline spec: %w", err)
	}
	var spec pipelinespec.PipelineSpec
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(js, &spec); err != nil {
		return nil, fmt.Errorf("pipeline spec is not a KFP v2 PipelineSpec: %w", err)
	}
	return &spec, nil
}

// Compile parses a composed IR and plans its execution. Errors name the
// task, component or executor that is wrong; what the local runner does not
// support (nested DAGs, iterators, conditions, non-container executors) is
// an error too.
func Compile(data []byte) (*Plan, error) {
	spec, err := ParseSpec(data)
	if err != nil {
		return nil, err
	}
	root := spec.GetRoot()
	if root.GetDag() == nil {
		return nil, fmt.Errorf("pipeline spec has no root DAG")
	}
	var deploy pipelinespec.PipelineDeploymentConfig
	if ds := spec.GetDeploymentSpec(); ds != nil {
		js, err := protojson.Marshal(ds)
		if err != nil {
			return nil, err
		}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(js, &deploy); err != nil {
			return nil, fmt.Errorf("deploymentSpec: %w", err)
		}
	}
	p := &Plan{Name: spec.GetPipelineInfo().GetName(), Params: paramDefs(root.GetInputDefinitions().GetParameters()), byName: map[string]*Task{}}
	names := make([]string, 0, len(root.GetDag().GetTasks()))
	for n := range root.GetDag().GetTasks() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ts := root.GetDag().GetTasks()[n]
		t, err := compileTask(n, ts, spec, &deploy)
		if err != nil {
			return nil, err
		}
		p.byName[n] = t
	}
	for _, n := range names {
		t := p.byName[n]
		for _, d := range t.Deps {
			if p.byName[d] == nil {
				return nil, fmt.Errorf("task %q depends on unknown task %q", n, d)
			}
		}
		for in, src := range t.Inputs {
			if src.RootParam != "" && p.Params[src.RootParam] == nil {
				return nil, fmt.Errorf("task %q input %q takes pipeline parameter %q, which the root does not declare", n, in, src.RootParam)
			}
			if src.Producer != "" {
				prod := p.byName[src.Producer]
				if prod == nil || prod.OutputParams[src.ProducerOf] == nil {
					return nil, fmt.Errorf("task %q input %q takes output parameter %q of task %q, which does not exist", n, in, src.ProducerOf, src.Producer)
				}
			}
		}
		for in, src := range t.Artifacts {
			prod, key, _ := strings.Cut(src, "/")
			pt := p.byName[prod]
			if pt == nil || !contains(pt.OutputArtifacts, key) {
				return nil, fmt.Errorf("task %q input artifact %q takes output artifact %q of task %q, which does not exist", n, in, key, prod)
			}
		}
	}
	order, err := topo(p.byName, names)
	if err != nil {
		return nil, err
	}
	for _, n := range order {
		p.Tasks = append(p.Tasks, p.byName[n])
	}
	return p, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func paramDefs(in map[string]*pipelinespec.ComponentInputsSpec_ParameterSpec) map[string]*ParamDef {
	out := map[string]*ParamDef{}
	for n, ps := range in {
		d := &ParamDef{Name: n, Type: ps.GetParameterType().String(), Optional: ps.GetIsOptional()}
		if dv := ps.GetDefaultValue(); dv != nil {
			d.Default = dv.AsInterface()
		}
		out[n] = d
	}
	return out
}

func compileTask(n string, ts *pipelinespec.PipelineTaskSpec, spec *pipelinespec.PipelineSpec, deploy *pipelinespec.PipelineDeploymentConfig) (*Task, error) {
	if ts.GetArtifactIterator() != nil || ts.GetParameterIterator() != nil {
		return nil, fmt.Errorf("task %q: iterators (ParallelFor) are not supported by the local runner", n)
	}
	if ts.GetTriggerPolicy().GetCondition() != "" {
		return nil, fmt.Errorf("task %q: conditions (dsl.If) are not supported by the local runner", n)
	}
	compName := ts.GetComponentRef().GetName()
	comp := spec.GetComponents()[compName]
	if comp == nil {
		return nil, fmt.Errorf("task %q: component %q is not in the spec's components", n, compName)
	}
	if comp.GetDag() != nil {
		return nil, fmt.Errorf("task %q: component %q is a nested DAG, which the local runner does not support", n, compName)
	}
	label := comp.GetExecutorLabel()
	ex := deploy.GetExecutors()[label]
	if ex == nil {
		return nil, fmt.Errorf("task %q: executor %q of component %q is not in deploymentSpec.executors", n, label, compName)
	}
	c := ex.GetContainer()
	if c == nil {
		return nil, fmt.Errorf("task %q: executor %q is not a container executor; the local runner runs containers only", n, label)
	}
	if c.GetImage() == "" {
		return nil, fmt.Errorf("task %q: executor %q has no image", n, label)
	}
	t := &Task{
		Name: n, Component: compName, Image: c.GetImage(), Command: c.GetCommand(), Args: c.GetArgs(),
		Inputs: map[string]*Input{}, Artifacts: map[string]string{},
		InputDefs:    paramDefs(comp.GetInputDefinitions().GetParameters()),
		OutputParams: map[string]*ParamDef{},
	}
	for _, e := range c.GetEnv() {
		t.Env = append(t.Env, e.GetName()+"="+e.GetValue())
	}
	for on, os := range comp.GetOutputDefinitions().GetParameters() {
		t.OutputParams[on] = &ParamDef{Name: on, Type: os.GetParameterType().String()}
	}
	for on := range comp.GetOutputDefinitions().GetArtifacts() {
		t.OutputArtifacts = append(t.OutputArtifacts, on)
	}
	sort.Strings(t.OutputArtifacts)
	deps := map[string]bool{}
	for _, d := range ts.GetDependentTasks() {
		deps[d] = true
	}
	for in, ps := range ts.GetInputs().GetParameters() {
		src := &Input{}
		switch {
		case ps.GetComponentInputParameter() != "":
			src.RootParam = ps.GetComponentInputParameter()
		case ps.GetTaskOutputParameter() != nil:
			src.Producer = ps.GetTaskOutputParameter().GetProducerTask()
			src.ProducerOf = ps.GetTaskOutputParameter().GetOutputParameterKey()
			deps[src.Producer] = true
		case ps.GetRuntimeValue() != nil:
			rv := ps.GetRuntimeValue()
			switch {
			case rv.GetConstant() != nil:
				src.Constant, src.HasConst = rv.GetConstant().AsInterface(), true
			case rv.GetConstantValue() != nil:
				v := rv.GetConstantValue()
				switch x := v.GetValue().(type) {
				case *pipelinespec.Value_IntValue:
					src.Constant = float64(x.IntValue)
				case *pipelinespec.Value_DoubleValue:
					src.Constant = x.DoubleValue
				case *pipelinespec.Value_StringValue:
					src.Constant = x.StringValue
				}
				src.HasConst = true
			case rv.GetRuntimeParameter() != "":
				src.RootParam = rv.GetRuntimeParameter()
			default:
				return nil, fmt.Errorf("task %q input %q: empty runtimeValue", n, in)
			}
		default:
			return nil, fmt.Errorf("task %q input %q: unsupported parameter source (task final status and expression selectors are not supported locally)", n, in)
		}
		t.Inputs[in] = src
	}
	for in, as := range ts.GetInputs().GetArtifacts() {
		toa := as.GetTaskOutputArtifact()
		if toa == nil {
			return nil, fmt.Errorf("task %q input artifact %q: only task output artifacts are supported locally", n, in)
		}
		t.Artifacts[in] = toa.GetProducerTask() + "/" + toa.GetOutputArtifactKey()
		deps[toa.GetProducerTask()] = true
	}
	for d := range deps {
		t.Deps = append(t.Deps, d)
	}
	sort.Strings(t.Deps)
	if rp := ts.GetRetryPolicy(); rp != nil {
		t.Retry = Retry{MaxRetries: int(rp.GetMaxRetryCount()), Factor: rp.GetBackoffFactor(), MaxBackoff: time.Hour}
		if t.Retry.Factor == 0 {
			t.Retry.Factor = 2
		}
		if d := rp.GetBackoffDuration(); d != nil {
			t.Retry.Backoff = d.AsDuration()
		}
		if d := rp.GetBackoffMaxDuration(); d != nil && d.AsDuration() > 0 && d.AsDuration() < time.Hour {
			t.Retry.MaxBackoff = d.AsDuration()
		}
	}
	return t, nil
}

// topo orders tasks so that each comes after its deps (Kahn's algorithm,
// ties broken by name); a cycle is an error naming its tasks.
func topo(tasks map[string]*Task, names []string) ([]string, error) {
	indeg := map[string]int{}
	users := map[string][]string{}
	for _, n := range names {
		indeg[n] = len(tasks[n].Deps)
		for _, d := range tasks[n].Deps {
			users[d] = append(users[d], n)
		}
	}
	var ready, order []string
	for _, n := range names {
		if indeg[n] == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		sort.Strings(ready)
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, u := range users[n] {
			indeg[u]--
			if indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if len(order) != len(names) {
		var cyc []string
		for _, n := range names {
			if indeg[n] > 0 {
				cyc = append(cyc, n)
			}
		}
		return nil, fmt.Errorf("tasks %s depend on each other in a cycle", strings.Join(cyc, ", "))
	}
	return order, nil
}

// jsonString renders v as JSON (used for LIST, STRUCT and output files).
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
