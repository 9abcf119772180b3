package trident

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/branchml/branchml/agents/backends/storage"
)

// EnsureVolume returns the PVC named spec.Name in the namespace, creating it
// (storage class, access mode, spec.Size) when absent, and waits until it is
// Bound. A storage class with volumeBindingMode WaitForFirstConsumer binds
// only when a pod uses the claim, so then the wait is skipped. A claim this
// call created that does not bind in time is deleted again.
func (b *Backend) EnsureVolume(ctx context.Context, spec storage.VolumeSpec) (*storage.Volume, error) {
	ns := b.opt.namespace
	if err := storage.ValidName(spec.Name); err != nil {
		return nil, err
	}
	pvc, err := b.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, spec.Name, metav1.GetOptions{})
	created := false
	switch {
	case err == nil:
	case apierrors.IsNotFound(err):
		size, perr := resource.ParseQuantity(spec.Size)
		if perr != nil {
			return nil, fmt.Errorf("volume %s: size %q is not a Kubernetes quantity (e.g. 10Gi): %w", spec.Name, spec.Size, perr)
		}
		pvc = b.newPVC(spec.Name, size, spec.Labels)
		pvc, err = b.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
		if err != nil {
			return nil, apiErr("create", "PersistentVolumeClaim", ns, spec.Name, err)
		}
		created = true
	default:
		return nil, apiErr("get", "PersistentVolumeClaim", ns, spec.Name, err)
	}
	if err := b.waitBound(ctx, pvc, created); err != nil {
		return nil, err
	}
	return b.toVolume(ctx, pvc, created)
}

func (b *Backend) newPVC(name string, size resource.Quantity, labels map[string]string) *corev1.PersistentVolumeClaim {
	l := map[string]string{storage.KeyManagedBy: storage.ManagedBy}
	maps.Copy(l, labels)
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.opt.namespace, Labels: l},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{b.opt.accessMode},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if b.opt.storageClass != "" {
		sc := b.opt.storageClass
		pvc.Spec.StorageClassName = &sc
	}
	return pvc
}

// toVolume describes pvc; with a host path directory (WithHostPathDir),
// Path is the directory its PV's CSI volumeHandle names there.
func (b *Backend) toVolume(ctx context.Context, pvc *corev1.PersistentVolumeClaim, created bool) (*storage.Volume, error) {
	v := &storage.Volume{Name: pvc.Name, Namespace: pvc.Namespace, Created: created}
	if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
		v.Size = q.String()
	} else if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		v.Size = q.String()
	}
	if b.opt.hostPathDir == "" {
		return v, nil
	}
	p, err := b.hostPath(ctx, pvc)
	if err != nil {
		return nil, err
	}
	v.Path = p
	return v, nil
}

// hostPath resolves a bound PVC to its directory on this machine: PV
// spec.csi.volumeHandle under the hostpath driver's data directory.
func (b *Backend) hostPath(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (string, error) {
	fail := func(format string, a ...any) error {
		return &storage.ObjectError{Op: "locate on this machine", Kind: "PersistentVolumeClaim", Namespace: pvc.Namespace, Name: pvc.Name,
			Err: fmt.Errorf(format+" (backends.storage.hostPathDir is set: only for a hostpath CSI driver on this machine)", a...)}
	}
	if pvc.Spec.VolumeName == "" {
		return "", fail("not bound to a PersistentVolume")
	}
	pv, err := b.kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", apiErr("get", "PersistentVolume", "", pvc.Spec.VolumeName, err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != b.opt.driver {
		return "", fail("PersistentVolume %s is not a CSI volume of %s", pv.Name, b.opt.driver)
	}
	h := pv.Spec.CSI.VolumeHandle
	if h == "" || h != filepath.Base(h) || h == "." || h == ".." {
		return "", fail("PersistentVolume %s has volumeHandle %q, not a directory name", pv.Name, h)
	}
	dir := filepath.Join(b.opt.hostPathDir, h)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fail("PersistentVolume %s: %s is not a directory", pv.Name, dir)
	}
	return dir, nil
}

// waitBound waits until the claim is Bound (not for WaitForFirstConsumer
// classes). On timeout a claim created by the caller is deleted.
func (b *Backend) waitBound(ctx context.Context, pvc *corev1.PersistentVolumeClaim, created bool) error {
	if pvc.Status.Phase == corev1.ClaimBound {
		return nil
	}
	if sc := pvc.Spec.StorageClassName; sc != nil && *sc != "" {
		class, err := b.kube.StorageV1().StorageClasses().Get(ctx, *sc, metav1.GetOptions{})
		if err == nil && class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
			b.opt.log.Infof("PersistentVolumeClaim %s/%s: storage class %s binds on first use; not waiting", pvc.Namespace, pvc.Name, *sc)
			return nil
		}
	}
	ns, name := pvc.Namespace, pvc.Name
	phase := pvc.Status.Phase
	err := b.wait(ctx, b.opt.bindTimeout, func() (bool, error) {
		cur, err := b.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, apiErr("get", "PersistentVolumeClaim", ns, name, err)
		}
		*pvc = *cur
		phase = cur.Status.Phase
		if phase == corev1.ClaimLost {
			return false, &storage.ObjectError{Op: "wait for Bound", Kind: "PersistentVolumeClaim", Namespace: ns, Name: name,
				Err: errors.New("the claim is Lost: its PersistentVolume is gone")}
		}
		return phase == corev1.ClaimBound, nil
	})
	if errors.Is(err, errTimeout) {
		what := "left in place"
		if created {
			what = "deleted it"
			if derr := b.kube.CoreV1().PersistentVolumeClaims(ns).Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{}); derr != nil && !apierrors.IsNotFound(derr) {
				what = "could not delete it: " + derr.Error()
			}
		}
		return &storage.ObjectError{Op: "wait for Bound", Kind: "PersistentVolumeClaim", Namespace: ns, Name: name, Retriable: true,
			Err: fmt.Errorf("still %q after %s (%s); check the storage class and Trident's backends (kubectl describe pvc -n %s %s)", phase, b.opt.bindTimeout, what, ns, name)}
	}
	return err
}

// Clone creates the PVC newVolume with the VolumeSnapshot snapshot as
// dataSource (apiGroup snapshot.storage.k8s.io), sized by cloneSize, and
// waits until it is Bound. A claim of that name with the
// same dataSource is returned as is (Created false); any other claim of that
// name is an error wrapping storage.ErrExists.
func (b *Backend) Clone(ctx context.Context, snapshot, newVolume string) (*storage.Volume, error) {
	ns := b.opt.namespace
	if err := storage.ValidName(newVolume); err != nil {
		return nil, err
	}
	if pvc, err := b.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, newVolume, metav1.GetOptions{}); err == nil {
		ds := pvc.Spec.DataSource
		if ds == nil || ds.Kind != "VolumeSnapshot" || ds.Name != snapshot {
			return nil, &storage.ObjectError{Op: "clone " + snapshot + " into", Kind: "PersistentVolumeClaim", Namespace: ns, Name: newVolume, Status: 409,
				Err: fmt.Errorf("%w and is not a clone of %s: pick another name", storage.ErrExists, snapshot)}
		}
		if err := b.waitBound(ctx, pvc, false); err != nil {
			return nil, err
		}
		return b.toVolume(ctx, pvc, false)
	} else if !apierrors.IsNotFound(err) {
		return nil, apiErr("get", "PersistentVolumeClaim", ns, newVolume, err)
	}
	vs, err := b.snap.SnapshotV1().VolumeSnapshots(ns).Get(ctx, snapshot, metav1.GetOptions{})
	if err != nil {
		return nil, apiErr("get", "VolumeSnapshot", ns, snapshot, err)
	}
	if vs.Status == nil || vs.Status.ReadyToUse == nil || !*vs.Status.ReadyToUse {
		return nil, &storage.ObjectError{Op: "clone", Kind: "VolumeSnapshot", Namespace: ns, Name: snapshot, Retriable: true,
			Err: errors.New("the snapshot is not readyToUse yet")}
	}
	size, err := b.cloneSize(ctx, vs)
	if err != nil {
		return nil, err
	}
	pvc := b.newPVC(newVolume, size, map[string]string{storage.KeyVolume: newVolume})
	pvc.Annotations = map[string]string{storage.AnnotationSourceSnap: snapshot}
	group := SnapshotAPIGroup
	pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: snapshot}
	pvc, err = b.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		return nil, apiErr("create", "PersistentVolumeClaim", ns, newVolume, err)
	}
	if err := b.waitBound(ctx, pvc, true); err != nil {
		return nil, err
	}
	return b.toVolume(ctx, pvc, true)
}

// cloneSize is the size of a volume made from vs: the largest positive
// restoreSize the VolumeSnapshot and its bound VolumeSnapshotContent
// report, raised to the source PVC's request when that PVC still exists. A
// restoreSize that is absent, zero or negative (seen from Trident after a
// failed ONTAP size query) is not a size; when no size is known at all the
// clone is refused with an error naming each value, never made at a guessed
// size that would fail or truncate the restore.
func (b *Backend) cloneSize(ctx context.Context, vs *snapv1.VolumeSnapshot) (resource.Quantity, error) {
	ns := vs.Namespace
	var size resource.Quantity
	known := false
	vsSize, contentSize, srcSize := "absent", "absent", "gone"
	if q := vs.Status.RestoreSize; q != nil {
		vsSize = q.String()
		if q.Sign() > 0 {
			size, known = *q, true
		}
	}
	if cn := vs.Status.BoundVolumeSnapshotContentName; cn != nil && *cn != "" {
		c, err := b.snap.SnapshotV1().VolumeSnapshotContents().Get(ctx, *cn, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return size, apiErr("get", "VolumeSnapshotContent", "", *cn, err)
		}
		if err == nil && c.Status != nil && c.Status.RestoreSize != nil {
			contentSize = fmt.Sprint(*c.Status.RestoreSize)
			if n := *c.Status.RestoreSize; n > 0 && (!known || size.Value() < n) {
				size, known = *resource.NewQuantity(n, resource.BinarySI), true
			}
		}
	}
	if src := vs.Spec.Source.PersistentVolumeClaimName; src != nil {
		pvc, err := b.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, *src, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return size, apiErr("get", "PersistentVolumeClaim", ns, *src, err)
		}
		if err == nil {
			if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
				srcSize = q.String()
				if !known || q.Cmp(size) > 0 {
					size, known = q, true
				}
			}
		}
	}
	if !known {
		return size, &storage.ObjectError{Op: "clone", Kind: "VolumeSnapshot", Namespace: ns, Name: vs.Name,
			Err: fmt.Errorf("no size to restore it at: restoreSize %s on the VolumeSnapshot, %s on its VolumeSnapshotContent, source PVC %s; fix the snapshot's status on the storage side (kubectl describe volumesnapshotcontent), or clone from another snapshot", vsSize, contentSize, srcSize)}
	}
	return size, nil
}

// HostPath returns the directory of the PVC volume on this machine
// (WithHostPathDir); storage.ErrUnsupported without a host path directory.
func (b *Backend) HostPath(ctx context.Context, volume string) (string, error) {
	if b.opt.hostPathDir == "" {
		return "", fmt.Errorf("%w: PVCs are not directories on this machine (backends.storage.hostPathDir is not set)", storage.ErrUnsupported)
	}
	pvc, err := b.kube.CoreV1().PersistentVolumeClaims(b.opt.namespace).Get(ctx, volume, metav1.GetOptions{})
	if err != nil {
		return "", apiErr("get", "PersistentVolumeClaim", b.opt.namespace, volume, err)
	}
	return b.hostPath(ctx, pvc)
}
