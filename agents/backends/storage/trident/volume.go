package trident

import (
	"context"
	"errors"
	"fmt"
	"maps"

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
	return b.toVolume(pvc, created), nil
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

func (b *Backend) toVolume(pvc *corev1.PersistentVolumeClaim, created bool) *storage.Volume {
	v := &storage.Volume{Name: pvc.Name, Namespace: pvc.Namespace, Created: created}
	if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
		v.Size = q.String()
	} else if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		v.Size = q.String()
	}
	return v
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
// dataSource (apiGroup snapshot.storage.k8s.io), of at least the snapshot's
// restoreSize, and waits until it is Bound. A claim of that name with the
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
		return b.toVolume(pvc, false), nil
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
	size := resource.MustParse("1Gi")
	if vs.Status.RestoreSize != nil {
		size = *vs.Status.RestoreSize
	}
	if src := vs.Spec.Source.PersistentVolumeClaimName; src != nil {
		if pvc, err := b.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, *src, metav1.GetOptions{}); err == nil {
			if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok && q.Cmp(size) > 0 {
				size = q
			}
		}
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
	return b.toVolume(pvc, true), nil
}
