package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"

	"google.golang.org/protobuf/encoding/protojson"
)

// cacheKey is a task's cache key as KFP computes its fingerprint
// (backend/src/v2/cacheutils): the component's interface and container
// (image by digest, command, args, env, resources), the input parameter
// values and the input artifacts (by URI, so that a cached upstream result
// keeps its consumers cached too), and the PVCs it mounts. A custom
// cachingOptions.cacheKey replaces the inputs, image, command and PVCs,
// combined with the component's name. Hex SHA-256.
func cacheKey(t *TaskNode, comp *Component, imageDigest string, params map[string]any, arts map[string][]*Artifact) string {
	var doc map[string]any
	if t.CacheKey != "" {
		doc = map[string]any{"component": comp.Name, "cacheKey": t.CacheKey}
	} else {
		iface, _ := protojson.Marshal(comp.Spec)
		ctr, _ := protojson.Marshal(comp.Container)
		var ifv, ctrv any
		_ = json.Unmarshal(iface, &ifv)
		_ = json.Unmarshal(ctr, &ctrv)
		inArts := map[string][]string{}
		for n, l := range arts {
			for _, a := range l {
				inArts[n] = append(inArts[n], a.URI)
			}
		}
		var pvcs []string
		if comp.Kube != nil {
			for _, m := range comp.Kube.PVCs {
				pvcs = append(pvcs, m.Name.Constant+"@"+m.MountPath)
			}
		}
		sort.Strings(pvcs)
		doc = map[string]any{"component": ifv, "container": ctrv, "image": imageDigest, "parameters": params, "artifacts": inArts, "pvcs": pvcs}
	}
	sum := sha256.Sum256([]byte(jsonString(doc)))
	return hex.EncodeToString(sum[:])
}
