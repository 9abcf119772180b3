package pipelinespec

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	ps "github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	"google.golang.org/protobuf/encoding/protojson"
)

// Problem is one thing wrong with a spec, naming where it is.
type Problem struct {
	// Task is the task name ("" when the problem is not about one task);
	// Executor the executor label ("" when not about one executor).
	Task, Executor string
	// Problem says what is wrong; Fix what to do about it.
	Problem, Fix string
}

func (p *Problem) String() string {
	var where []string
	if p.Task != "" {
		where = append(where, "task "+p.Task)
	}
	if p.Executor != "" {
		where = append(where, "executor "+p.Executor)
	}
	s := p.Problem
	if len(where) > 0 {
		s = strings.Join(where, ", ") + ": " + s
	}
	if p.Fix != "" {
		s += " (" + p.Fix + ")"
	}
	return s
}

// ValidationError lists every problem found in a spec, sorted. Match it with
// errors.As; the stage maps it to exit code 2.
type ValidationError struct {
	Problems []*Problem
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.String()
	}
	if len(msgs) == 1 {
		return "invalid pipeline spec: " + msgs[0]
	}
	return "invalid pipeline spec:\n  " + strings.Join(msgs, "\n  ")
}

type problems []*Problem

func (ps *problems) add(task, exec, fix, format string, args ...any) {
	*ps = append(*ps, &Problem{Task: task, Executor: exec, Problem: fmt.Sprintf(format, args...), Fix: fix})
}

func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
	return &ValidationError{Problems: ps}
}

// newerFields are the fields KFP's IR protos gained after the pinned
// github.com/kubeflow/pipelines/api v0.0.0-20230331215358-758c91f76784
// (api/v2alpha1/pipeline_spec.proto of KFP 2.5 to 2.14 and later): each
// with the JSON path, "*" for any map key, of the objects where newer KFP
// documents it. They are accepted there (and reach the server unchanged)
// but left out of the strict check against the pinned protos; the same
// name anywhere else is still an unknown field.
var newerFields = []struct{ at, field string }{
	// ComponentInputsSpec.ParameterSpec.literals (dsl.Literal inputs).
	{"root.inputDefinitions.parameters.*", "literals"},
	{"components.*.inputDefinitions.parameters.*", "literals"},
	// ComponentSpec.single_platform_specs, task_config_passthroughs.
	{"components.*", "singlePlatformSpecs"},
	{"components.*", "taskConfigPassthroughs"},
	// PipelineTaskSpec.CachingOptions.cache_key.
	{"root.dag.tasks.*.cachingOptions", "cacheKey"},
	{"components.*.dag.tasks.*.cachingOptions", "cacheKey"},
	// ImporterSpec.download_to_workspace (KFP 2.14 workspaces).
	{"deploymentSpec.executors.*.importer", "downloadToWorkspace"},
	// ResourceSpec string quantities (KFP SDK 2.5+) and accelerator fields.
	{"deploymentSpec.executors.*.container.resources", "resourceCpuLimit"},
	{"deploymentSpec.executors.*.container.resources", "resourceCpuRequest"},
	{"deploymentSpec.executors.*.container.resources", "resourceMemoryLimit"},
	{"deploymentSpec.executors.*.container.resources", "resourceMemoryRequest"},
	{"deploymentSpec.executors.*.container.resources.accelerator", "resourceType"},
	{"deploymentSpec.executors.*.container.resources.accelerator", "resourceCount"},
	// SinglePlatformSpec.pipelineConfig (workspaces, TTLs), config, platform.
	{"platforms.*", "pipelineConfig"},
	{"platforms.*", "config"},
	{"platforms.*", "platform"},
}

// withoutNewer returns a copy of tree (the document at JSON path at)
// without the newerFields.
func withoutNewer(tree any, at []string) any {
	switch x := tree.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			if isNewer(at, k) {
				continue
			}
			out[k] = withoutNewer(v, append(at[:len(at):len(at)], k))
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = withoutNewer(v, append(at[:len(at):len(at)], "[]"))
		}
		return out
	}
	return tree
}

func isNewer(at []string, field string) bool {
	for _, nf := range newerFields {
		if nf.field != field {
			continue
		}
		pat := strings.Split(nf.at, ".")
		if len(pat) != len(at) {
			continue
		}
		match := true
		for i := range pat {
			if pat[i] != "*" && pat[i] != at[i] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// Parse checks that d unmarshals strictly into the pinned KFP IR protos
// (pipelinespec.PipelineSpec, its deploymentSpec into
// PipelineDeploymentConfig, the platform document into PlatformSpec) and
// returns them.
func (d *Document) Parse() (*ps.PipelineSpec, *ps.PipelineDeploymentConfig, *ps.PlatformSpec, error) {
	strict := protojson.UnmarshalOptions{}
	specTree := withoutNewer(d.Spec, nil).(map[string]any)
	js, err := Canonical(specTree)
	if err != nil {
		return nil, nil, nil, err
	}
	spec := &ps.PipelineSpec{}
	if err := strict.Unmarshal(js, spec); err != nil {
		return nil, nil, nil, &ValidationError{Problems: []*Problem{{Problem: "not a KFP v2 PipelineSpec: " + err.Error(), Fix: "compile the pipeline with the KFP v2 compiler"}}}
	}
	dep := &ps.PipelineDeploymentConfig{}
	if ds, ok := specTree["deploymentSpec"]; ok {
		djs, err := Canonical(ds)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := strict.Unmarshal(djs, dep); err != nil {
			return nil, nil, nil, &ValidationError{Problems: []*Problem{{Problem: "deploymentSpec is not a KFP PipelineDeploymentConfig: " + err.Error()}}}
		}
	}
	var plat *ps.PlatformSpec
	if d.Platform != nil {
		pjs, err := Canonical(withoutNewer(d.Platform, nil))
		if err != nil {
			return nil, nil, nil, err
		}
		plat = &ps.PlatformSpec{}
		if err := strict.Unmarshal(pjs, plat); err != nil {
			return nil, nil, nil, &ValidationError{Problems: []*Problem{{Problem: "document 2 is not a KFP PlatformSpec: " + err.Error()}}}
		}
	}
	return spec, dep, plat, nil
}

// dagOf is one DAG of the spec: the root or a DAG component.
type dagOf struct {
	// owner is "root" or the DAG component's name.
	owner  string
	inputs *ps.ComponentInputsSpec
	dag    *ps.DagSpec
}

// check validates the semantics the protos cannot: every task's component
// and executor exist, each DAG is acyclic, every input is bound, every
// placeholder is well formed and names a declared input or output.
func check(doc *Document, spec *ps.PipelineSpec, dep *ps.PipelineDeploymentConfig) error {
	var pr problems
	checkHeader(&pr, spec)
	comps := spec.GetComponents()
	execs := dep.GetExecutors()
	dags := []dagOf{{owner: "root", inputs: spec.GetRoot().GetInputDefinitions(), dag: spec.GetRoot().GetDag()}}
	if spec.GetRoot().GetDag() == nil {
		pr.add("", "", "compile the pipeline with the KFP v2 compiler", "root has no dag")
	}
	for _, name := range sortedKeys(comps) {
		if c := comps[name]; c.GetDag() != nil {
			dags = append(dags, dagOf{owner: name, inputs: c.GetInputDefinitions(), dag: c.GetDag()})
		}
	}
	// tasksOf maps an executor label to the tasks that run it.
	tasksOf := map[string][]string{}
	for _, d := range dags {
		tasks := d.dag.GetTasks()
		for _, tn := range sortedKeys(tasks) {
			t := tasks[tn]
			cn := t.GetComponentRef().GetName()
			c, ok := comps[cn]
			if !ok {
				pr.add(tn, "", "add the component or fix componentRef.name", "component %q does not exist in components", cn)
				continue
			}
			if el := c.GetExecutorLabel(); el != "" {
				tasksOf[el] = append(tasksOf[el], tn)
				if _, ok := execs[el]; !ok {
					pr.add(tn, el, "add it to deploymentSpec.executors or fix the component's executorLabel", "executor %q of component %q does not exist in deploymentSpec.executors", el, cn)
				}
			}
			checkInputs(&pr, d, tasks, tn, t, c, comps, referenced(doc, t, c))
		}
		checkAcyclic(&pr, d.owner, tasks)
	}
	for _, el := range sortedKeys(execs) {
		ctr := execs[el].GetContainer()
		if ctr == nil {
			continue
		}
		users := tasksOf[el]
		task := strings.Join(users, ", ")
		var usedBy []*ps.ComponentSpec
		for _, cn := range sortedKeys(comps) {
			if comps[cn].GetExecutorLabel() == el {
				usedBy = append(usedBy, comps[cn])
			}
		}
		for _, s := range append(append([]string{}, ctr.GetCommand()...), ctr.GetArgs()...) {
			phs, err := ParsePlaceholders(s)
			if err != nil {
				pr.add(task, el, placeholderForms, "%v", err)
				continue
			}
			for _, p := range phs {
				for _, c := range usedBy {
					if p.Kind == KindInputArtifact && p.Attr == "" && declares(c, p) && !c.GetInputDefinitions().GetArtifacts()[p.Name].GetIsArtifactList() {
						pr.add(task, el, "add .path, .uri or .metadata, or declare the input as a list of artifacts (isArtifactList)", "placeholder %s names input artifact %q whole, which only a list of artifacts takes", p.Raw, p.Name)
					}
					if !declares(c, p) {
						pr.add(task, el, "declare it in the component's definitions or fix the name", "placeholder %s names %s %q that the component does not declare", p.Raw, strings.ReplaceAll(p.Kind, "-", " "), p.Name)
					}
				}
			}
		}
	}
	return pr.err()
}

func declares(c *ps.ComponentSpec, p Placeholder) bool {
	switch p.Kind {
	case KindInputParameter:
		_, ok := c.GetInputDefinitions().GetParameters()[p.Name]
		return ok
	case KindInputArtifact:
		_, ok := c.GetInputDefinitions().GetArtifacts()[p.Name]
		return ok
	case KindOutputParameter:
		_, ok := c.GetOutputDefinitions().GetParameters()[p.Name]
		return ok
	case KindOutputArtifact:
		_, ok := c.GetOutputDefinitions().GetArtifacts()[p.Name]
		return ok
	}
	return true
}

// checkHeader checks what the KFP API server checks of every v2 spec
// (backend/src/apiserver/template/v2_template.go): schemaVersion 2.1.0 and
// a pipeline name.
func checkHeader(pr *problems, spec *ps.PipelineSpec) {
	if v := spec.GetSchemaVersion(); v != "2.1.0" {
		pr.add("", "", "compile the pipeline with the KFP SDK 2.x", "schemaVersion %q: the KFP API server accepts only 2.1.0", v)
	}
	name := spec.GetPipelineInfo().GetName()
	switch {
	case name == "":
		pr.add("", "", "name the pipeline (@dsl.pipeline(name=...)) and compile it again", "pipelineInfo.name is empty: the KFP API server refuses a pipeline without a name")
	case !pipelineNameRE.MatchString(name):
		pr.add("", "", "use lower case letters, digits, '-' and '.'", "pipelineInfo.name %q: the KFP API server wants lower case alphanumeric characters, '-' or '.'", name)
	}
}

// pipelineNameRE is the KFP API server's test of pipelineInfo.name (it
// is not anchored there either).
var pipelineNameRE = regexp.MustCompile(`[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`)

// resourceInputs are the extra task inputs the KFP SDK binds, as runtime
// constants, for a task's string resource fields (set_cpu_limit(…) with a
// pipeline channel; sdk/python/kfp/compiler/pipeline_spec_builder.py).
var resourceInputs = map[string]bool{"cpu_request": true, "cpu_limit": true, "memory_request": true,
	"memory_limit": true, "accelerator_type": true, "accelerator_count": true}

// referenced returns the input parameters that placeholders name in the
// task's own constant inputs (f-strings of the KFP SDK) and anywhere in its
// executor (container resources, env, importer metadata): the SDK binds
// them as extra task inputs that the component does not declare.
func referenced(doc *Document, t *ps.PipelineTaskSpec, c *ps.ComponentSpec) map[string]bool {
	out := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			phs, _ := ParsePlaceholders(x)
			for _, p := range phs {
				if p.Kind == KindInputParameter {
					out[p.Name] = true
				}
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, b := range t.GetInputs().GetParameters() {
		if cv := b.GetRuntimeValue().GetConstant(); cv != nil {
			walk(cv.AsInterface())
		}
	}
	if doc != nil && c.GetExecutorLabel() != "" {
		ds, _ := doc.Spec["deploymentSpec"].(map[string]any)
		ex, _ := ds["executors"].(map[string]any)
		walk(ex[c.GetExecutorLabel()])
	}
	return out
}

func checkInputs(pr *problems, d dagOf, tasks map[string]*ps.PipelineTaskSpec, tn string, t *ps.PipelineTaskSpec, c *ps.ComponentSpec, comps map[string]*ps.ComponentSpec, refs map[string]bool) {
	in := t.GetInputs()
	defs := c.GetInputDefinitions()
	cn := t.GetComponentRef().GetName()
	// A ParallelFor task's iterator fills its item input on each iteration.
	itemParam, itemArtifact := t.GetParameterIterator().GetItemInput(), t.GetArtifactIterator().GetItemInput()
	for _, pn := range sortedKeys(defs.GetParameters()) {
		pd := defs.GetParameters()[pn]
		if _, ok := in.GetParameters()[pn]; !ok && pn != itemParam && pd.GetDefaultValue() == nil && !pd.GetIsOptional() {
			pr.add(tn, "", "bind it in the task's inputs.parameters, or give the component input a default", "input parameter %q of component %q is not bound", pn, cn)
		}
	}
	for _, an := range sortedKeys(defs.GetArtifacts()) {
		if _, ok := in.GetArtifacts()[an]; !ok && an != itemArtifact && !defs.GetArtifacts()[an].GetIsOptional() {
			pr.add(tn, "", "bind it in the task's inputs.artifacts to a producer task's output", "input artifact %q of component %q is not bound", an, cn)
		}
	}
	producer := func(p, kind, key string, outputs func(*ps.ComponentSpec) bool) {
		pt, ok := tasks[p]
		if !ok {
			pr.add(tn, "", "name a task of the same DAG", "%s input %q takes its value from task %q, which does not exist in %s", kind, key, p, d.owner)
			return
		}
		if pc, ok := comps[pt.GetComponentRef().GetName()]; ok && !outputs(pc) {
			pr.add(tn, "", "name an output the producer's component declares", "%s input %q takes an output of task %q that its component %q does not declare", kind, key, p, pt.GetComponentRef().GetName())
		}
	}
	for _, pn := range sortedKeys(in.GetParameters()) {
		b := in.GetParameters()[pn]
		if _, ok := defs.GetParameters()[pn]; !ok && !refs[pn] && !(resourceInputs[pn] && b.GetRuntimeValue() != nil) {
			pr.add(tn, "", "remove the binding or declare the input", "binds input parameter %q that component %q does not declare and no placeholder of the task uses", pn, cn)
		}
		if cip := b.GetComponentInputParameter(); cip != "" {
			if _, ok := d.inputs.GetParameters()[cip]; !ok {
				pr.add(tn, "", "declare it in "+d.owner+".inputDefinitions", "input parameter %q is bound to %q, which %s does not declare", pn, cip, d.owner)
			}
		}
		if top := b.GetTaskOutputParameter(); top != nil {
			key := top.GetOutputParameterKey()
			producer(top.GetProducerTask(), "parameter", pn, func(pc *ps.ComponentSpec) bool {
				_, ok := pc.GetOutputDefinitions().GetParameters()[key]
				return ok
			})
		}
		if fs := b.GetTaskFinalStatus(); fs != nil {
			producer(fs.GetProducerTask(), "parameter", pn, func(*ps.ComponentSpec) bool { return true })
		}
	}
	for _, an := range sortedKeys(in.GetArtifacts()) {
		b := in.GetArtifacts()[an]
		if _, ok := defs.GetArtifacts()[an]; !ok {
			pr.add(tn, "", "remove the binding or declare the input", "binds input artifact %q that component %q does not declare", an, cn)
		}
		if cia := b.GetComponentInputArtifact(); cia != "" {
			if _, ok := d.inputs.GetArtifacts()[cia]; !ok {
				pr.add(tn, "", "declare it in "+d.owner+".inputDefinitions", "input artifact %q is bound to %q, which %s does not declare", an, cia, d.owner)
			}
		}
		if toa := b.GetTaskOutputArtifact(); toa != nil {
			key := toa.GetOutputArtifactKey()
			producer(toa.GetProducerTask(), "artifact", an, func(pc *ps.ComponentSpec) bool {
				_, ok := pc.GetOutputDefinitions().GetArtifacts()[key]
				return ok
			})
		}
	}
	for _, dt := range t.GetDependentTasks() {
		if _, ok := tasks[dt]; !ok {
			pr.add(tn, "", "name a task of the same DAG", "depends on task %q, which does not exist in %s", dt, d.owner)
		}
	}
}

// upstream returns the tasks t depends on: dependentTasks and the producers
// of its inputs, sorted, without duplicates.
func upstream(t *ps.PipelineTaskSpec) []string {
	set := map[string]bool{}
	for _, d := range t.GetDependentTasks() {
		set[d] = true
	}
	for _, b := range t.GetInputs().GetParameters() {
		if p := b.GetTaskOutputParameter().GetProducerTask(); p != "" {
			set[p] = true
		}
		if p := b.GetTaskFinalStatus().GetProducerTask(); p != "" {
			set[p] = true
		}
	}
	for _, b := range t.GetInputs().GetArtifacts() {
		if p := b.GetTaskOutputArtifact().GetProducerTask(); p != "" {
			set[p] = true
		}
	}
	return sortedKeys(set)
}

// checkAcyclic reports each cycle of a DAG once, as "a → b → a".
func checkAcyclic(pr *problems, owner string, tasks map[string]*ps.PipelineTaskSpec) {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, u := range upstream(tasks[n]) {
			if _, ok := tasks[u]; !ok {
				continue // reported by checkInputs
			}
			switch color[u] {
			case grey:
				i := len(stack) - 1
				for stack[i] != u {
					i--
				}
				cycle := append(append([]string{}, stack[i:]...), u)
				pr.add(u, "", "remove one of these dependencies", "dependency cycle in %s: %s", owner, strings.Join(cycle, " → "))
			case white:
				visit(u)
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range sortedKeys(tasks) {
		if color[n] == white {
			visit(n)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
