package pipelinespec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	ps "github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
)

// Composed is a pipeline spec ready to upload.
type Composed struct {
	// YAML is the composed spec: the PipelineSpec document, then, when there
	// is one, "---" and the PlatformSpec document; keys sorted.
	YAML []byte
	// Hash is the canonical content hash, "sha256:<hex>" (see Document.Hash).
	Hash string
	// Name is pipelineInfo.name.
	Name string
	// Images maps each container executor label to the image it runs
	// (pinned "host/repo@sha256:<hex>").
	Images map[string]string
	// Spec, Deployment and Platform are the parsed protos (Platform nil
	// when the file has no platform document).
	Spec       *ps.PipelineSpec
	Deployment *ps.PipelineDeploymentConfig
	Platform   *ps.PlatformSpec
	// Doc is the composed generic tree.
	Doc *Document
}

type options struct {
	maxBytes int
}

// Option changes Compose.
type Option func(*options)

// WithMaxBytes sets the size limit of the input and the composed spec
// (default MaxSpecBytes).
func WithMaxBytes(n int) Option { return func(o *options) { o.maxBytes = n } }

// Compose reads a KFP v2 IR spec, pins every container image to the digest
// in lock (matching the image's repository against
// LockedComponent.Repository, with or without registry host and tag), sets
// the resources res (keyed by root DAG task name) on each task's executor,
// validates the result and hashes it. Images already pinned by digest are
// kept as they are. Every problem is reported in one *ValidationError that
// names the task and executor.
func Compose(spec []byte, lock *records.ComponentsLock, res map[string]config.Resources, opts ...Option) (*Composed, error) {
	o := options{maxBytes: MaxSpecBytes}
	for _, opt := range opts {
		opt(&o)
	}
	doc, pspec, dep, err := loadChecked(spec, o.maxBytes)
	if err != nil {
		return nil, err
	}
	var pr problems
	images := pin(&pr, doc, pspec, dep, lock)
	applyResources(&pr, doc, pspec, res)
	if err := pr.err(); err != nil {
		return nil, err
	}
	c, err := finish(doc)
	if err != nil {
		return nil, err
	}
	if len(c.YAML) > o.maxBytes {
		return nil, tooLarge(len(c.YAML), o.maxBytes, "the composed spec")
	}
	c.Images = images
	return c, nil
}

// Validate loads, parses and checks a KFP v2 IR spec as Compose does, but
// pins no image and sets no resources: the verdict on the spec itself,
// by KFP's rules. Problems are one *ValidationError.
func Validate(spec []byte) (*Composed, error) {
	doc, _, _, err := loadChecked(spec, MaxSpecBytes)
	if err != nil {
		return nil, err
	}
	return finish(doc)
}

func tooLarge(n, max int, what string) error {
	return &ValidationError{Problems: []*Problem{{
		Problem: fmt.Sprintf("%s is %d bytes, over the %d-byte limit of the KFP API server's pipeline upload", what, n, max),
		Fix:     "shrink the pipeline: move large constants into artifacts or parameters",
	}}}
}

// finish parses and hashes a composed document.
// loadChecked loads, parses and checks spec (at most maxBytes), as both
// Compose and Validate begin; a spec that does not load is one
// *ValidationError.
func loadChecked(spec []byte, maxBytes int) (*Document, *ps.PipelineSpec, *ps.PipelineDeploymentConfig, error) {
	if len(spec) > maxBytes {
		return nil, nil, nil, tooLarge(len(spec), maxBytes, "the spec file")
	}
	doc, err := Load(spec)
	if err != nil {
		return nil, nil, nil, &ValidationError{Problems: []*Problem{{Problem: err.Error()}}}
	}
	pspec, dep, _, err := doc.Parse()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := check(doc, pspec, dep); err != nil {
		return nil, nil, nil, err
	}
	return doc, pspec, dep, nil
}

func finish(doc *Document) (*Composed, error) {
	pspec, dep, plat, err := doc.Parse()
	if err != nil {
		return nil, err
	}
	out, err := MarshalYAML(doc.Spec)
	if err != nil {
		return nil, err
	}
	if doc.Platform != nil {
		pl, err := MarshalYAML(doc.Platform)
		if err != nil {
			return nil, err
		}
		out = append(append(out, "---\n"...), pl...)
	}
	h, err := doc.Hash()
	if err != nil {
		return nil, err
	}
	return &Composed{YAML: out, Hash: h, Name: pspec.GetPipelineInfo().GetName(), Spec: pspec, Deployment: dep, Platform: plat, Doc: doc}, nil
}

// containerOf returns the generic container map of executor label.
func containerOf(doc *Document, label string) map[string]any {
	ds, _ := doc.Spec["deploymentSpec"].(map[string]any)
	ex, _ := ds["executors"].(map[string]any)
	e, _ := ex[label].(map[string]any)
	c, _ := e["container"].(map[string]any)
	return c
}

// ImageRepository returns the repository of an image reference without tag
// or digest ("reg:5000/djia30/train:v1" → "reg:5000/djia30/train") and
// whether it was pinned by digest.
func ImageRepository(image string) (repo string, pinned bool) {
	if i := strings.Index(image, "@"); i >= 0 {
		return image[:i], true
	}
	slash := strings.LastIndex(image, "/")
	if i := strings.LastIndex(image, ":"); i > slash {
		return image[:i], false
	}
	return image, false
}

// lookup finds the locked component of an image repository: an exact
// match of LockedComponent.Repository first, else one the repository ends
// with after a registry host ("host/djia30/train").
func lookup(lock *records.ComponentsLock, repo string) (records.LockedComponent, bool) {
	if lock == nil {
		return records.LockedComponent{}, false
	}
	names := sortedKeys(lock.Components)
	for _, n := range names {
		if lc := lock.Components[n]; lc.Repository == repo {
			return lc, true
		}
	}
	for _, n := range names {
		if lc := lock.Components[n]; lc.Repository != "" && strings.HasSuffix(repo, "/"+lc.Repository) {
			return lc, true
		}
	}
	return records.LockedComponent{}, false
}

// ArgoStubPrefix starts the images of KFP's kubernetes CreatePVC and
// DeletePVC components ("argostub/createpvc", "argostub/deletepvc"): no
// image runs, KFP's compiler matches them by exact name and makes Argo
// resource steps of them, so they pass through unpinned.
const ArgoStubPrefix = "argostub/"

func pin(pr *problems, doc *Document, spec *ps.PipelineSpec, dep *ps.PipelineDeploymentConfig, lock *records.ComponentsLock) map[string]string {
	users := executorTasks(spec)
	images := map[string]string{}
	for _, el := range sortedKeys(dep.GetExecutors()) {
		ctr := dep.GetExecutors()[el].GetContainer()
		if ctr == nil {
			continue
		}
		img := ctr.GetImage()
		repo, pinned := ImageRepository(img)
		if pinned || strings.HasPrefix(img, ArgoStubPrefix) {
			images[el] = img
			continue
		}
		lc, ok := lookup(lock, repo)
		if !ok || lc.Image == "" {
			pr.add(strings.Join(users[el], ", "), el, "build it on the build branch (add it to components in branchml.yaml), or pin the image by digest",
				"image %q is not in the components lock (%s)", img, records.ComponentsLockPath)
			continue
		}
		containerOf(doc, el)["image"] = lc.Image
		images[el] = lc.Image
	}
	return images
}

// executorTasks maps each executor label to the tasks that run it, sorted.
func executorTasks(spec *ps.PipelineSpec) map[string][]string {
	out := map[string][]string{}
	dags := []*ps.DagSpec{spec.GetRoot().GetDag()}
	for _, c := range spec.GetComponents() {
		if c.GetDag() != nil {
			dags = append(dags, c.GetDag())
		}
	}
	for _, d := range dags {
		for tn, t := range d.GetTasks() {
			if el := spec.GetComponents()[t.GetComponentRef().GetName()].GetExecutorLabel(); el != "" {
				out[el] = append(out[el], tn)
			}
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

// applyResources writes res into each root task's executor container as
// PipelineContainerSpec.ResourceSpec: cpuLimit/cpuRequest in vCPU and
// memoryLimit/memoryRequest in GB (10^9 bytes) as the pinned proto defines
// them, the string quantities resourceCpuLimit/resourceCpuRequest/
// resourceMemoryLimit/resourceMemoryRequest that KFP 2.5+ prefers, and
// accelerator {type, count, resourceType, resourceCount}. Requests equal
// limits.
func applyResources(pr *problems, doc *Document, spec *ps.PipelineSpec, res map[string]config.Resources) {
	tasks := spec.GetRoot().GetDag().GetTasks()
	set := map[string]string{} // executor → task that set it
	for _, tn := range sortedKeys(res) {
		r := res[tn]
		t, ok := tasks[tn]
		if !ok {
			pr.add(tn, "", "use a task name of the root DAG: "+strings.Join(sortedKeys(tasks), ", "), "pipeline.resources names a task that is not in the pipeline's root DAG")
			continue
		}
		el := spec.GetComponents()[t.GetComponentRef().GetName()].GetExecutorLabel()
		ctr := containerOf(doc, el)
		if el == "" || ctr == nil {
			pr.add(tn, el, "set resources only on container tasks", "pipeline.resources: the task does not run a container")
			continue
		}
		if prev, ok := set[el]; ok {
			pr.add(tn, el, "give the tasks their own components", "pipeline.resources: the executor is shared with task %q; resources are per executor", prev)
			continue
		}
		set[el] = tn
		rs, _ := ctr["resources"].(map[string]any)
		if rs == nil {
			rs = map[string]any{}
		}
		if r.CPU != "" {
			q, err := resource.ParseQuantity(r.CPU)
			if err != nil || q.Sign() <= 0 {
				pr.add(tn, el, `use a Kubernetes quantity such as "500m" or "2"`, "pipeline.resources cpu %q is not a positive quantity", r.CPU)
			} else {
				v := num(q.AsApproximateFloat64())
				rs["cpuLimit"], rs["cpuRequest"] = v, v
				rs["resourceCpuLimit"], rs["resourceCpuRequest"] = r.CPU, r.CPU
			}
		}
		if r.Memory != "" {
			q, err := resource.ParseQuantity(r.Memory)
			if err != nil || q.Sign() <= 0 {
				pr.add(tn, el, `use a Kubernetes quantity such as "512Mi" or "2Gi"`, "pipeline.resources memory %q is not a positive quantity", r.Memory)
			} else {
				v := num(q.AsApproximateFloat64() / 1e9)
				rs["memoryLimit"], rs["memoryRequest"] = v, v
				rs["resourceMemoryLimit"], rs["resourceMemoryRequest"] = r.Memory, r.Memory
			}
		}
		if a := r.Accelerator; a != nil {
			if a.Type == "" || a.Count < 1 {
				pr.add(tn, el, `give type (e.g. "nvidia.com/gpu") and a count of at least 1`, "pipeline.resources accelerator %q × %d is incomplete", a.Type, a.Count)
			} else {
				n := strconv.Itoa(a.Count)
				rs["accelerator"] = map[string]any{"type": a.Type, "count": n, "resourceType": a.Type, "resourceCount": n}
			}
		}
		if len(rs) > 0 {
			ctr["resources"] = rs
		}
	}
}

// num is v as a JSON number in its shortest form.
func num(v float64) any { return jsonNumber(strconv.FormatFloat(v, 'g', -1, 64)) }
