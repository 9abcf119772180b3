package trident

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/branchml/branchml/agents/backends/storage"
)

// TASR status.state values.
const (
	TASRSucceeded = "Succeeded"
	TASRFailed    = "Failed"
)

// RestoreName is the deterministic TridentActionSnapshotRestore name of a
// restore of snapshot (at most 253 characters).
func RestoreName(snapshot string) string {
	n := "branchml-restore-" + snapshot
	if len(n) > 253 {
		n = n[:253]
	}
	return n
}

// Restore rolls the PVC volume back in place to snapshot with a
// TridentActionSnapshotRestore in the PVC's namespace and waits until its
// status.state is Succeeded or Failed (up to the ready timeout). Trident
// restores only the newest snapshot of a PVC and needs Trident 24.10 or
// later; otherwise the error wraps storage.ErrUnsupported and says to clone.
// A TASR of the same name that already Succeeded makes this a no-op; one
// that Failed is replaced.
func (b *Backend) Restore(ctx context.Context, volume, snapshot string) error {
	ns := b.opt.namespace
	list, err := b.kube.Discovery().ServerResourcesForGroupVersion(TASR.GroupVersion().String())
	served := false
	if err == nil {
		for _, r := range list.APIResources {
			served = served || r.Name == TASR.Resource
		}
	}
	if !served {
		return &storage.ObjectError{Op: "restore", Kind: "PersistentVolumeClaim", Namespace: ns, Name: volume,
			Err: fmt.Errorf("%w: the cluster does not serve %s (in-place restore needs Trident 24.10 or later); restore into a new volume with clone instead", storage.ErrUnsupported, TASR.GroupResource())}
	}
	snaps, err := b.ListSnapshots(ctx, volume)
	if err != nil {
		return err
	}
	if len(snaps) == 0 {
		return &storage.ObjectError{Op: "restore", Kind: "VolumeSnapshot", Namespace: ns, Name: snapshot, Status: 404,
			Err: fmt.Errorf("%w: no snapshot of PersistentVolumeClaim %s", storage.ErrNotFound, volume)}
	}
	found := false
	for _, s := range snaps {
		found = found || s.Name == snapshot
	}
	if !found {
		return &storage.ObjectError{Op: "restore", Kind: "VolumeSnapshot", Namespace: ns, Name: snapshot, Status: 404,
			Err: fmt.Errorf("%w as a snapshot of PersistentVolumeClaim %s", storage.ErrNotFound, volume)}
	}
	if snaps[0].Name != snapshot {
		return &storage.ObjectError{Op: "restore", Kind: "VolumeSnapshot", Namespace: ns, Name: snapshot,
			Err: fmt.Errorf("%w: Trident restores only the newest snapshot of a PVC, and that is %s; clone %s into a new volume instead", storage.ErrUnsupported, snaps[0].Name, snapshot)}
	}
	res := b.dyn.Resource(TASR).Namespace(ns)
	name := RestoreName(snapshot)
	cur, err := res.Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		state, _, _ := unstructured.NestedString(cur.Object, "status", "state")
		switch state {
		case TASRSucceeded:
			return nil
		case TASRFailed:
			if err := res.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return apiErr("delete", "TridentActionSnapshotRestore", ns, name, err)
			}
			cur = nil
		}
	case apierrors.IsNotFound(err):
		cur = nil
	default:
		return apiErr("get", "TridentActionSnapshotRestore", ns, name, err)
	}
	if cur == nil {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": TASR.GroupVersion().String(),
			"kind":       "TridentActionSnapshotRestore",
			"metadata": map[string]any{
				"name": name, "namespace": ns,
				"labels": map[string]any{storage.KeyManagedBy: storage.ManagedBy, storage.KeyVolume: storage.LabelValue(volume)},
			},
			"spec": map[string]any{"pvcName": volume, "volumeSnapshotName": snapshot},
		}}
		if _, err := res.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return apiErr("create", "TridentActionSnapshotRestore", ns, name, err)
		}
	}
	var state, message string
	err = b.wait(ctx, b.opt.readyTimeout, func() (bool, error) {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, apiErr("get", "TridentActionSnapshotRestore", ns, name, err)
		}
		state, _, _ = unstructured.NestedString(u.Object, "status", "state")
		message, _, _ = unstructured.NestedString(u.Object, "status", "message")
		return state == TASRSucceeded || state == TASRFailed, nil
	})
	if errors.Is(err, errTimeout) {
		return &storage.ObjectError{Op: "restore", Kind: "TridentActionSnapshotRestore", Namespace: ns, Name: name, Retriable: true,
			Err: fmt.Errorf("state %q after %s: the restore may still finish; check kubectl get tasr -n %s %s", state, b.opt.readyTimeout, ns, name)}
	}
	if err != nil {
		return err
	}
	if state == TASRFailed {
		return &storage.ObjectError{Op: "restore", Kind: "TridentActionSnapshotRestore", Namespace: ns, Name: name,
			Err: fmt.Errorf("Trident reports state Failed: %s", message)}
	}
	return nil
}
