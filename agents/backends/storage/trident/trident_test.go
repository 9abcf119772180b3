package trident

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	kfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/branchml/branchml/agents/backends/storage"
)

const ns = "ml"

var vsGVR = snapv1.SchemeGroupVersion.WithResource("volumesnapshots")

type fixture struct {
	b    *Backend
	kube *kfake.Clientset
	snap *snapfake.Clientset
	dyn  *dynfake.FakeDynamicClient
}

func served(groups ...string) []*metav1.APIResourceList {
	var out []*metav1.APIResourceList
	for _, g := range groups {
		switch g {
		case SnapshotGroupVersion:
			out = append(out, &metav1.APIResourceList{GroupVersion: g, APIResources: []metav1.APIResource{
				{Name: "volumesnapshots", Namespaced: true, Kind: "VolumeSnapshot"},
				{Name: "volumesnapshotcontents", Kind: "VolumeSnapshotContent"},
				{Name: "volumesnapshotclasses", Kind: "VolumeSnapshotClass"},
			}})
		case "trident.netapp.io/v1":
			out = append(out, &metav1.APIResourceList{GroupVersion: g, APIResources: []metav1.APIResource{
				{Name: "tridentactionsnapshotrestores", Namespaced: true, Kind: "TridentActionSnapshotRestore"},
			}})
		}
	}
	return out
}

func boundPVC(name, size string) *corev1.PersistentVolumeClaim {
	sc := "trident-nas"
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &sc,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
}

func tridentClass() *snapv1.VolumeSnapshotClass {
	return &snapv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "trident-snapshotclass"}, Driver: Driver, DeletionPolicy: snapv1.VolumeSnapshotContentDelete}
}

func newFixture(t *testing.T, kubeObjs, snapObjs []runtime.Object, dynObjs ...runtime.Object) *fixture {
	t.Helper()
	kube := kfake.NewSimpleClientset(kubeObjs...)
	kube.Fake.Resources = served(SnapshotGroupVersion, "trident.netapp.io/v1")
	snap := snapfake.NewSimpleClientset(snapObjs...)
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{TASR: "TridentActionSnapshotRestoreList"}, dynObjs...)
	b, err := New(kube, snap, dyn, WithNamespace(ns), WithStorageClass("trident-nas"), WithSnapshotClass("trident-snapshotclass"),
		WithPollInterval(time.Millisecond), WithReadyTimeout(200*time.Millisecond), WithBindTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{b: b, kube: kube, snap: snap, dyn: dyn}
}

// readyAfter makes the snapshot controller's work visible on the n-th get of
// a VolumeSnapshot: bound to content "snapcontent-<name>", readyToUse, 2Gi.
func (f *fixture) readyAfter(n int, vsErr string) *int {
	gets := 0
	f.snap.PrependReactor("get", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.GetAction).GetName()
		obj, err := f.snap.Tracker().Get(vsGVR, ns, name)
		if err != nil {
			return true, nil, err
		}
		gets++
		vs := obj.(*snapv1.VolumeSnapshot).DeepCopy()
		if gets >= n {
			ready, cn, size := vsErr == "", "snapcontent-"+name, resource.MustParse("2Gi")
			ct := metav1.NewTime(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
			vs.Status = &snapv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: &cn, ReadyToUse: &ready, RestoreSize: &size, CreationTime: &ct}
			if vsErr != "" {
				vs.Status.Error = &snapv1.VolumeSnapshotError{Message: &vsErr}
			}
		}
		return true, vs, nil
	})
	return &gets
}

func content(name string, ready bool, errMsg string) *snapv1.VolumeSnapshotContent {
	handle := "pvc-1234/snapshot-" + name
	c := &snapv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: &snapv1.VolumeSnapshotContentStatus{ReadyToUse: &ready, SnapshotHandle: &handle}}
	if errMsg != "" {
		c.Status.Error = &snapv1.VolumeSnapshotError{Message: &errMsg}
	}
	return c
}

func TestSnapshotBecomesReadyAfterPolls(t *testing.T) {
	f := newFixture(t, []runtime.Object{boundPVC("djia30-data", "1Gi")},
		[]runtime.Object{tridentClass(), content("snapcontent-djia30-data-lin1", true, "")})
	gets := f.readyAfter(3, "")
	spec := storage.SnapshotSpec{Name: "djia30-data-lin1",
		Labels:      map[string]string{storage.KeyCommit: "0123abcd", storage.KeyRunID: "run-7"},
		Annotations: map[string]string{storage.KeyCommit: "0123abcd0123abcd0123abcd0123abcd0123abcd"}}
	s, err := f.b.Snapshot(context.Background(), "djia30-data", spec)
	if err != nil {
		t.Fatal(err)
	}
	want := &storage.Snapshot{Name: "djia30-data-lin1", Volume: "djia30-data", Namespace: ns, Handle: "pvc-1234/snapshot-snapcontent-djia30-data-lin1",
		RestoreSize: "2Gi", CreatedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		Labels: map[string]string{storage.KeyCommit: "0123abcd", storage.KeyRunID: "run-7", storage.KeyManagedBy: "branchml", storage.KeyVolume: "djia30-data"}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("snapshot = %+v\nwant       %+v", s, want)
	}
	if *gets != 3 { // ready on the third poll (the look-before-create found nothing)
		t.Fatalf("%d gets of the VolumeSnapshot, want 3", *gets)
	}
	obj, _ := f.snap.Tracker().Get(vsGVR, ns, "djia30-data-lin1")
	vs := obj.(*snapv1.VolumeSnapshot)
	if *vs.Spec.VolumeSnapshotClassName != "trident-snapshotclass" || *vs.Spec.Source.PersistentVolumeClaimName != "djia30-data" ||
		vs.Annotations[storage.KeyCommit] != "0123abcd0123abcd0123abcd0123abcd0123abcd" || vs.Labels[storage.KeyManagedBy] != "branchml" {
		t.Fatalf("created VolumeSnapshot = %+v", vs)
	}
	// Twice for the same run creates nothing twice.
	if _, err := f.b.Snapshot(context.Background(), "djia30-data", spec); err != nil {
		t.Fatal(err)
	}
	creates := 0
	for _, a := range f.snap.Actions() {
		if a.GetVerb() == "create" {
			creates++
		}
	}
	if creates != 1 {
		t.Fatalf("%d creates, want 1", creates)
	}
}

func TestSnapshotContentErrorTimesOutAndCleansUp(t *testing.T) {
	f := newFixture(t, []runtime.Object{boundPVC("djia30-model", "1Gi")},
		[]runtime.Object{tridentClass(), content("snapcontent-djia30-model-lin1", false, "ONTAP: aggregate aggr1 is full")})
	f.readyAfter(1, "")
	// The VolumeSnapshot never turns ready: override readyToUse to false.
	f.snap.PrependReactor("get", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj, err := f.snap.Tracker().Get(vsGVR, ns, a.(k8stesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		vs := obj.(*snapv1.VolumeSnapshot).DeepCopy()
		no, cn := false, "snapcontent-djia30-model-lin1"
		vs.Status = &snapv1.VolumeSnapshotStatus{ReadyToUse: &no, BoundVolumeSnapshotContentName: &cn}
		return true, vs, nil
	})
	_, err := f.b.Snapshot(context.Background(), "djia30-model", storage.SnapshotSpec{Name: "djia30-model-lin1"})
	var oe *storage.ObjectError
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v, want *storage.ObjectError", err)
	}
	if oe.Object() != "VolumeSnapshotContent snapcontent-djia30-model-lin1" || !oe.Temporary() ||
		!strings.Contains(err.Error(), "last error: ONTAP: aggregate aggr1 is full") ||
		!strings.Contains(err.Error(), "deleted VolumeSnapshot ml/djia30-model-lin1") {
		t.Fatalf("err = %v (object %s)", err, oe.Object())
	}
	if _, err := f.snap.Tracker().Get(vsGVR, ns, "djia30-model-lin1"); err == nil {
		t.Fatal("the half-made VolumeSnapshot was not deleted")
	}
}

func TestSnapshotReadyOnStorageDespiteSnapshotError(t *testing.T) {
	f := newFixture(t, []runtime.Object{boundPVC("d", "1Gi")}, []runtime.Object{tridentClass(), content("snapcontent-d-1", true, "")})
	f.readyAfter(1, "failed to update status: the object has been modified")
	s, err := f.b.Snapshot(context.Background(), "d", storage.SnapshotSpec{Name: "d-1"})
	if err != nil || s.Handle != "pvc-1234/snapshot-snapcontent-d-1" {
		t.Fatalf("snapshot = %+v, %v", s, err)
	}
}

func TestSnapshotPreflight(t *testing.T) {
	cases := []struct {
		name    string
		served  []string
		classes []runtime.Object
		want    string
	}{
		{"crds not served", nil, []runtime.Object{tridentClass()}, `snapshot.storage.k8s.io/v1 is not served`},
		{"missing class", []string{SnapshotGroupVersion}, nil, `VolumeSnapshotClass "trident-snapshotclass" does not exist: create it with driver csi.trident.netapp.io`},
		{"other driver", []string{SnapshotGroupVersion}, []runtime.Object{&snapv1.VolumeSnapshotClass{
			ObjectMeta: metav1.ObjectMeta{Name: "trident-snapshotclass"}, Driver: "ebs.csi.aws.com"}},
			`VolumeSnapshotClass "trident-snapshotclass" has driver "ebs.csi.aws.com", not csi.trident.netapp.io`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, []runtime.Object{boundPVC("d", "1Gi")}, c.classes)
			f.kube.Fake.Resources = served(c.served...)
			_, err := f.b.Snapshot(context.Background(), "d", storage.SnapshotSpec{Name: "d-1"})
			if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrPreflight with %q", err, c.want)
			}
			for _, a := range f.snap.Actions() {
				if a.GetVerb() == "create" {
					t.Fatalf("created %s despite the failed preflight", a.GetResource().Resource)
				}
			}
		})
	}
}

func tasrState(f *fixture, after int, state, msg string) {
	gets := 0
	f.dyn.PrependReactor("get", "tridentactionsnapshotrestores", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj, err := f.dyn.Tracker().Get(TASR, ns, a.(k8stesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		gets++
		u := obj.(*unstructured.Unstructured).DeepCopy()
		st := "In progress"
		if gets >= after {
			st = state
		}
		u.Object["status"] = map[string]any{"state": st, "message": msg}
		return true, u, nil
	})
}

func snapOf(name, pvc string, created time.Time) *snapv1.VolumeSnapshot {
	ready := true
	return &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, CreationTimestamp: metav1.NewTime(created)},
		Spec:   snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
		Status: &snapv1.VolumeSnapshotStatus{ReadyToUse: &ready}}
}

func TestRestoreWithTASR(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	snaps := []runtime.Object{tridentClass(), snapOf("d-old", "d", t0), snapOf("d-new", "d", t0.Add(time.Hour))}

	t.Run("succeeds", func(t *testing.T) {
		f := newFixture(t, []runtime.Object{boundPVC("d", "1Gi")}, snaps)
		tasrState(f, 3, TASRSucceeded, "")
		if err := f.b.Restore(context.Background(), "d", "d-new"); err != nil {
			t.Fatal(err)
		}
		obj, err := f.dyn.Tracker().Get(TASR, ns, "branchml-restore-d-new")
		if err != nil {
			t.Fatal(err)
		}
		spec := obj.(*unstructured.Unstructured).Object["spec"]
		if !reflect.DeepEqual(spec, map[string]any{"pvcName": "d", "volumeSnapshotName": "d-new"}) {
			t.Fatalf("TASR spec = %v", spec)
		}
		if u := obj.(*unstructured.Unstructured); u.GetAPIVersion() != "trident.netapp.io/v1" || u.GetKind() != "TridentActionSnapshotRestore" || u.GetNamespace() != ns {
			t.Fatalf("TASR = %s %s in %s", u.GetAPIVersion(), u.GetKind(), u.GetNamespace())
		}
	})
	t.Run("fails", func(t *testing.T) {
		f := newFixture(t, []runtime.Object{boundPVC("d", "1Gi")}, snaps)
		tasrState(f, 2, TASRFailed, "volume d is in use by a running pod")
		err := f.b.Restore(context.Background(), "d", "d-new")
		var oe *storage.ObjectError
		if !errors.As(err, &oe) || oe.Object() != "TridentActionSnapshotRestore ml/branchml-restore-d-new" || oe.Temporary() ||
			!strings.HasSuffix(err.Error(), "Trident reports state Failed: volume d is in use by a running pod") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("only the newest", func(t *testing.T) {
		f := newFixture(t, []runtime.Object{boundPVC("d", "1Gi")}, snaps)
		err := f.b.Restore(context.Background(), "d", "d-old")
		if !errors.Is(err, storage.ErrUnsupported) || !strings.Contains(err.Error(), "newest snapshot of a PVC, and that is d-new") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no TASR CRD", func(t *testing.T) {
		f := newFixture(t, []runtime.Object{boundPVC("d", "1Gi")}, snaps)
		f.kube.Fake.Resources = served(SnapshotGroupVersion)
		if err := f.b.Restore(context.Background(), "d", "d-new"); !errors.Is(err, storage.ErrUnsupported) {
			t.Fatalf("err = %v", err)
		}
	})
}

// bindAfter reports the PVC Bound (with capacity) from the n-th get on.
func (f *fixture) bindAfter(n int) {
	gets := 0
	pvcGVR := corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims")
	f.kube.PrependReactor("get", "persistentvolumeclaims", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj, err := f.kube.Tracker().Get(pvcGVR, ns, a.(k8stesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		gets++
		pvc := obj.(*corev1.PersistentVolumeClaim).DeepCopy()
		if n > 0 && gets >= n {
			pvc.Status.Phase = corev1.ClaimBound
			pvc.Status.Capacity = pvc.Spec.Resources.Requests
		}
		return true, pvc, nil
	})
}

func TestEnsureVolume(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.bindAfter(3)
	v, err := f.b.EnsureVolume(context.Background(), storage.VolumeSpec{Name: "djia30-data", Size: "2Gi", Labels: map[string]string{"team": "quant"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v, &storage.Volume{Name: "djia30-data", Namespace: ns, Size: "2Gi", Created: true}) {
		t.Fatalf("volume = %+v", v)
	}
	pvc, _ := f.kube.Tracker().Get(corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims"), ns, "djia30-data")
	p := pvc.(*corev1.PersistentVolumeClaim)
	if *p.Spec.StorageClassName != "trident-nas" || !reflect.DeepEqual(p.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) ||
		p.Spec.Resources.Requests.Storage().String() != "2Gi" || !reflect.DeepEqual(p.Labels, map[string]string{"team": "quant", storage.KeyManagedBy: "branchml"}) {
		t.Fatalf("PVC = %+v", p)
	}
	again, err := f.b.EnsureVolume(context.Background(), storage.VolumeSpec{Name: "djia30-data", Size: "2Gi"})
	if err != nil || again.Created {
		t.Fatalf("second EnsureVolume = %+v, %v", again, err)
	}
}

func TestEnsureVolumeNeverBinds(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.bindAfter(0)
	_, err := f.b.EnsureVolume(context.Background(), storage.VolumeSpec{Name: "x", Size: "1Gi"})
	var oe *storage.ObjectError
	if !errors.As(err, &oe) || oe.Object() != "PersistentVolumeClaim ml/x" || !strings.Contains(err.Error(), "deleted it") {
		t.Fatalf("err = %v", err)
	}
	if _, err := f.kube.Tracker().Get(corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims"), ns, "x"); err == nil {
		t.Fatal("the unbound PVC was not deleted")
	}
	// WaitForFirstConsumer classes are not waited for.
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	f2 := newFixture(t, []runtime.Object{&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "trident-nas"}, VolumeBindingMode: &mode}}, nil)
	if _, err := f2.b.EnsureVolume(context.Background(), storage.VolumeSpec{Name: "x", Size: "1Gi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.EnsureVolume(context.Background(), storage.VolumeSpec{Name: "y", Size: "lots"}); err == nil || !strings.Contains(err.Error(), `size "lots" is not a Kubernetes quantity`) {
		t.Fatalf("bad size: %v", err)
	}
}

func TestClone(t *testing.T) {
	ready, size := true, resource.MustParse("3Gi")
	vs := snapOf("djia30-data-lin1", "djia30-data", time.Now())
	vs.Status = &snapv1.VolumeSnapshotStatus{ReadyToUse: &ready, RestoreSize: &size}
	f := newFixture(t, []runtime.Object{boundPVC("djia30-data", "5Gi")}, []runtime.Object{vs})
	f.bindAfter(2)
	v, err := f.b.Clone(context.Background(), "djia30-data-lin1", "ws-ana")
	if err != nil {
		t.Fatal(err)
	}
	if !v.Created || v.Size != "5Gi" {
		t.Fatalf("clone = %+v", v)
	}
	obj, _ := f.kube.Tracker().Get(corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims"), ns, "ws-ana")
	p := obj.(*corev1.PersistentVolumeClaim)
	group := "snapshot.storage.k8s.io"
	if !reflect.DeepEqual(p.Spec.DataSource, &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: "djia30-data-lin1"}) {
		t.Fatalf("dataSource = %+v", p.Spec.DataSource)
	}
	again, err := f.b.Clone(context.Background(), "djia30-data-lin1", "ws-ana")
	if err != nil || again.Created {
		t.Fatalf("second clone = %+v, %v", again, err)
	}
	if _, err := f.b.Clone(context.Background(), "other", "ws-ana"); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("clone of another snapshot into ws-ana: %v", err)
	}
}

func TestListAndDelete(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	f := newFixture(t, nil, []runtime.Object{snapOf("a-1", "a", t0), snapOf("a-2", "a", t0.Add(time.Hour)), snapOf("b-1", "b", t0)})
	list, err := f.b.ListSnapshots(context.Background(), "a")
	if err != nil || len(list) != 2 || list[0].Name != "a-2" || list[1].Name != "a-1" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if err := f.b.DeleteSnapshot(context.Background(), "a-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.b.DeleteSnapshot(context.Background(), "a-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := f.b.Annotate(context.Background(), "a-2", map[string]string{storage.AnnotationLineage: `{"id":"x"}`}); err != nil {
		t.Fatal(err)
	}
	obj, _ := f.snap.Tracker().Get(vsGVR, ns, "a-2")
	if got := obj.(*snapv1.VolumeSnapshot).Annotations[storage.AnnotationLineage]; got != `{"id":"x"}` {
		t.Fatalf("annotation = %q", got)
	}
}
