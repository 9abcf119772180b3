package cluster

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

//go:embed manifests/*.yaml
var manifests embed.FS

// SnapshotClientModule is the Go module whose config/crd/ holds the
// VolumeSnapshot CRDs the test bed installs: the external-snapshotter
// client that the storage backend is built with (the version in go.mod).
const SnapshotClientModule = "github.com/kubernetes-csi/external-snapshotter/client/v8"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// SnapshotCRDFiles returns the CRD files of SnapshotClientModule at the
// version source's go.mod requires (go list -m; downloaded if needed).
func SnapshotCRDFiles(source string) ([]string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", SnapshotClientModule)
	cmd.Dir = source
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("locate %s: %v: %s", SnapshotClientModule, err, stderr.String())
	}
	files, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "*.storage.k8s.io_*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in %s/config/crd", strings.TrimSpace(string(out)))
	}
	sort.Strings(files)
	return files, nil
}

// applyStorageManifests creates the VolumeSnapshot and TASR CRDs, waits
// until they are Established, then the StorageClass, the CSIDriver and the
// SnapshotClass.
func (c *Cluster) applyStorageManifests(ctx context.Context, source string) error {
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		return err
	}
	files, err := SnapshotCRDFiles(source)
	if err != nil {
		return err
	}
	var docs [][]byte
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		docs = append(docs, raw)
	}
	own, _ := manifests.ReadDir("manifests")
	for _, e := range own {
		raw, _ := manifests.ReadFile("manifests/" + e.Name())
		docs = append(docs, raw)
	}
	var crds []string
	for _, raw := range docs {
		u, err := decode(raw)
		if err != nil {
			return err
		}
		if _, err := dyn.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", u.GetName(), err)
		}
		crds = append(crds, u.GetName())
	}
	for _, name := range crds {
		if err := poll(ctx, func() error { return established(ctx, dyn, name) }); err != nil {
			return fmt.Errorf("CRD %s: %w", name, err)
		}
	}
	objs := []struct {
		gvr schema.GroupVersionResource
		doc string
	}{
		{schema.GroupVersionResource{Group: "storage.k8s.io", Version: "v1", Resource: "storageclasses"}, fmt.Sprintf(
			"apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: %s}\nprovisioner: %s\nreclaimPolicy: Delete\nvolumeBindingMode: Immediate\n", StorageClass, Driver)},
		// No attach step (no external-attacher runs): the kubelet publishes
		// the volume on the node straight away.
		{schema.GroupVersionResource{Group: "storage.k8s.io", Version: "v1", Resource: "csidrivers"}, fmt.Sprintf(
			"apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: %s}\nspec: {attachRequired: false, podInfoOnMount: false, volumeLifecycleModes: [Persistent]}\n", Driver)},
		{schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotclasses"}, fmt.Sprintf(
			"apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata: {name: %s}\ndriver: %s\ndeletionPolicy: Delete\n", SnapshotClass, Driver)},
	}
	for _, o := range objs {
		u, _ := decode([]byte(o.doc))
		if _, err := dyn.Resource(o.gvr).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

func decode(raw []byte) (*unstructured.Unstructured, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return nil, err
	}
	return u, nil
}

func established(ctx context.Context, dyn dynamic.Interface, name string) error {
	u, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return nil
		}
	}
	return fmt.Errorf("not Established yet")
}
