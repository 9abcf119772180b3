package trident

import (
	"context"
	"errors"
	"fmt"
	"maps"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/branchml/branchml/agents/backends/storage"
)

// TASR status.state values (Trident's TridentActionState*).
const (
	TASRSucceeded  = "Succeeded"
	TASRFailed     = "Failed"
	TASRInProgress = "In progress"
)

// RestoreName is the deterministic TridentActionSnapshotRestore name of a
// restore of snapshot (at most 253 characters): a retry of an unfinished
// restore finds and waits for the same CR.
func RestoreName(snapshot string) string {
	n := "branchml-restore-" + snapshot
	if len(n) > 253 {
		n = n[:253]
	}
	return n
}

// Restore rolls the PVC volume back in place to snapshot, which must be
// a readyToUse VolumeSnapshot of it, and the newest of its snapshots that
// have a status.creationTime (snapshots without one are not cut yet and are
// skipped, as Trident skips them). How depends on the restore mode:
//
//   - TASR (mode "tasr", or "auto" when the cluster serves Trident's
//     TridentActionSnapshotRestore, Trident 24.10 or later): a TASR in the
//     PVC's namespace, waited for until its status.state is Succeeded or
//     Failed (up to the ready timeout). A TASR is a one-shot action (Trident
//     acts on it once, when it is added), so a finished TASR of the same name
//     from an earlier restore is deleted and a new one created: restoring the
//     same snapshot again really restores again. An unfinished one (a retry)
//     is waited for.
//   - recreate (mode "recreate", or "auto" without the TASR CRD): the PVC is
//     deleted and created again with the same name, labels, access mode and
//     class, from the snapshot as dataSource, as NetApp's DataOps Toolkit
//     restores; its old PersistentVolume goes by the class's reclaim policy.
//
// Errors wrap storage.ErrNotFound (no such snapshot of the volume) or
// storage.ErrUnsupported (not the newest snapshot: clone it instead; or
// mode "tasr" without the CRD).
func (b *Backend) Restore(ctx context.Context, volume, snapshot string) error {
	ns := b.opt.namespace
	vs, err := b.restorable(ctx, volume, snapshot)
	if err != nil {
		return err
	}
	served, err := b.tasrServed()
	if err != nil {
		return err
	}
	switch {
	case b.opt.restoreMode == RestoreTASR && !served:
		return &storage.ObjectError{Op: "restore", Kind: "PersistentVolumeClaim", Namespace: ns, Name: volume,
			Err: fmt.Errorf("%w: the cluster does not serve %s (in-place restore needs Trident 24.10 or later); set backends.storage.restoreMode to recreate, or restore into a new volume with clone", storage.ErrUnsupported, TASR.GroupResource())}
	case b.opt.restoreMode == RestoreRecreate || !served:
		return b.recreate(ctx, volume, vs)
	}
	return b.restoreTASR(ctx, volume, snapshot)
}

func (b *Backend) tasrServed() (bool, error) {
	list, err := b.kube.Discovery().ServerResourcesForGroupVersion(TASR.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, apiErr("discover", "APIGroup", "", TASR.GroupVersion().String(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == TASR.Resource {
			return true, nil
		}
	}
	return false, nil
}

// restorable checks that snapshot is a ready VolumeSnapshot of volume and
// its newest one among those with a status.creationTime.
func (b *Backend) restorable(ctx context.Context, volume, snapshot string) (*snapv1.VolumeSnapshot, error) {
	ns := b.opt.namespace
	list, err := b.snap.SnapshotV1().VolumeSnapshots(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr("list", "VolumeSnapshot", ns, "", err)
	}
	var target, newest *snapv1.VolumeSnapshot
	for i := range list.Items {
		vs := &list.Items[i]
		if src := vs.Spec.Source.PersistentVolumeClaimName; src == nil || *src != volume {
			continue
		}
		if vs.Name == snapshot {
			target = vs
		}
		if vs.Status == nil || vs.Status.CreationTime == nil || vs.Status.CreationTime.IsZero() {
			continue // not cut yet: not "newer" than anything (as Trident decides)
		}
		if newest == nil || vs.Status.CreationTime.After(newest.Status.CreationTime.Time) {
			newest = vs
		}
	}
	if target == nil {
		return nil, &storage.ObjectError{Op: "restore", Kind: "VolumeSnapshot", Namespace: ns, Name: snapshot, Status: 404,
			Err: fmt.Errorf("%w as a snapshot of PersistentVolumeClaim %s", storage.ErrNotFound, volume)}
	}
	st := target.Status
	if st == nil || st.ReadyToUse == nil || !*st.ReadyToUse || st.CreationTime == nil || st.CreationTime.IsZero() {
		return nil, &storage.ObjectError{Op: "restore", Kind: "VolumeSnapshot", Namespace: ns, Name: snapshot, Retriable: true,
			Err: errors.New("the snapshot is not readyToUse (or has no status.creationTime) yet")}
	}
	if newest != nil && newest.Name != snapshot && newest.Status.CreationTime.After(st.CreationTime.Time) {
		return nil, &storage.ObjectError{Op: "restore", Kind: "VolumeSnapshot", Namespace: ns, Name: snapshot,
			Err: fmt.Errorf("%w: an in-place restore goes back only to the newest snapshot of a PVC, and that is %s; clone %s into a new volume instead", storage.ErrUnsupported, newest.Name, snapshot)}
	}
	return target, nil
}

func (b *Backend) restoreTASR(ctx context.Context, volume, snapshot string) error {
	ns := b.opt.namespace
	res := b.dyn.Resource(TASR).Namespace(ns)
	name := RestoreName(snapshot)
	cur, err := res.Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		state, _, _ := unstructured.NestedString(cur.Object, "status", "state")
		done, _, _ := unstructured.NestedString(cur.Object, "status", "completionTime")
		spec, _, _ := unstructured.NestedStringMap(cur.Object, "spec")
		if state == TASRSucceeded || state == TASRFailed || done != "" || spec["pvcName"] != volume {
			// One-shot: Trident never acts on it again. Replace it.
			if err := b.deleteTASR(ctx, name, cur.GetUID()); err != nil {
				return err
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
		if cur, err = res.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return apiErr("create", "TridentActionSnapshotRestore", ns, name, err)
		}
	}
	uid := cur.GetUID()
	var state, message string
	err = b.wait(ctx, b.opt.readyTimeout, func() (bool, error) {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, apiErr("get", "TridentActionSnapshotRestore", ns, name, err)
		}
		if u.GetUID() != uid {
			return false, &storage.ObjectError{Op: "restore", Kind: "TridentActionSnapshotRestore", Namespace: ns, Name: name,
				Err: errors.New("it was replaced while this restore waited for it (another restore of the same snapshot?)")}
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

// deleteTASR deletes the TASR of that UID and waits until it is gone.
func (b *Backend) deleteTASR(ctx context.Context, name string, uid any) error {
	ns := b.opt.namespace
	res := b.dyn.Resource(TASR).Namespace(ns)
	if err := res.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return apiErr("delete", "TridentActionSnapshotRestore", ns, name, err)
	}
	err := b.wait(ctx, b.opt.bindTimeout, func() (bool, error) {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, apiErr("get", "TridentActionSnapshotRestore", ns, name, err)
		}
		return u.GetUID() != uid, nil
	})
	if errors.Is(err, errTimeout) {
		return &storage.ObjectError{Op: "delete", Kind: "TridentActionSnapshotRestore", Namespace: ns, Name: name, Retriable: true,
			Err: fmt.Errorf("the finished TASR of an earlier restore is still there after %s (a finalizer?)", b.opt.bindTimeout)}
	}
	return err
}

// recreate deletes the PVC volume and creates it again from vs.
func (b *Backend) recreate(ctx context.Context, volume string, vs *snapv1.VolumeSnapshot) error {
	ns := b.opt.namespace
	pvcs := b.kube.CoreV1().PersistentVolumeClaims(ns)
	old, err := pvcs.Get(ctx, volume, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// A retry after the delete: only the create is left to do.
		old, err = &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{b.opt.accessMode}}}, nil
		if b.opt.storageClass != "" {
			sc := b.opt.storageClass
			old.Spec.StorageClassName = &sc
		}
		old.Labels = map[string]string{storage.KeyManagedBy: storage.ManagedBy, storage.KeyVolume: storage.LabelValue(volume)}
	}
	if err != nil {
		return apiErr("restore", "PersistentVolumeClaim", ns, volume, err)
	}
	size, err := b.cloneSize(ctx, vs)
	if err != nil {
		return err
	}
	if q, ok := old.Spec.Resources.Requests[corev1.ResourceStorage]; ok && q.Cmp(size) > 0 {
		size = q
	}
	fresh := b.newPVC(volume, size, nil)
	fresh.Labels = maps.Clone(old.Labels)
	fresh.Annotations = map[string]string{storage.AnnotationSourceSnap: vs.Name}
	fresh.Spec.AccessModes = old.Spec.AccessModes
	fresh.Spec.StorageClassName = old.Spec.StorageClassName
	group := SnapshotAPIGroup
	fresh.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: vs.Name}
	b.opt.log.Infof("PersistentVolumeClaim %s/%s: restoring by re-creating it from VolumeSnapshot %s", ns, volume, vs.Name)
	if uid := old.UID; uid != "" {
		if err := pvcs.Delete(ctx, volume, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
			return apiErr("delete", "PersistentVolumeClaim", ns, volume, err)
		}
		err = b.wait(ctx, b.opt.bindTimeout, func() (bool, error) {
			cur, err := pvcs.Get(ctx, volume, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			if err != nil {
				return false, apiErr("get", "PersistentVolumeClaim", ns, volume, err)
			}
			return cur.UID != uid, nil
		})
		if errors.Is(err, errTimeout) {
			return &storage.ObjectError{Op: "restore", Kind: "PersistentVolumeClaim", Namespace: ns, Name: volume, Retriable: true,
				Err: fmt.Errorf("still terminating after %s: a pod still uses it (kubernetes.io/pvc-protection); stop it and retry", b.opt.bindTimeout)}
		}
		if err != nil {
			return err
		}
	}
	created, err := pvcs.Create(ctx, fresh, metav1.CreateOptions{})
	if err != nil {
		return &storage.ObjectError{Op: "restore", Kind: "PersistentVolumeClaim", Namespace: ns, Name: volume,
			Err: fmt.Errorf("deleted it, but could not create it again from %s: %w; create it with kubectl (dataSource VolumeSnapshot %s) or rerun the restore", vs.Name, err, vs.Name)}
	}
	return b.waitBound(ctx, created, false)
}
