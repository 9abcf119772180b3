package trident

// Unit tests on client-go's fakes, kept only for what the real test bed
// (cluster_test.go) cannot produce: a snapshot whose VolumeSnapshot and
// content both lack a restoreSize (the csi-snapshotter always writes the
// driver's size), and Trident's own TASR answers (no Trident runs there).
// Everything else is proven on the real cluster.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
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

type fixture struct {
	b    *Backend
	kube *kfake.Clientset
	snap *snapfake.Clientset
	dyn  *dynfake.FakeDynamicClient
}

func newFixture(t *testing.T, kubeObjs, snapObjs []runtime.Object, opts ...Option) *fixture {
	t.Helper()
	kube := kfake.NewSimpleClientset(kubeObjs...)
	kube.Fake.Resources = []*metav1.APIResourceList{{GroupVersion: "trident.netapp.io/v1", APIResources: []metav1.APIResource{
		{Name: "tridentactionsnapshotrestores", Namespaced: true, Kind: "TridentActionSnapshotRestore"}}}}
	snap := snapfake.NewSimpleClientset(snapObjs...)
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{TASR: "TridentActionSnapshotRestoreList"})
	b, err := New(kube, snap, dyn, append([]Option{WithNamespace(ns), WithSnapshotClass("c"),
		WithPollInterval(time.Millisecond), WithReadyTimeout(200 * time.Millisecond), WithBindTimeout(200 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{b: b, kube: kube, snap: snap, dyn: dyn}
}

func readySnap(name, pvc string) *snapv1.VolumeSnapshot {
	ct := metav1.NewTime(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	return &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:   snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
		Status: &snapv1.VolumeSnapshotStatus{ReadyToUse: new(true), CreationTime: &ct, BoundVolumeSnapshotContentName: new("content-" + name)}}
}

// TestCloneRefusesWithoutAnySize (issue 19): no restoreSize anywhere and the
// source PVC gone: refuse, naming each value, instead of a 1Gi guess.
func TestCloneRefusesWithoutAnySize(t *testing.T) {
	content := &snapv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: "content-d-1"},
		Status: &snapv1.VolumeSnapshotContentStatus{ReadyToUse: new(true)}}
	f := newFixture(t, nil, []runtime.Object{readySnap("d-1", "d"), content})
	_, err := f.b.Clone(context.Background(), "d-1", "d-back")
	if err == nil || !strings.Contains(err.Error(), "no size to restore it at: restoreSize absent on the VolumeSnapshot, absent on its VolumeSnapshotContent, source PVC gone") {
		t.Fatalf("err = %v", err)
	}
	for _, a := range f.kube.Actions() {
		if a.GetVerb() == "create" {
			t.Fatalf("created a %s", a.GetResource().Resource)
		}
	}
}

// TestRestoreTASRFailed: Trident's Failed state and message become the
// error, not retriable.
func TestRestoreTASRFailed(t *testing.T) {
	f := newFixture(t, []runtime.Object{&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: ns}}},
		[]runtime.Object{readySnap("d-1", "d")}, WithRestoreMode(RestoreTASR))
	f.dyn.PrependReactor("get", "tridentactionsnapshotrestores", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj, err := f.dyn.Tracker().Get(TASR, ns, a.(k8stesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		u := obj.(*unstructured.Unstructured).DeepCopy()
		u.Object["status"] = map[string]any{"state": TASRFailed, "message": "volume d is in use by a running pod"}
		return true, u, nil
	})
	err := f.b.Restore(context.Background(), "d", "d-1")
	var oe *storage.ObjectError
	if !errors.As(err, &oe) || oe.Object() != "TridentActionSnapshotRestore ml/branchml-restore-d-1" || oe.Temporary() ||
		!strings.HasSuffix(err.Error(), "Trident reports state Failed: volume d is in use by a running pod") {
		t.Fatalf("err = %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	for _, c := range []struct {
		opts []Option
		want string
	}{
		{[]Option{WithDriver("")}, "empty CSI driver name"},
		{[]Option{WithRestoreMode("rsync")}, `restore mode "rsync"`},
		{[]Option{WithAccessMode("ReadOnlyMany")}, `access mode "ReadOnlyMany"`},
	} {
		if _, err := New(kfake.NewSimpleClientset(), snapfake.NewSimpleClientset(), dynfake.NewSimpleDynamicClient(runtime.NewScheme()), c.opts...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%d opts) = %v, want %q", len(c.opts), err, c.want)
		}
	}
}
