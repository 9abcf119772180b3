package runner

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/apimachinery/pkg/api/resource"
)

// KubeConfig is what the local runner does with an executor's kfp-kubernetes
// KubernetesExecutorConfig (the platform spec, kubernetes_executor_config.proto):
//
//   - pvcMount: the storage backend's local volume of that PVC name is bound at
//     mountPath (and at its own host path, so parameters that name it work);
//   - secretAsEnv / configMapAsEnv / secretAsVolume / configMapAsVolume: from
//     the local secrets directory (secrets/<name>/<key>, configmaps/<name>/<key>)
//     or the environment (BRANCHML_SECRET_<NAME>_<KEY>, BRANCHML_CONFIGMAP_<NAME>_<KEY>);
//   - emptyDirMounts, genericEphemeralVolume: a fresh directory per task;
//   - fieldPathAsEnv: metadata.name, metadata.namespace, status.podIP,
//     spec.nodeName, spec.serviceAccountName with local values;
//   - activeDeadlineSeconds: the task's deadline;
//   - securityContext runAsUser/runAsGroup: the task's user;
//   - createPvc (argostub/createpvc tasks): the storage backend provides the volume;
//
// and the rest (nodeSelector, tolerations, affinities, podMetadata, image pull
// settings, shared memory, deletePvc …) is logged once per task as
// "ignored locally: …". initContainers are refused.
type KubeConfig struct {
	PVCs             []PVCMount
	SecretEnv        []EnvFrom
	ConfigMapEnv     []EnvFrom
	SecretVolumes    []VolumeFrom
	ConfigMapVolumes []VolumeFrom
	EmptyDirs        []string
	FieldPathEnv     [][2]string // env name, field path
	Deadline         time.Duration
	RunAsUser        *int64
	RunAsGroup       *int64
	// CreatePVC is the createPvc config of an argostub/createpvc task.
	CreatePVC map[string]any
	DeletePVC bool
	// Ignored names the settings the local runner does not apply, sorted.
	Ignored []string
}

// NameRef is a name given as a constant or as a task input parameter spec
// (pvcNameParameter, secretNameParameter …).
type NameRef struct {
	Constant string
	Param    *pipelinespec.TaskInputsSpec_InputParameterSpec
}

// PVCMount is one pvcMount.
type PVCMount struct {
	Name      NameRef
	MountPath string
	SubPath   string
}

// EnvFrom is one secretAsEnv or configMapAsEnv: env var → key of the named object.
type EnvFrom struct {
	Name     NameRef
	Keys     [][2]string // key, env var
	Optional bool
}

// VolumeFrom is one secretAsVolume or configMapAsVolume.
type VolumeFrom struct {
	Name      NameRef
	MountPath string
	Optional  bool
}

func nameRef(m map[string]any, deprecated, param string) (NameRef, error) {
	if p, ok := m[param].(map[string]any); ok {
		js, _ := json.Marshal(p)
		var ps pipelinespec.TaskInputsSpec_InputParameterSpec
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(js, &ps); err != nil {
			return NameRef{}, fmt.Errorf("%s: %w", param, err)
		}
		if c := ps.GetRuntimeValue().GetConstant(); c != nil {
			return NameRef{Constant: c.GetStringValue()}, nil
		}
		return NameRef{Param: &ps}, nil
	}
	s, _ := m[deprecated].(string)
	return NameRef{Constant: s}, nil
}

func listOf(m map[string]any, key string) []map[string]any {
	l, _ := m[key].([]any)
	var out []map[string]any
	for _, x := range l {
		if mm, ok := x.(map[string]any); ok {
			out = append(out, mm)
		}
	}
	return out
}

func parseKube(m map[string]any, task string) (*KubeConfig, error) {
	k := &KubeConfig{}
	if m == nil {
		return k, nil
	}
	ignored := map[string]bool{}
	for key := range m {
		switch key {
		case "pvcMount", "secretAsEnv", "configMapAsEnv", "secretAsVolume", "configMapAsVolume", "emptyDirMounts",
			"genericEphemeralVolume", "fieldPathAsEnv", "activeDeadlineSeconds", "securityContext", "createPvc", "deletePvc":
		case "initContainers":
			return nil, &UnsupportedError{Feature: "kubernetes initContainers", Task: task}
		default:
			ignored[key] = true
		}
	}
	bad := func(what string, err error) error {
		return fmt.Errorf("task %s: platform spec %s: %w", task, what, err)
	}
	for _, p := range listOf(m, "pvcMount") {
		var ref NameRef
		var err error
		switch {
		case p["pvcNameParameter"] != nil:
			ref, err = nameRef(p, "", "pvcNameParameter")
		case p["constant"] != nil:
			ref.Constant, _ = p["constant"].(string)
		case p["componentInputParameter"] != nil:
			ref.Param = &pipelinespec.TaskInputsSpec_InputParameterSpec{Kind: &pipelinespec.TaskInputsSpec_InputParameterSpec_ComponentInputParameter{ComponentInputParameter: fmt.Sprint(p["componentInputParameter"])}}
		case p["taskOutputParameter"] != nil:
			tp, _ := p["taskOutputParameter"].(map[string]any)
			ref.Param = &pipelinespec.TaskInputsSpec_InputParameterSpec{Kind: &pipelinespec.TaskInputsSpec_InputParameterSpec_TaskOutputParameter{TaskOutputParameter: &pipelinespec.TaskInputsSpec_InputParameterSpec_TaskOutputParameterSpec{
				ProducerTask: pathString(tp, "producerTask"), OutputParameterKey: pathString(tp, "outputParameterKey")}}}
			if ref.Param.GetTaskOutputParameter().GetProducerTask() == "" {
				return nil, bad("pvcMount", fmt.Errorf("taskOutputParameter names no producer task"))
			}
		}
		if err != nil {
			return nil, bad("pvcMount", err)
		}
		mp, _ := p["mountPath"].(string)
		if !strings.HasPrefix(mp, "/") {
			return nil, bad("pvcMount", fmt.Errorf("mountPath %q is not absolute", mp))
		}
		if ref.Constant == "" && ref.Param == nil {
			return nil, bad("pvcMount", fmt.Errorf("no PVC name at %s", mp))
		}
		sub, _ := p["subPath"].(string)
		k.PVCs = append(k.PVCs, PVCMount{Name: ref, MountPath: mp, SubPath: sub})
	}
	envFrom := func(key, deprecated, param, keyField string) ([]EnvFrom, error) {
		var out []EnvFrom
		for _, s := range listOf(m, key) {
			ref, err := nameRef(s, deprecated, param)
			if err != nil {
				return nil, bad(key, err)
			}
			e := EnvFrom{Name: ref}
			e.Optional, _ = s["optional"].(bool)
			for _, kv := range listOf(s, "keyToEnv") {
				e.Keys = append(e.Keys, [2]string{pathString(kv, keyField), pathString(kv, "envVar")})
			}
			out = append(out, e)
		}
		return out, nil
	}
	var err error
	if k.SecretEnv, err = envFrom("secretAsEnv", "secretName", "secretNameParameter", "secretKey"); err != nil {
		return nil, err
	}
	if k.ConfigMapEnv, err = envFrom("configMapAsEnv", "configMapName", "configMapNameParameter", "configMapKey"); err != nil {
		return nil, err
	}
	volFrom := func(key, deprecated, param string) ([]VolumeFrom, error) {
		var out []VolumeFrom
		for _, s := range listOf(m, key) {
			ref, err := nameRef(s, deprecated, param)
			if err != nil {
				return nil, bad(key, err)
			}
			v := VolumeFrom{Name: ref, MountPath: pathString(s, "mountPath")}
			v.Optional, _ = s["optional"].(bool)
			if !strings.HasPrefix(v.MountPath, "/") {
				return nil, bad(key, fmt.Errorf("mountPath %q is not absolute", v.MountPath))
			}
			out = append(out, v)
		}
		return out, nil
	}
	if k.SecretVolumes, err = volFrom("secretAsVolume", "secretName", "secretNameParameter"); err != nil {
		return nil, err
	}
	if k.ConfigMapVolumes, err = volFrom("configMapAsVolume", "configMapName", "configMapNameParameter"); err != nil {
		return nil, err
	}
	for _, key := range []string{"emptyDirMounts", "genericEphemeralVolume"} {
		for _, e := range listOf(m, key) {
			mp := pathString(e, "mountPath")
			if !strings.HasPrefix(mp, "/") {
				return nil, bad(key, fmt.Errorf("mountPath %q is not absolute", mp))
			}
			k.EmptyDirs = append(k.EmptyDirs, mp)
		}
	}
	for _, f := range listOf(m, "fieldPathAsEnv") {
		k.FieldPathEnv = append(k.FieldPathEnv, [2]string{pathString(f, "name"), pathString(f, "fieldPath")})
	}
	if d := toInt(m["activeDeadlineSeconds"]); d > 0 {
		k.Deadline = time.Duration(d) * time.Second
	}
	if sc, ok := m["securityContext"].(map[string]any); ok {
		if v, ok := sc["runAsUser"]; ok {
			u := toInt(v)
			k.RunAsUser = &u
		}
		if v, ok := sc["runAsGroup"]; ok {
			g := toInt(v)
			k.RunAsGroup = &g
		}
	}
	if c, ok := m["createPvc"].(map[string]any); ok {
		k.CreatePVC = c
	}
	if m["deletePvc"] != nil {
		k.DeletePVC = true
		ignored["deletePvc (the local volume is kept)"] = true
	}
	for i := range ignored {
		k.Ignored = append(k.Ignored, i)
	}
	sort.Strings(k.Ignored)
	return k, nil
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case string:
		var n int64
		fmt.Sscan(x, &n)
		return n
	}
	return 0
}

// Resources are a container's CPU and memory limits as the spec gives them:
// Kubernetes quantities (resourceCpuLimit "500m", resourceMemoryLimit "2Gi"),
// which may hold input placeholders, else the pinned proto's numbers (vCPU,
// GB). The limit is taken, else the request.
type Resources struct {
	CPU, Memory string
	// Accelerator is "type × count" when one is asked for (ignored locally).
	Accelerator string
}

func resourcesOf(ctr *pipelinespec.PipelineDeploymentConfig_PipelineContainerSpec, raw map[string]any) (Resources, error) {
	var r Resources
	rs := ctr.GetResources()
	r.CPU = firstNonEmpty(pathString(raw, "resourceCpuLimit"), pathString(raw, "resourceCpuRequest"))
	if r.CPU == "" {
		if v := firstPositive(rs.GetCpuLimit(), rs.GetCpuRequest()); v > 0 {
			r.CPU = fmt.Sprint(v)
		}
	}
	r.Memory = firstNonEmpty(pathString(raw, "resourceMemoryLimit"), pathString(raw, "resourceMemoryRequest"))
	if r.Memory == "" {
		if v := firstPositive(rs.GetMemoryLimit(), rs.GetMemoryRequest()); v > 0 {
			r.Memory = fmt.Sprintf("%.0f", v*1e9)
		}
	}
	for _, q := range []string{r.CPU, r.Memory} {
		if q != "" && !strings.Contains(q, "{{") {
			if _, err := resource.ParseQuantity(q); err != nil {
				return r, fmt.Errorf("resource quantity %q: %w", q, err)
			}
		}
	}
	if acc := jpath(raw, "accelerator"); acc != nil {
		typ := firstNonEmpty(pathString(acc, "resourceType"), pathString(acc, "type"))
		cnt := jpath(acc, "resourceCount")
		if cnt == nil {
			cnt = jpath(acc, "count")
		}
		if typ != "" {
			r.Accelerator = fmt.Sprintf("%s × %v", typ, cnt)
		}
	}
	return r, nil
}

// quantities resolves the limits to vCPU and bytes (0: none).
func (r Resources) quantities() (cpu float64, mem int64, err error) {
	if r.CPU != "" {
		q, err := resource.ParseQuantity(r.CPU)
		if err != nil {
			return 0, 0, fmt.Errorf("cpu %q: %w", r.CPU, err)
		}
		cpu = q.AsApproximateFloat64()
	}
	if r.Memory != "" {
		q, err := resource.ParseQuantity(r.Memory)
		if err != nil {
			return 0, 0, fmt.Errorf("memory %q: %w", r.Memory, err)
		}
		mem = q.Value()
	}
	return cpu, mem, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func firstPositive(f ...float64) float64 {
	for _, x := range f {
		if x > 0 {
			return x
		}
	}
	return 0
}

// importableURI checks that the local runner can import uri: a local path
// (absolute, or file://).
func importableURI(uri string) error {
	if strings.HasPrefix(uri, "/") {
		return nil
	}
	u, err := url.Parse(uri)
	if err == nil && u.Scheme == "file" {
		return nil
	}
	scheme := uri
	if i := strings.Index(uri, "://"); i > 0 {
		scheme = uri[:i+3]
	}
	return fmt.Errorf("importing from %s (only local paths and file:// URIs)", scheme)
}

// localPathOfURI is the local file of an importable URI.
func localPathOfURI(uri string) string {
	if strings.HasPrefix(uri, "file://") {
		if u, err := url.Parse(uri); err == nil {
			return u.Path
		}
	}
	return uri
}
