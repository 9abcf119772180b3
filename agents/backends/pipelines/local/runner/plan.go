package runner

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
)

// UnsupportedError is a spec feature the local runner cannot run. Its text
// is "not supported by the local runner: <feature> (task <name>)", the
// verdict the pipeline stage gives at upload and plan time.
type UnsupportedError struct {
	// Feature names what is not supported, in KFP's terms.
	Feature string
	// Task is the task's path ("" for the pipeline as a whole).
	Task string
}

func (e *UnsupportedError) Error() string {
	if e.Task == "" {
		return "not supported by the local runner: " + e.Feature
	}
	return fmt.Sprintf("not supported by the local runner: %s (task %s)", e.Feature, e.Task)
}

// Plan is a compiled pipeline: every component reachable from the root, with
// the DAGs' tasks in a deterministic topological order.
type Plan struct {
	Name string
	IR   *IR
	Root *Component
	// Params are the root component's input parameters by name.
	Params map[string]*ParamDef
	// Components by name (the root as "root").
	Components map[string]*Component
}

// ParamDef is a declared input or output parameter.
type ParamDef struct {
	Name string
	// Type is a KFP ParameterType name: STRING, NUMBER_INTEGER,
	// NUMBER_DOUBLE, BOOLEAN, LIST, STRUCT or TASK_FINAL_STATUS.
	Type     string
	Default  any // JSON value; nil when there is none
	Optional bool
}

// ArtifactDef is a declared input or output artifact.
type ArtifactDef struct {
	Name          string
	SchemaTitle   string
	SchemaVersion string
	IsList        bool
	Optional      bool
}

// Component is a compiled ComponentSpec: a DAG, a container executor or an
// importer.
type Component struct {
	Name string
	Spec *pipelinespec.ComponentSpec
	// InParams, InArtifacts, OutParams, OutArtifacts are the definitions.
	InParams     map[string]*ParamDef
	InArtifacts  map[string]*ArtifactDef
	OutParams    map[string]*ParamDef
	OutArtifacts map[string]*ArtifactDef
	// Tasks are a DAG's tasks in topological order (nil for executors).
	Tasks  []*TaskNode
	byName map[string]*TaskNode
	// Container or Importer is set for an executor component.
	Executor  string
	Container *pipelinespec.PipelineDeploymentConfig_PipelineContainerSpec
	Importer  *pipelinespec.PipelineDeploymentConfig_ImporterSpec
	// Resources are the container's limits, Kube its kubernetes platform config.
	Resources Resources
	Kube      *KubeConfig
}

// IsDAG reports whether the component is a DAG.
func (c *Component) IsDAG() bool { return c.Tasks != nil || c.Spec.GetDag() != nil }

// Task returns the DAG task named name, or nil.
func (c *Component) Task(name string) *TaskNode { return c.byName[name] }

// TaskNode is a compiled PipelineTaskSpec of a DAG.
type TaskNode struct {
	Name        string
	DisplayName string
	Spec        *pipelinespec.PipelineTaskSpec
	Comp        *Component
	// Deps are the sibling tasks this one waits for (dependentTasks and data producers), sorted.
	Deps []string
	// AllCompleted is the ALL_UPSTREAM_TASKS_COMPLETED trigger strategy
	// (exit handlers, ignore_upstream_failure).
	AllCompleted bool
	Condition    *Condition
	Retry        Retry
	Cache        bool
	// CacheKey is cachingOptions.cacheKey (KFP 2.14+), "" when unset.
	CacheKey string
	// Selectors are compiled parameterExpressionSelector expressions by input name.
	Selectors map[string]*Selector
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

// Compile loads and plans a composed IR. Errors name the task, component
// or executor that is wrong; what the local runner cannot run is an
// *UnsupportedError.
func Compile(data []byte) (*Plan, error) {
	ir, err := LoadIR(data)
	if err != nil {
		return nil, err
	}
	return CompileIR(ir)
}

// CompileIR plans a loaded IR.
func CompileIR(ir *IR) (*Plan, error) {
	spec := ir.Spec
	if spec.GetRoot().GetDag() == nil {
		return nil, errors.New("pipeline spec has no root DAG")
	}
	if pc := ir.PipelineConfig; pc != nil && pc["workspace"] != nil {
		return nil, &UnsupportedError{Feature: "pipeline workspaces (platforms.kubernetes.pipelineConfig.workspace)"}
	}
	c := &compiler{ir: ir, plan: &Plan{Name: spec.GetPipelineInfo().GetName(), IR: ir, Components: map[string]*Component{}}, busy: map[string]bool{}}
	root, err := c.component("root", spec.GetRoot(), pathValue(ir.Raw, "root"), "", 0)
	if err != nil {
		return nil, err
	}
	c.plan.Root = root
	c.plan.Params = root.InParams
	return c.plan, nil
}

type compiler struct {
	ir   *IR
	plan *Plan
	busy map[string]bool // components being compiled (recursion check)
}

func pathValue(v any, keys ...string) any { return jpath(v, keys...) }

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

func artifactDefs(in map[string]*pipelinespec.ComponentInputsSpec_ArtifactSpec) map[string]*ArtifactDef {
	out := map[string]*ArtifactDef{}
	for n, as := range in {
		out[n] = &ArtifactDef{Name: n, SchemaTitle: as.GetArtifactType().GetSchemaTitle(), SchemaVersion: as.GetArtifactType().GetSchemaVersion(), IsList: as.GetIsArtifactList(), Optional: as.GetIsOptional()}
	}
	return out
}

func (c *compiler) component(name string, cs *pipelinespec.ComponentSpec, raw any, taskPath string, depth int) (*Component, error) {
	if comp := c.plan.Components[name]; comp != nil {
		return comp, nil
	}
	if depth > MaxDAGDepth {
		return nil, fmt.Errorf("task %s: DAG components nest more than %d levels deep", taskPath, MaxDAGDepth)
	}
	if c.busy[name] {
		return nil, fmt.Errorf("task %s: component %q contains itself", taskPath, name)
	}
	c.busy[name] = true
	defer delete(c.busy, name)
	comp := &Component{Name: name, Spec: cs,
		InParams: paramDefs(cs.GetInputDefinitions().GetParameters()), InArtifacts: artifactDefs(cs.GetInputDefinitions().GetArtifacts()),
		OutParams: map[string]*ParamDef{}, OutArtifacts: map[string]*ArtifactDef{}}
	for n, ps := range cs.GetOutputDefinitions().GetParameters() {
		comp.OutParams[n] = &ParamDef{Name: n, Type: ps.GetParameterType().String()}
	}
	for n, as := range cs.GetOutputDefinitions().GetArtifacts() {
		comp.OutArtifacts[n] = &ArtifactDef{Name: n, SchemaTitle: as.GetArtifactType().GetSchemaTitle(), SchemaVersion: as.GetArtifactType().GetSchemaVersion(), IsList: as.GetIsArtifactList()}
	}
	for n, p := range pathMap(raw, "inputDefinitions", "parameters") {
		if pathString(p, "parameterType") == "TASK_CONFIG" {
			return nil, &UnsupportedError{Feature: fmt.Sprintf("dsl.TaskConfig input %q", n), Task: orRoot(taskPath)}
		}
	}
	switch {
	case cs.GetDag() != nil:
		if err := c.dag(comp, raw, taskPath, depth); err != nil {
			return nil, err
		}
	case cs.GetExecutorLabel() != "":
		if err := c.executor(comp, taskPath); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("task %s: component %q has neither a dag nor an executorLabel", orRoot(taskPath), name)
	}
	c.plan.Components[name] = comp
	return comp, nil
}

func orRoot(p string) string {
	if p == "" {
		return "root"
	}
	return p
}

func pathMap(v any, keys ...string) map[string]any {
	m, _ := jpath(v, keys...).(map[string]any)
	return m
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}

func (c *compiler) dag(comp *Component, raw any, taskPath string, depth int) error {
	tasks := comp.Spec.GetDag().GetTasks()
	comp.byName = map[string]*TaskNode{}
	names := make([]string, 0, len(tasks))
	for n := range tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	rawTasks := pathMap(raw, "dag", "tasks")
	for _, n := range names {
		ts := tasks[n]
		tp := join(taskPath, n)
		refName := ts.GetComponentRef().GetName()
		cs := c.ir.Spec.GetComponents()[refName]
		if cs == nil {
			return fmt.Errorf("task %s: component %q is not in the spec's components", tp, refName)
		}
		child, err := c.component(refName, cs, pathValue(c.ir.Raw, "components", refName), tp, depth+1)
		if err != nil {
			return err
		}
		node := &TaskNode{Name: n, DisplayName: ts.GetTaskInfo().GetName(), Spec: ts, Comp: child, Cache: ts.GetCachingOptions().GetEnableCache(),
			CacheKey: pathString(rawTasks[n], "cachingOptions", "cacheKey"), Selectors: map[string]*Selector{}}
		if node.DisplayName == "" {
			node.DisplayName = n
		}
		node.AllCompleted = ts.GetTriggerPolicy().GetStrategy() == pipelinespec.PipelineTaskSpec_TriggerPolicy_ALL_UPSTREAM_TASKS_COMPLETED
		if cond := ts.GetTriggerPolicy().GetCondition(); cond != "" {
			if node.Condition, err = CompileCondition(cond); err != nil {
				return fmt.Errorf("task %s: condition %q: %w", tp, cond, err)
			}
		}
		if ts.GetParameterIterator() != nil && ts.GetArtifactIterator() != nil {
			return fmt.Errorf("task %s: both a parameterIterator and an artifactIterator", tp)
		}
		deps := map[string]bool{}
		for _, d := range ts.GetDependentTasks() {
			deps[d] = true
		}
		for in, ps := range ts.GetInputs().GetParameters() {
			switch {
			case ps.GetTaskOutputParameter() != nil:
				deps[ps.GetTaskOutputParameter().GetProducerTask()] = true
			case ps.GetTaskFinalStatus() != nil:
				deps[ps.GetTaskFinalStatus().GetProducerTask()] = true
			case ps.GetComponentInputParameter() != "", ps.GetRuntimeValue() != nil:
			default:
				return fmt.Errorf("task %s input %q: no parameter source", tp, in)
			}
			if sel := ps.GetParameterExpressionSelector(); sel != "" {
				s, err := CompileSelector(sel)
				if err != nil {
					return fmt.Errorf("task %s input %q: parameterExpressionSelector %q: %w", tp, in, sel, err)
				}
				node.Selectors[in] = s
			}
		}
		for in, as := range ts.GetInputs().GetArtifacts() {
			switch {
			case as.GetTaskOutputArtifact() != nil:
				deps[as.GetTaskOutputArtifact().GetProducerTask()] = true
			case as.GetComponentInputArtifact() != "":
			default:
				return fmt.Errorf("task %s input artifact %q: no artifact source", tp, in)
			}
		}
		delete(deps, "")
		for d := range deps {
			if tasks[d] == nil {
				return fmt.Errorf("task %s depends on task %q, which is not in its DAG", tp, d)
			}
			node.Deps = append(node.Deps, d)
		}
		sort.Strings(node.Deps)
		if rp := ts.GetRetryPolicy(); rp != nil {
			node.Retry = Retry{MaxRetries: int(rp.GetMaxRetryCount()), Factor: rp.GetBackoffFactor(), MaxBackoff: time.Hour}
			if node.Retry.Factor == 0 {
				node.Retry.Factor = 2
			}
			if d := rp.GetBackoffDuration(); d != nil {
				node.Retry.Backoff = d.AsDuration()
			}
			if d := rp.GetBackoffMaxDuration(); d != nil && d.AsDuration() > 0 && d.AsDuration() < time.Hour {
				node.Retry.MaxBackoff = d.AsDuration()
			}
		}
		comp.byName[n] = node
	}
	order, err := topo(comp.byName, names, taskPath)
	if err != nil {
		return err
	}
	comp.Tasks = make([]*TaskNode, 0, len(order))
	for _, n := range order {
		comp.Tasks = append(comp.Tasks, comp.byName[n])
	}
	return c.checkDAG(comp, taskPath)
}

// checkDAG checks the references of a DAG's tasks and outputs.
func (c *compiler) checkDAG(comp *Component, taskPath string) error {
	for _, t := range comp.Tasks {
		tp := join(taskPath, t.Name)
		for in, ps := range t.Spec.GetInputs().GetParameters() {
			if ci := ps.GetComponentInputParameter(); ci != "" && comp.InParams[ci] == nil && !iteratorItem(t, ci) {
				return fmt.Errorf("task %s input %q takes input parameter %q, which its DAG does not declare", tp, in, ci)
			}
			if top := ps.GetTaskOutputParameter(); top != nil {
				prod := comp.byName[top.GetProducerTask()]
				if prod.Comp.OutParams[top.GetOutputParameterKey()] == nil {
					return fmt.Errorf("task %s input %q takes output parameter %q of task %q, which does not exist", tp, in, top.GetOutputParameterKey(), top.GetProducerTask())
				}
			}
		}
		for in, as := range t.Spec.GetInputs().GetArtifacts() {
			if ci := as.GetComponentInputArtifact(); ci != "" && comp.InArtifacts[ci] == nil {
				return fmt.Errorf("task %s input artifact %q takes input artifact %q, which its DAG does not declare", tp, in, ci)
			}
			if toa := as.GetTaskOutputArtifact(); toa != nil {
				prod := comp.byName[toa.GetProducerTask()]
				if prod.Comp.OutArtifacts[toa.GetOutputArtifactKey()] == nil {
					return fmt.Errorf("task %s input artifact %q takes output artifact %q of task %q, which does not exist", tp, in, toa.GetOutputArtifactKey(), toa.GetProducerTask())
				}
			}
		}
		if it := t.Spec.GetParameterIterator(); it != nil {
			if it.GetItems().GetInputParameter() == "" && it.GetItems().GetRaw() == "" {
				return fmt.Errorf("task %s: parameterIterator has no items", tp)
			}
			if ip := it.GetItems().GetInputParameter(); ip != "" && t.Spec.GetInputs().GetParameters()[ip] == nil {
				return fmt.Errorf("task %s: parameterIterator items %q is not an input of the task", tp, ip)
			}
		}
		if it := t.Spec.GetArtifactIterator(); it != nil {
			if ia := it.GetItems().GetInputArtifact(); t.Spec.GetInputs().GetArtifacts()[ia] == nil {
				return fmt.Errorf("task %s: artifactIterator items %q is not an input artifact of the task", tp, ia)
			}
		}
	}
	outs := comp.Spec.GetDag().GetOutputs()
	for name, ps := range outs.GetParameters() {
		var sels []*pipelinespec.DagOutputsSpec_ParameterSelectorSpec
		if v := ps.GetValueFromParameter(); v != nil {
			sels = append(sels, v)
		}
		sels = append(sels, ps.GetValueFromOneof().GetParameterSelectors()...)
		if len(sels) == 0 {
			return fmt.Errorf("DAG %s output parameter %q selects nothing", orRoot(taskPath), name)
		}
		for _, s := range sels {
			prod := comp.byName[s.GetProducerSubtask()]
			if prod == nil || prod.Comp.OutParams[s.GetOutputParameterKey()] == nil {
				return fmt.Errorf("DAG %s output parameter %q selects output %q of task %q, which does not exist", orRoot(taskPath), name, s.GetOutputParameterKey(), s.GetProducerSubtask())
			}
		}
	}
	for name, as := range outs.GetArtifacts() {
		if len(as.GetArtifactSelectors()) == 0 {
			return fmt.Errorf("DAG %s output artifact %q selects nothing", orRoot(taskPath), name)
		}
		for _, s := range as.GetArtifactSelectors() {
			prod := comp.byName[s.GetProducerSubtask()]
			if prod == nil || prod.Comp.OutArtifacts[s.GetOutputArtifactKey()] == nil {
				return fmt.Errorf("DAG %s output artifact %q selects artifact %q of task %q, which does not exist", orRoot(taskPath), name, s.GetOutputArtifactKey(), s.GetProducerSubtask())
			}
		}
	}
	return nil
}

func iteratorItem(t *TaskNode, name string) bool {
	return t.Spec.GetParameterIterator().GetItemInput() == name
}

// argostub images are KFP's kubernetes CreatePVC/DeletePVC tasks: they run
// no container.
const (
	imageCreatePVC = "argostub/createpvc"
	imageDeletePVC = "argostub/deletepvc"
)

func (c *compiler) executor(comp *Component, taskPath string) error {
	label := comp.Spec.GetExecutorLabel()
	tp := orRoot(taskPath)
	ex := c.ir.Deploy.GetExecutors()[label]
	if ex == nil {
		return fmt.Errorf("task %s: executor %q of component %q is not in deploymentSpec.executors", tp, label, comp.Name)
	}
	comp.Executor = label
	rawEx := pathValue(c.ir.Raw, "deploymentSpec", "executors", label)
	switch {
	case ex.GetContainer() != nil:
		ctr := ex.GetContainer()
		if ctr.GetImage() == "" {
			return fmt.Errorf("task %s: executor %q has no image", tp, label)
		}
		comp.Container = ctr
		var err error
		if comp.Resources, err = resourcesOf(ctr, pathMap(rawEx, "container", "resources")); err != nil {
			return fmt.Errorf("task %s: executor %q: %w", tp, label, err)
		}
		all := append(append([]string{}, ctr.GetCommand()...), ctr.GetArgs()...)
		for _, a := range all {
			if strings.Contains(a, "{{$.workspace_path}}") {
				return &UnsupportedError{Feature: "pipeline workspaces ({{$.workspace_path}})", Task: tp}
			}
		}
		if err := checkArgs(all); err != nil {
			return &UnsupportedError{Feature: err.Error(), Task: tp}
		}
	case ex.GetImporter() != nil:
		comp.Importer = ex.GetImporter()
		if b, _ := jpath(rawEx, "importer", "downloadToWorkspace").(bool); b {
			return &UnsupportedError{Feature: "importer downloadToWorkspace (pipeline workspaces)", Task: tp}
		}
		if u := comp.Importer.GetArtifactUri().GetConstant().GetStringValue(); u != "" {
			if err := importableURI(u); err != nil {
				return &UnsupportedError{Feature: err.Error(), Task: tp}
			}
		}
	case ex.GetResolver() != nil:
		return &UnsupportedError{Feature: "resolver executors", Task: tp}
	default:
		return &UnsupportedError{Feature: "custom job executors (Google Cloud only)", Task: tp}
	}
	kube, err := parseKube(c.ir.Kubernetes[label], tp)
	if err != nil {
		return err
	}
	comp.Kube = kube
	return nil
}

// topo orders tasks so that each comes after its deps (Kahn's algorithm,
// ties broken by name); a cycle is an error naming its tasks.
func topo(tasks map[string]*TaskNode, names []string, taskPath string) ([]string, error) {
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
				cyc = append(cyc, join(taskPath, n))
			}
		}
		return nil, fmt.Errorf("tasks %s depend on each other in a cycle", strings.Join(cyc, ", "))
	}
	return order, nil
}
