package trident_test

// Tests of the trident backend on the real Kubernetes test bed (test/k8s):
// kube-apiserver, kube-controller-manager, the CSI snapshot stack and the
// test bed's hostpath CSI driver, with the backend's expected driver set to
// that driver. They run with make test-k8s (BRANCHML_K8S_TESTS=1).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/backends/storage/trident"
	"github.com/branchml/branchml/resources"
	"github.com/branchml/branchml/test/k8s/cluster"
	"github.com/branchml/branchml/test/k8s/k8stest"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

type env struct {
	c    *cluster.Cluster
	ns   string
	kube kubernetes.Interface
	snap snapclient.Interface
	dyn  dynamic.Interface
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := k8stest.Shared(t)
	e := &env{c: c, ns: k8stest.Namespace(t, c, "st"), kube: k8stest.Client(t, c)}
	var err error
	if e.snap, err = snapclient.NewForConfig(c.RESTConfig()); err != nil {
		t.Fatal(err)
	}
	if e.dyn, err = dynamic.NewForConfig(c.RESTConfig()); err != nil {
		t.Fatal(err)
	}
	return e
}

// backend is the storage backend as branchml.yaml would configure it on the
// test bed, with short waits; cfg is the REST config (nil: admin).
func (e *env) backend(t *testing.T, cfg *rest.Config, opts ...trident.Option) *trident.Backend {
	t.Helper()
	if cfg == nil {
		cfg = e.c.RESTConfig()
	}
	kube, err1 := kubernetes.NewForConfig(cfg)
	snap, err2 := snapclient.NewForConfig(cfg)
	dyn, err3 := dynamic.NewForConfig(cfg)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	base := []trident.Option{
		trident.WithNamespace(e.ns), trident.WithStorageClass(cluster.StorageClass), trident.WithSnapshotClass(cluster.SnapshotClass),
		trident.WithDriver(cluster.Driver), trident.WithHostPathDir(e.c.HostPathDir),
		trident.WithPollInterval(100 * time.Millisecond), trident.WithReadyTimeout(60 * time.Second), trident.WithBindTimeout(60 * time.Second),
	}
	b, err := trident.New(kube, snap, dyn, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, dir, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// changedSinceSnapshot is volume spec (named "d") with file f "v1" in
// snapshot d-1 and "v2" since: what a restore to d-1 must undo.
func changedSinceSnapshot(t *testing.T, cx context.Context, b *trident.Backend, spec storage.VolumeSpec) *storage.Volume {
	t.Helper()
	v, err := b.EnsureVolume(cx, spec)
	if err != nil {
		t.Fatal(err)
	}
	write(t, v.Path, "f", "v1")
	if _, err := b.Snapshot(cx, spec.Name, storage.SnapshotSpec{Name: "d-1"}); err != nil {
		t.Fatal(err)
	}
	write(t, v.Path, "f", "v2")
	return v
}

// TestVolumesSnapshotsClones: the data and model PVCs are provisioned by
// the CSI provisioner, written through their directories, snapshotted to
// readyToUse with a restoreSize, and cloned back with the same bytes, also
// after the source PVC is gone (the clone is then sized by restoreSize).
func TestVolumesSnapshotsClones(t *testing.T) {
	e := newEnv(t)
	b := e.backend(t, nil)
	cx := ctx(t)
	data, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "djia30-data", Size: "2Gi", Labels: map[string]string{storage.KeyRole: "data"}})
	if err != nil {
		t.Fatal(err)
	}
	model, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "djia30-model", Size: "1Gi", Labels: map[string]string{storage.KeyRole: "model"}})
	if err != nil {
		t.Fatal(err)
	}
	if !data.Created || data.Size != "2Gi" || data.Namespace != e.ns || !model.Created || model.Size != "1Gi" {
		t.Fatalf("volumes = %+v, %+v", data, model)
	}
	pvc, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(cx, "djia30-data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := e.kube.CoreV1().PersistentVolumes().Get(cx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Status.Phase != corev1.ClaimBound || *pvc.Spec.StorageClassName != cluster.StorageClass || pv.Spec.CSI.Driver != cluster.Driver ||
		pvc.Labels[storage.KeyManagedBy] != "branchml" || pvc.Labels[storage.KeyRole] != "data" {
		t.Fatalf("PVC %+v on PV %+v", pvc.Status, pv.Spec.CSI)
	}
	if want := filepath.Join(e.c.HostPathDir, pv.Spec.CSI.VolumeHandle); data.Path != want {
		t.Fatalf("data volume path %q, want %q", data.Path, want)
	}
	prices := "date,close\n2016-07-01,17949.37\n"
	write(t, data.Path, "prices.csv", prices)
	again, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "djia30-data", Size: "2Gi"})
	if err != nil || again.Created || again.Path != data.Path {
		t.Fatalf("second EnsureVolume = %+v, %v", again, err)
	}

	spec := storage.SnapshotSpec{Name: "djia30-data-lin1",
		Labels:      map[string]string{storage.KeyCommit: "0123abcd", storage.KeyRunID: "run-7"},
		Annotations: map[string]string{storage.KeyCommit: "0123abcd0123abcd0123abcd0123abcd0123abcd"}}
	s, err := b.Snapshot(cx, "djia30-data", spec)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "djia30-data-lin1" || s.Volume != "djia30-data" || s.Namespace != e.ns || s.RestoreSize != "2Gi" ||
		s.Handle == "" || s.CreatedAt.IsZero() || s.Labels[storage.KeyRunID] != "run-7" || s.Labels[storage.KeyVolume] != "djia30-data" {
		t.Fatalf("snapshot = %+v", s)
	}
	if _, err := os.Stat(filepath.Join(e.c.HostPathDir, ".snapshots", s.Handle, "prices.csv")); err != nil {
		t.Fatalf("the driver holds no snapshot %s: %v", s.Handle, err)
	}
	vs, err := e.snap.SnapshotV1().VolumeSnapshots(e.ns).Get(cx, s.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !*vs.Status.ReadyToUse || *vs.Spec.VolumeSnapshotClassName != cluster.SnapshotClass || vs.Annotations[storage.KeyCommit] != spec.Annotations[storage.KeyCommit] {
		t.Fatalf("VolumeSnapshot = %+v %+v", vs.Spec, vs.Status)
	}
	// The same snapshot again creates nothing.
	s2, err := b.Snapshot(cx, "djia30-data", spec)
	if err != nil || s2.Handle != s.Handle {
		t.Fatalf("second snapshot = %+v, %v", s2, err)
	}
	// A change after the snapshot is not in it.
	write(t, data.Path, "prices.csv", "changed after the snapshot\n")

	clone, err := b.Clone(cx, "djia30-data-lin1", "ws-ana")
	if err != nil {
		t.Fatal(err)
	}
	if !clone.Created || clone.Size != "2Gi" || read(t, clone.Path, "prices.csv") != prices {
		t.Fatalf("clone = %+v", clone)
	}
	cp, _ := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(cx, "ws-ana", metav1.GetOptions{})
	if ds := cp.Spec.DataSource; ds == nil || ds.Kind != "VolumeSnapshot" || ds.Name != "djia30-data-lin1" || *ds.APIGroup != "snapshot.storage.k8s.io" {
		t.Fatalf("clone dataSource = %+v", cp.Spec.DataSource)
	}
	if _, err := b.Clone(cx, "djia30-data-lin1", "ws-ana"); err != nil {
		t.Fatalf("second clone: %v", err)
	}
	if _, err := b.Clone(cx, "other", "ws-ana"); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("clone of another snapshot into ws-ana: %v", err)
	}

	// The source PVC gone: the clone is sized from restoreSize (2Gi), not
	// from a default.
	if err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Delete(cx, "djia30-data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, func() error {
		_, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(cx, "djia30-data", metav1.GetOptions{})
		return err
	})
	late, err := b.Clone(cx, "djia30-data-lin1", "ws-late")
	if err != nil || late.Size != "2Gi" || read(t, late.Path, "prices.csv") != prices {
		t.Fatalf("clone without source = %+v, %v", late, err)
	}
}

func waitGone(t *testing.T, get func() error) {
	t.Helper()
	for i := 0; ; i++ {
		err := get()
		if apierrors.IsNotFound(err) {
			return
		}
		if i > 600 {
			t.Fatalf("still there after 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRetentionAndLineage: list newest first, annotate with the lineage
// record, delete (the content and the driver's copy go too).
func TestRetentionAndLineage(t *testing.T) {
	e := newEnv(t)
	b := e.backend(t, nil)
	cx := ctx(t)
	if _, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "m", Size: "1Gi"}); err != nil {
		t.Fatal(err)
	}
	var handles []string
	for _, n := range []string{"m-1", "m-2", "m-3"} {
		s, err := b.Snapshot(cx, "m", storage.SnapshotSpec{Name: n})
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, s.Handle)
		time.Sleep(1100 * time.Millisecond) // creation times one second apart
	}
	list, err := b.ListSnapshots(cx, "m")
	if err != nil || len(list) != 3 || list[0].Name != "m-3" || list[2].Name != "m-1" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	lineage := `{"id":"lin-0123456789abcdef","commit":"0123abcd"}`
	if err := b.Annotate(cx, "m-3", map[string]string{storage.AnnotationLineage: lineage}); err != nil {
		t.Fatal(err)
	}
	vs, _ := e.snap.SnapshotV1().VolumeSnapshots(e.ns).Get(cx, "m-3", metav1.GetOptions{})
	if vs.Annotations[storage.AnnotationLineage] != lineage {
		t.Fatalf("annotations = %v", vs.Annotations)
	}
	if err := b.Annotate(cx, "m-3", map[string]string{storage.AnnotationLineage: ""}); err != nil {
		t.Fatal(err)
	}
	vs, _ = e.snap.SnapshotV1().VolumeSnapshots(e.ns).Get(cx, "m-3", metav1.GetOptions{})
	if _, ok := vs.Annotations[storage.AnnotationLineage]; ok {
		t.Fatalf("an empty value did not remove the annotation: %v", vs.Annotations)
	}
	// Retention keeping 1: delete the two older ones. They are gone from
	// the list at once, although the snapshot controller still holds them
	// (finalizers) for a moment.
	for _, s := range list[1:] {
		if err := b.DeleteSnapshot(cx, s.Name); err != nil {
			t.Fatal(err)
		}
	}
	if list, _ := b.ListSnapshots(cx, "m"); len(list) != 1 || list[0].Name != "m-3" {
		t.Fatalf("right after the deletes: %+v", list)
	}
	waitGone(t, func() error {
		_, err := e.snap.SnapshotV1().VolumeSnapshots(e.ns).Get(cx, "m-1", metav1.GetOptions{})
		return err
	})
	if err := b.DeleteSnapshot(cx, "m-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("delete of a deleted snapshot: %v", err)
	}
	for _, h := range handles[:2] {
		waitGone(t, func() error {
			if _, err := os.Stat(filepath.Join(e.c.HostPathDir, ".snapshots", h)); err != nil {
				return apierrors.NewNotFound(snapv1.Resource("volumesnapshotcontents"), h)
			}
			return nil
		})
	}
	if list, _ := b.ListSnapshots(cx, "m"); len(list) != 1 || list[0].Name != "m-3" {
		t.Fatalf("after prune: %+v", list)
	}
}

// TestRestoreRecreate: the DataOps-style in-place restore re-creates the
// PVC from the snapshot; the data is the snapshot's again.
func TestRestoreRecreate(t *testing.T) {
	e := newEnv(t)
	b := e.backend(t, nil, trident.WithRestoreMode(trident.RestoreRecreate))
	cx := ctx(t)
	changedSinceSnapshot(t, cx, b, storage.VolumeSpec{Name: "d", Size: "1Gi", Labels: map[string]string{storage.KeyRole: "data"}})
	old, _ := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(cx, "d", metav1.GetOptions{})
	if err := b.Restore(cx, "d", "d-1"); err != nil {
		t.Fatal(err)
	}
	pvc, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(cx, "d", metav1.GetOptions{})
	if err != nil || pvc.UID == old.UID || pvc.Spec.DataSource.Name != "d-1" || pvc.Labels[storage.KeyRole] != "data" || pvc.Status.Phase != corev1.ClaimBound {
		t.Fatalf("restored PVC = %+v, %v", pvc, err)
	}
	nv, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "d", Size: "1Gi"})
	if err != nil || read(t, nv.Path, "f") != "v1" {
		t.Fatalf("after restore: %+v %v", nv, err)
	}
}

// fakeTrident plays Trident's TASR controller (not available here): on
// every new TridentActionSnapshotRestore it copies the snapshot's files
// back into the PVC's directory (what ONTAP's snapshot restore does), then
// sets status.state Succeeded and completionTime, once per CR, as Trident
// does. It returns the UIDs it handled.
func fakeTrident(t *testing.T, e *env) func() []types.UID {
	var mu sync.Mutex
	var handled []types.UID
	stop := make(chan struct{})
	done := make(chan struct{})
	res := e.dyn.Resource(trident.TASR).Namespace(e.ns)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			list, err := res.List(context.Background(), metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, u := range list.Items {
				if state, _, _ := unstructured.NestedString(u.Object, "status", "state"); state != "" {
					continue
				}
				pvcName, _, _ := unstructured.NestedString(u.Object, "spec", "pvcName")
				vsName, _, _ := unstructured.NestedString(u.Object, "spec", "volumeSnapshotName")
				msg, state := "", trident.TASRSucceeded
				if err := restoreFiles(e, pvcName, vsName); err != nil {
					msg, state = err.Error(), trident.TASRFailed
				}
				now := time.Now().UTC().Format(time.RFC3339)
				u.Object["status"] = map[string]any{"state": state, "message": msg, "startTime": now, "completionTime": now}
				if _, err := res.Update(context.Background(), &u, metav1.UpdateOptions{}); err == nil {
					mu.Lock()
					handled = append(handled, u.GetUID())
					mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return func() []types.UID {
		mu.Lock()
		defer mu.Unlock()
		return append([]types.UID(nil), handled...)
	}
}

func restoreFiles(e *env, pvcName, vsName string) error {
	cx := context.Background()
	pvc, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(cx, pvcName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	pv, err := e.kube.CoreV1().PersistentVolumes().Get(cx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	vs, err := e.snap.SnapshotV1().VolumeSnapshots(e.ns).Get(cx, vsName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	content, err := e.snap.SnapshotV1().VolumeSnapshotContents().Get(cx, *vs.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	from := filepath.Join(e.c.HostPathDir, ".snapshots", *content.Status.SnapshotHandle)
	to := filepath.Join(e.c.HostPathDir, pv.Spec.CSI.VolumeHandle)
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		raw, err := os.ReadFile(filepath.Join(from, ent.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, ent.Name()), raw, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// TestRestoreTASR: the TASR branchml creates is accepted by the CRD written
// from Trident's API (and a malformed one is refused by it); a second
// restore to the same snapshot makes a new one-shot TASR instead of
// returning the finished one (issue 19: it was a silent no-op); only the
// newest snapshot can be restored, where snapshots not cut yet (no
// status.creationTime) do not count as newer.
func TestRestoreTASR(t *testing.T) {
	e := newEnv(t)
	b := e.backend(t, nil, trident.WithRestoreMode(trident.RestoreTASR))
	cx := ctx(t)
	handled := fakeTrident(t, e)
	v := changedSinceSnapshot(t, cx, b, storage.VolumeSpec{Name: "d", Size: "1Gi"})
	if err := b.Restore(cx, "d", "d-1"); err != nil {
		t.Fatal(err)
	}
	u, err := e.dyn.Resource(trident.TASR).Namespace(e.ns).Get(cx, trident.RestoreName("d-1"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec, _, _ := unstructured.NestedStringMap(u.Object, "spec")
	if spec["pvcName"] != "d" || spec["volumeSnapshotName"] != "d-1" || u.GetLabels()[storage.KeyManagedBy] != "branchml" || read(t, v.Path, "f") != "v1" {
		t.Fatalf("TASR %v, file %q", u.Object, read(t, v.Path, "f"))
	}
	// Restore the same snapshot again after another change: a new CR.
	write(t, v.Path, "f", "v3")
	if err := b.Restore(cx, "d", "d-1"); err != nil {
		t.Fatal(err)
	}
	if h := handled(); len(h) != 2 || h[0] == h[1] || read(t, v.Path, "f") != "v1" {
		t.Fatalf("handled TASRs %v, file %q: the second restore was not carried out", h, read(t, v.Path, "f"))
	}
	// The CRD validates: a TASR without volumeSnapshotName is refused.
	bad := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "trident.netapp.io/v1", "kind": "TridentActionSnapshotRestore",
		"metadata": map[string]any{"name": "bad", "namespace": e.ns}, "spec": map[string]any{"pvcName": "d", "volume": "d-1"}}}
	if _, err := e.dyn.Resource(trident.TASR).Namespace(e.ns).Create(cx, bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "spec.volumeSnapshotName: Required value") {
		t.Fatalf("malformed TASR: %v", err)
	}
	// A failing snapshot (never cut: no status.creationTime) is not "newer".
	write(t, v.Path, ".csi-fail-snapshot", "ONTAP: snapshot reserve full")
	pending := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "d-pending", Namespace: e.ns},
		Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: new("d")}, VolumeSnapshotClassName: new(cluster.SnapshotClass)}}
	if _, err := e.snap.SnapshotV1().VolumeSnapshots(e.ns).Create(cx, pending, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		vs, err := e.snap.SnapshotV1().VolumeSnapshots(e.ns).Get(cx, "d-pending", metav1.GetOptions{})
		return err == nil && vs.Status != nil && vs.Status.Error != nil
	})
	if err := b.Restore(cx, "d", "d-1"); err != nil {
		t.Fatalf("restore with a pending snapshot beside: %v", err)
	}
	os.Remove(filepath.Join(v.Path, ".csi-fail-snapshot"))
	e.snap.SnapshotV1().VolumeSnapshots(e.ns).Delete(cx, "d-pending", metav1.DeleteOptions{})
	// A newer, cut snapshot: d-1 is no longer restorable in place.
	time.Sleep(1100 * time.Millisecond)
	if _, err := b.Snapshot(cx, "d", storage.SnapshotSpec{Name: "d-2"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(cx, "d", "d-1"); !errors.Is(err, storage.ErrUnsupported) || !strings.Contains(err.Error(), "newest snapshot of a PVC, and that is d-2") {
		t.Fatalf("restore of an older snapshot: %v", err)
	}
	if err := b.Restore(cx, "d", "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("restore of an unknown snapshot: %v", err)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for i := 0; !ok(); i++ {
		if i > 600 {
			t.Fatal("condition not met within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPreflight: the class checks before anything is created, on the real
// API: no snapshot class named and none default (external-snapshotter
// #1203) is an error up front, never a wait; one default class is used; a
// class or storage class of another driver is refused.
func TestPreflight(t *testing.T) {
	e := newEnv(t)
	cx := ctx(t)
	b := e.backend(t, nil, trident.WithSnapshotClass(""))
	t0 := time.Now()
	err := b.Preflight(cx)
	if !errors.Is(err, storage.ErrPreflight) || !strings.Contains(err.Error(), "snapshot.class is empty and no VolumeSnapshotClass of driver hostpath.csi.branchml.dev is marked default") {
		t.Fatalf("no class: %v", err)
	}
	if _, err := b.Snapshot(cx, "any", storage.SnapshotSpec{Name: "any-1"}); !errors.Is(err, storage.ErrPreflight) || time.Since(t0) > 10*time.Second {
		t.Fatalf("snapshot without a class: %v after %s", err, time.Since(t0))
	}
	if l, _ := e.snap.SnapshotV1().VolumeSnapshots(e.ns).List(cx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Fatalf("created %d VolumeSnapshots despite the failed preflight", len(l.Items))
	}
	// Mark a class default: it is used.
	def := &snapv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "test-default-" + e.ns,
		Annotations: map[string]string{trident.DefaultSnapshotClassAnnotation: "true"}}, Driver: cluster.Driver, DeletionPolicy: snapv1.VolumeSnapshotContentDelete}
	if _, err := e.snap.SnapshotV1().VolumeSnapshotClasses().Create(cx, def, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.snap.SnapshotV1().VolumeSnapshotClasses().Delete(context.Background(), def.Name, metav1.DeleteOptions{})
	})
	b = e.backend(t, nil, trident.WithSnapshotClass(""))
	if _, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "v", Size: "1Gi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Snapshot(cx, "v", storage.SnapshotSpec{Name: "v-1"}); err != nil {
		t.Fatal(err)
	}
	vs, _ := e.snap.SnapshotV1().VolumeSnapshots(e.ns).Get(cx, "v-1", metav1.GetOptions{})
	if *vs.Spec.VolumeSnapshotClassName != def.Name {
		t.Fatalf("class = %s", *vs.Spec.VolumeSnapshotClassName)
	}
	// Trident's driver expected, the test bed's classes found.
	for _, c := range []struct {
		opts []trident.Option
		want string
	}{
		{nil, `StorageClass "csi-hostpath" provisions with "hostpath.csi.branchml.dev", not csi.trident.netapp.io`},
		{[]trident.Option{trident.WithStorageClass("")}, `no storage class configured and the cluster has no default StorageClass`},
		{[]trident.Option{trident.WithStorageClass("gold")}, `StorageClass "gold" does not exist`},
	} {
		b := e.backend(t, nil, append([]trident.Option{trident.WithDriver(trident.Driver)}, c.opts...)...)
		if err := b.Preflight(cx); !errors.Is(err, storage.ErrPreflight) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("preflight: %v, want %q", err, c.want)
		}
	}
	b = e.backend(t, nil, trident.WithSnapshotClass("trident-snapshotclass"))
	if err := b.Preflight(cx); !errors.Is(err, storage.ErrPreflight) || !strings.Contains(err.Error(), `VolumeSnapshotClass "trident-snapshotclass" does not exist: create it with driver hostpath.csi.branchml.dev`) {
		t.Errorf("missing class: %v", err)
	}
}

// TestSnapshotCRDsAbsent: on a control plane without the snapshot CRDs
// (NetApp/trident #580) the preflight says what to install.
func TestSnapshotCRDsAbsent(t *testing.T) {
	k8stest.Shared(t) // only to skip unless enabled
	cx := ctx(t)
	bare, err := cluster.Start(cx, cluster.Options{Dir: t.TempDir(), NoStorage: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Stop()
	e := &env{c: bare, ns: "default"}
	b := e.backend(t, bare.RESTConfig())
	err = b.Preflight(cx)
	if !errors.Is(err, storage.ErrPreflight) || !strings.Contains(err.Error(), "snapshot.storage.k8s.io/v1 is not served") ||
		!strings.Contains(err.Error(), "install the external-snapshotter CRDs and snapshot controller") {
		t.Fatalf("preflight without CRDs: %v", err)
	}
}

// TestSnapshotErrorTimesOutAndCleansUp: the storage fails the snapshot
// (NetApp/trident #645): status.error is set while readyToUse stays false;
// the backend names the error, deletes the VolumeSnapshot it made, and says
// a retry may help.
func TestSnapshotErrorTimesOutAndCleansUp(t *testing.T) {
	e := newEnv(t)
	b := e.backend(t, nil, trident.WithReadyTimeout(8*time.Second))
	cx := ctx(t)
	v, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "m", Size: "1Gi"})
	if err != nil {
		t.Fatal(err)
	}
	write(t, v.Path, ".csi-fail-snapshot", "ONTAP: aggregate aggr1 is full")
	_, err = b.Snapshot(cx, "m", storage.SnapshotSpec{Name: "m-1"})
	var oe *storage.ObjectError
	if !errors.As(err, &oe) || !oe.Temporary() || !strings.Contains(err.Error(), "aggregate aggr1 is full") ||
		!strings.Contains(err.Error(), "deleted VolumeSnapshot "+e.ns+"/m-1") {
		t.Fatalf("err = %v", err)
	}
	if k := oe.Kind; k != "VolumeSnapshot" && k != "VolumeSnapshotContent" {
		t.Fatalf("object at fault: %s", oe.Object())
	}
	waitGone(t, func() error {
		_, err := e.snap.SnapshotV1().VolumeSnapshots(e.ns).Get(cx, "m-1", metav1.GetOptions{})
		return err
	})
}

// TestContentReadyIsNotSnapshotReady (issue 19): a VolumeSnapshotContent
// that is readyToUse while its VolumeSnapshot is not is no success: with the
// snapshot controller stopped, a content pre-provisioned from a real
// snapshot's handle turns ready (the csi-snapshotter reads it from the
// driver), its VolumeSnapshot never does.
func TestContentReadyIsNotSnapshotReady(t *testing.T) {
	e := newEnv(t)
	b := e.backend(t, nil, trident.WithReadyTimeout(6*time.Second))
	cx := ctx(t)
	if _, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "d", Size: "1Gi"}); err != nil {
		t.Fatal(err)
	}
	s0, err := b.Snapshot(cx, "d", storage.SnapshotSpec{Name: "d-0"})
	if err != nil {
		t.Fatal(err)
	}
	stopController(t, e)
	content := &snapv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: "static-" + e.ns},
		Spec: snapv1.VolumeSnapshotContentSpec{Driver: cluster.Driver, DeletionPolicy: snapv1.VolumeSnapshotContentRetain,
			Source:            snapv1.VolumeSnapshotContentSource{SnapshotHandle: &s0.Handle},
			VolumeSnapshotRef: corev1.ObjectReference{Name: "d-1", Namespace: e.ns}}}
	if _, err := e.snap.SnapshotV1().VolumeSnapshotContents().Create(cx, content, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.snap.SnapshotV1().VolumeSnapshotContents().Delete(context.Background(), content.Name, metav1.DeleteOptions{})
	})
	vs := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "d-1", Namespace: e.ns},
		Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: new("d")}, VolumeSnapshotClassName: new(cluster.SnapshotClass)}}
	vs, err = e.snap.SnapshotV1().VolumeSnapshots(e.ns).Create(cx, vs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vs.Status = &snapv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: &content.Name, ReadyToUse: new(false)}
	if _, err := e.snap.SnapshotV1().VolumeSnapshots(e.ns).UpdateStatus(cx, vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		c, err := e.snap.SnapshotV1().VolumeSnapshotContents().Get(cx, content.Name, metav1.GetOptions{})
		return err == nil && c.Status != nil && c.Status.ReadyToUse != nil && *c.Status.ReadyToUse
	})
	_, err = b.Snapshot(cx, "d", storage.SnapshotSpec{Name: "d-1"})
	if err == nil || !strings.Contains(err.Error(), "its VolumeSnapshotContent is readyToUse but the VolumeSnapshot is not") ||
		!strings.Contains(err.Error(), "left it in place (not made by branchml)") {
		t.Fatalf("content ready, snapshot not: %v", err)
	}
	e.snap.SnapshotV1().VolumeSnapshots(e.ns).Delete(cx, "d-1", metav1.DeleteOptions{})
}

// stopController stops the snapshot controller until the test ends.
func stopController(t *testing.T, e *env) {
	t.Helper()
	if err := e.c.StopComponent("snapshot-controller"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.c.StartComponent(context.Background(), "snapshot-controller"); err != nil {
			t.Errorf("restart the snapshot controller: %v", err)
		}
	})
}

// TestCloneSizeWhenRestoreSizeIsWrong (issue 19): a negative restoreSize on
// the VolumeSnapshot (as Trident has reported) with the source PVC gone:
// the clone takes the content's restoreSize, not the bad value or a default.
func TestCloneSizeWhenRestoreSizeIsWrong(t *testing.T) {
	e := newEnv(t)
	b := e.backend(t, nil)
	cx := ctx(t)
	v, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "d", Size: "3Gi"})
	if err != nil {
		t.Fatal(err)
	}
	write(t, v.Path, "f", "bytes")
	if _, err := b.Snapshot(cx, "d", storage.SnapshotSpec{Name: "d-1"}); err != nil {
		t.Fatal(err)
	}
	// The source PVC goes first: the snapshot controller must be running
	// to lift its snapshot-source protection finalizer.
	if err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Delete(cx, "d", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, func() error {
		_, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(cx, "d", metav1.GetOptions{})
		return err
	})
	stopController(t, e) // so that it does not correct the status below
	vs, _ := e.snap.SnapshotV1().VolumeSnapshots(e.ns).Get(cx, "d-1", metav1.GetOptions{})
	vs.Status.RestoreSize = new(resource.MustParse("-69894144"))
	if _, err := e.snap.SnapshotV1().VolumeSnapshots(e.ns).UpdateStatus(cx, vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Clone(cx, "d-1", "d-back")
	if err != nil {
		t.Fatal(err)
	}
	pvc, _ := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(cx, "d-back", metav1.GetOptions{})
	if got := pvc.Spec.Resources.Requests.Storage(); got.Value() != 3<<30 || c.Size != "3Gi" || read(t, c.Path, "f") != "bytes" {
		t.Fatalf("clone requested %s (%+v)", got, c)
	}
}

// TestOtherNamespaceAndBindTimeout: a PVC of another namespace is not
// found (and nothing is created); a PVC that never binds (provisioner
// down) is deleted again after the bind timeout.
func TestOtherNamespaceAndBindTimeout(t *testing.T) {
	e := newEnv(t)
	cx := ctx(t)
	other := k8stest.Namespace(t, e.c, "other")
	ob := e.backend(t, nil, trident.WithNamespace(other))
	if _, err := ob.EnsureVolume(cx, storage.VolumeSpec{Name: "theirs", Size: "1Gi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ob.Snapshot(cx, "theirs", storage.SnapshotSpec{Name: "theirs-1"}); err != nil {
		t.Fatal(err)
	}
	b := e.backend(t, nil)
	_, err := b.Snapshot(cx, "theirs", storage.SnapshotSpec{Name: "theirs-2"})
	var oe *storage.ObjectError
	if !errors.Is(err, storage.ErrNotFound) || !errors.As(err, &oe) || oe.Object() != "PersistentVolumeClaim "+e.ns+"/theirs" {
		t.Fatalf("snapshot of another namespace's PVC: %v", err)
	}
	if _, err := b.Clone(cx, "theirs-1", "mine"); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "VolumeSnapshot "+e.ns+"/theirs-1") {
		t.Fatalf("clone of another namespace's snapshot: %v", err)
	}
	if l, _ := e.snap.SnapshotV1().VolumeSnapshots(e.ns).List(cx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Fatalf("%d VolumeSnapshots created in %s", len(l.Items), e.ns)
	}
	if err := e.c.StopComponent("csi-provisioner"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.c.StartComponent(context.Background(), "csi-provisioner"); err != nil {
			t.Errorf("restart the provisioner: %v", err)
		}
	}()
	tb := e.backend(t, nil, trident.WithBindTimeout(3*time.Second))
	_, err = tb.EnsureVolume(cx, storage.VolumeSpec{Name: "never", Size: "1Gi"})
	if !errors.As(err, &oe) || !oe.Temporary() || !strings.Contains(err.Error(), `still "Pending" after 3s (deleted it)`) {
		t.Fatalf("bind timeout: %v", err)
	}
	waitGone(t, func() error {
		_, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(cx, "never", metav1.GetOptions{})
		return err
	})
}

// TestRBAC: with a ServiceAccount token bound to exactly the roles of
// resources/kubernetes/storage-rbac.yaml the whole cycle works; without
// "create" on volumesnapshots the snapshot fails with 403 naming it.
func TestRBAC(t *testing.T) {
	e := newEnv(t)
	cx := ctx(t)
	applyRBAC(t, e, nil)
	cfg := saConfig(t, e)
	b := e.backend(t, cfg, trident.WithRestoreMode(trident.RestoreRecreate))
	v, err := b.EnsureVolume(cx, storage.VolumeSpec{Name: "d", Size: "1Gi"})
	if err != nil {
		t.Fatal(err)
	}
	write(t, v.Path, "f", "x")
	if _, err := b.Snapshot(cx, "d", storage.SnapshotSpec{Name: "d-1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Annotate(cx, "d-1", map[string]string{storage.AnnotationLineage: "{}"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ListSnapshots(cx, "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Clone(cx, "d-1", "d-clone"); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(cx, "d", "d-1"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteSnapshot(cx, "d-1"); err != nil {
		t.Fatal(err)
	}
	// Narrower: volumesnapshots without create.
	applyRBAC(t, e, func(r *rbacv1.Role) {
		for i, rule := range r.Rules {
			if rule.Resources[0] == "volumesnapshots" {
				r.Rules[i].Verbs = []string{"get", "list", "delete", "patch"}
			}
		}
	})
	b = e.backend(t, saConfig(t, e))
	_, err = b.Snapshot(cx, "d", storage.SnapshotSpec{Name: "d-2"})
	var oe *storage.ObjectError
	if !errors.As(err, &oe) || oe.Status != 403 || oe.Object() != "VolumeSnapshot "+e.ns+"/d-2" ||
		!strings.Contains(err.Error(), `cannot create resource "volumesnapshots" in API group "snapshot.storage.k8s.io"`) {
		t.Fatalf("narrower role: %v", err)
	}
}

// applyRBAC creates (or replaces) the objects of storage-rbac.yaml in the
// test's namespace, the cluster-wide ones named after it; edit changes the
// Role first.
func applyRBAC(t *testing.T, e *env, edit func(*rbacv1.Role)) {
	t.Helper()
	cx := ctx(t)
	raw, err := resources.FS.ReadFile(resources.StorageRBACPath)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	crName := "branchml-storage-" + e.ns
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if u.Object == nil {
			continue
		}
		js, _ := u.MarshalJSON()
		switch u.GetKind() {
		case "ServiceAccount":
			sa := &corev1.ServiceAccount{}
			mustJSON(t, js, sa)
			sa.Namespace = e.ns
			if _, err := e.kube.CoreV1().ServiceAccounts(e.ns).Create(cx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		case "Role":
			r := &rbacv1.Role{}
			mustJSON(t, js, r)
			r.Namespace = e.ns
			if edit != nil {
				edit(r)
			}
			e.kube.RbacV1().Roles(e.ns).Delete(cx, r.Name, metav1.DeleteOptions{})
			if _, err := e.kube.RbacV1().Roles(e.ns).Create(cx, r, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case "ClusterRole":
			r := &rbacv1.ClusterRole{}
			mustJSON(t, js, r)
			r.Name = crName
			if _, err := e.kube.RbacV1().ClusterRoles().Create(cx, r, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.kube.RbacV1().ClusterRoles().Delete(context.Background(), crName, metav1.DeleteOptions{}) })
		case "RoleBinding":
			rb := &rbacv1.RoleBinding{}
			mustJSON(t, js, rb)
			rb.Namespace, rb.Subjects[0].Namespace = e.ns, e.ns
			if _, err := e.kube.RbacV1().RoleBindings(e.ns).Create(cx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		case "ClusterRoleBinding":
			rb := &rbacv1.ClusterRoleBinding{}
			mustJSON(t, js, rb)
			rb.Name, rb.RoleRef.Name, rb.Subjects[0].Namespace = crName, crName, e.ns
			if _, err := e.kube.RbacV1().ClusterRoleBindings().Create(cx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				e.kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), crName, metav1.DeleteOptions{})
			})
		default:
			t.Fatalf("unexpected %s in %s", u.GetKind(), resources.StorageRBACPath)
		}
	}
	time.Sleep(time.Second) // the authorizer's RBAC cache
}

func mustJSON(t *testing.T, js []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(js, v); err != nil {
		t.Fatal(err)
	}
}

// saConfig is a REST config with a fresh token of branchml-agent.
func saConfig(t *testing.T, e *env) *rest.Config {
	t.Helper()
	tr, err := e.kube.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx(t), "branchml-agent", &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.c.RESTConfig()
	cfg.BearerToken = tr.Status.Token
	return cfg
}
