package trident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/branchml/branchml/agents/backends/storage"
)

// ErrPreflight is storage.ErrPreflight, wrapped by the errors of Preflight.
var ErrPreflight = storage.ErrPreflight

// Annotations marking default classes (Kubernetes' and external-snapshotter's).
const (
	DefaultStorageClassAnnotation  = "storageclass.kubernetes.io/is-default-class"
	DefaultSnapshotClassAnnotation = "snapshot.storage.kubernetes.io/is-default-class"
)

// Preflight checks, read-only and once per Backend, that the cluster can
// do what the backend will ask: snapshot.storage.k8s.io/v1 serves
// volumesnapshots, volumesnapshotcontents and volumesnapshotclasses; the
// storage class (or, when none is configured, the cluster's default class)
// exists and provisions with the configured CSI driver; the snapshot class
// exists with that driver, or, when none is configured, exactly one class
// of the driver is marked default (otherwise the snapshot controller would
// leave every VolumeSnapshot pending forever, external-snapshotter #1203).
// Errors wrap ErrPreflight and name the object and the fix. Snapshot calls
// it first; the train stage calls it before provisioning and in --dry-run.
func (b *Backend) Preflight(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.checked {
		return nil
	}
	list, err := b.kube.Discovery().ServerResourcesForGroupVersion(SnapshotGroupVersion)
	missing := []string{"volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses"}
	if err == nil {
		for _, r := range list.APIResources {
			missing = slices.DeleteFunc(missing, func(m string) bool { return m == r.Name })
		}
	}
	if len(missing) > 0 {
		why := "the API server does not serve " + strings.Join(missing, ", ")
		if err != nil {
			why = err.Error()
		}
		return fmt.Errorf("%w: %s is not served (%s): install the external-snapshotter CRDs and snapshot controller (https://github.com/kubernetes-csi/external-snapshotter)", ErrPreflight, SnapshotGroupVersion, why)
	}
	if err := b.checkStorageClass(ctx); err != nil {
		return err
	}
	class, err := b.snapshotClass(ctx)
	if err != nil {
		return err
	}
	b.class, b.checked = class, true
	return nil
}

func (b *Backend) checkStorageClass(ctx context.Context) error {
	drv := b.opt.driver
	if name := b.opt.storageClass; name != "" {
		sc, err := b.kube.StorageV1().StorageClasses().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w: StorageClass %q does not exist: create it with provisioner %s, or set backends.storage.storageClass to an existing one", ErrPreflight, name, drv)
		}
		if err != nil {
			return apiErr("get", "StorageClass", "", name, err)
		}
		if sc.Provisioner != drv {
			return fmt.Errorf("%w: StorageClass %q provisions with %q, not %s: set backends.storage.storageClass to a class of %s (or backends.storage.driver)", ErrPreflight, name, sc.Provisioner, drv, drv)
		}
		return nil
	}
	list, err := b.kube.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return apiErr("list", "StorageClass", "", "", err)
	}
	for _, sc := range list.Items {
		if sc.Annotations[DefaultStorageClassAnnotation] == "true" {
			if sc.Provisioner != drv {
				return fmt.Errorf("%w: no storage class configured and the default StorageClass %q provisions with %q, not %s: set backends.storage.storageClass", ErrPreflight, sc.Name, sc.Provisioner, drv)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: no storage class configured and the cluster has no default StorageClass: set backends.storage.storageClass to a class of %s", ErrPreflight, drv)
}

// snapshotClass returns the configured VolumeSnapshotClass after checking
// its driver, or the driver's default class.
func (b *Backend) snapshotClass(ctx context.Context) (string, error) {
	drv := b.opt.driver
	if name := b.opt.snapshotClass; name != "" {
		class, err := b.snap.SnapshotV1().VolumeSnapshotClasses().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("%w: VolumeSnapshotClass %q does not exist: create it with driver %s, or set snapshot.class to an existing one", ErrPreflight, name, drv)
		}
		if err != nil {
			return "", apiErr("get", "VolumeSnapshotClass", "", name, err)
		}
		if class.Driver != drv {
			return "", fmt.Errorf("%w: VolumeSnapshotClass %q has driver %q, not %s: set snapshot.class to a class of %s (or backends.storage.driver)", ErrPreflight, class.Name, class.Driver, drv, drv)
		}
		return name, nil
	}
	list, err := b.snap.SnapshotV1().VolumeSnapshotClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", apiErr("list", "VolumeSnapshotClass", "", "", err)
	}
	var defaults []string
	for _, c := range list.Items {
		if c.Driver == drv && c.Annotations[DefaultSnapshotClassAnnotation] == "true" {
			defaults = append(defaults, c.Name)
		}
	}
	switch len(defaults) {
	case 1:
		return defaults[0], nil
	case 0:
		return "", fmt.Errorf("%w: snapshot.class is empty and no VolumeSnapshotClass of driver %s is marked default (annotation %s: \"true\"): the snapshot controller would leave every VolumeSnapshot pending; set snapshot.class, or mark one class default", ErrPreflight, drv, DefaultSnapshotClassAnnotation)
	default:
		return "", fmt.Errorf("%w: snapshot.class is empty and %d VolumeSnapshotClasses of driver %s are marked default (%s): the snapshot controller refuses to choose; set snapshot.class", ErrPreflight, len(defaults), drv, strings.Join(defaults, ", "))
	}
}

// Snapshot creates the VolumeSnapshot spec.Name of the PVC volume on the
// configured class, with spec.Labels (values must already be label syntax)
// and spec.Annotations, and waits for readyToUse up to the ready timeout.
// While waiting it reads status.error of the VolumeSnapshot and of its bound
// VolumeSnapshotContent. Only the VolumeSnapshot's own readyToUse counts:
// a content that is ready while its VolumeSnapshot is not (the snapshot
// controller has not confirmed it, or reports an error) is not a usable
// snapshot (PVCs name the VolumeSnapshot, and the controller refuses to
// restore from one that is not ready). On timeout the
// VolumeSnapshot is deleted (when branchml made it) and the error names the
// object that reported the last error. An existing VolumeSnapshot of the same
// PVC is waited for and returned; one of another PVC wraps storage.ErrExists.
func (b *Backend) Snapshot(ctx context.Context, volume string, spec storage.SnapshotSpec) (*storage.Snapshot, error) {
	ns := b.opt.namespace
	if err := storage.ValidName(spec.Name); err != nil {
		return nil, err
	}
	if err := b.Preflight(ctx); err != nil {
		return nil, err
	}
	vsc := b.snap.SnapshotV1().VolumeSnapshots(ns)
	vs, err := vsc.Get(ctx, spec.Name, metav1.GetOptions{})
	switch {
	case err == nil:
		if src := vs.Spec.Source.PersistentVolumeClaimName; src == nil || *src != volume {
			return nil, &storage.ObjectError{Op: "create", Kind: "VolumeSnapshot", Namespace: ns, Name: spec.Name, Status: 409,
				Err: fmt.Errorf("%w as a snapshot of another volume than %s", storage.ErrExists, volume)}
		}
	case apierrors.IsNotFound(err):
		if _, err := b.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, volume, metav1.GetOptions{}); err != nil {
			return nil, apiErr("snapshot", "PersistentVolumeClaim", ns, volume, err)
		}
		labels := map[string]string{storage.KeyManagedBy: storage.ManagedBy, storage.KeyVolume: storage.LabelValue(volume)}
		maps.Copy(labels, spec.Labels)
		class, pvc := b.class, volume
		vs = &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Namespace: ns, Labels: labels, Annotations: spec.Annotations},
			Spec: snapv1.VolumeSnapshotSpec{
				Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc},
				VolumeSnapshotClassName: &class,
			},
		}
		if vs, err = vsc.Create(ctx, vs, metav1.CreateOptions{}); err != nil {
			return nil, apiErr("create", "VolumeSnapshot", ns, spec.Name, err)
		}
	default:
		return nil, apiErr("get", "VolumeSnapshot", ns, spec.Name, err)
	}
	return b.waitReady(ctx, vs)
}

// waitReady polls the VolumeSnapshot and its content until one is readyToUse.
func (b *Backend) waitReady(ctx context.Context, vs *snapv1.VolumeSnapshot) (*storage.Snapshot, error) {
	ns, name := vs.Namespace, vs.Name
	var content *snapv1.VolumeSnapshotContent
	var lastErr *storage.ObjectError // the last status.error seen, on whichever object
	contentReady := false            // the storage has cut the snapshot
	polls := 0
	err := b.wait(ctx, b.opt.readyTimeout, func() (bool, error) {
		polls++
		cur, err := b.snap.SnapshotV1().VolumeSnapshots(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, apiErr("get", "VolumeSnapshot", ns, name, err)
		}
		vs = cur
		st := vs.Status
		if st == nil {
			return false, nil
		}
		if st.Error != nil && st.Error.Message != nil {
			lastErr = &storage.ObjectError{Op: "wait for readyToUse", Kind: "VolumeSnapshot", Namespace: ns, Name: name, Err: errors.New(*st.Error.Message)}
		}
		if st.BoundVolumeSnapshotContentName != nil && *st.BoundVolumeSnapshotContentName != "" {
			cn := *st.BoundVolumeSnapshotContentName
			c, err := b.snap.SnapshotV1().VolumeSnapshotContents().Get(ctx, cn, metav1.GetOptions{})
			if err == nil {
				content = c
				if c.Status != nil && c.Status.Error != nil && c.Status.Error.Message != nil {
					lastErr = &storage.ObjectError{Op: "wait for readyToUse", Kind: "VolumeSnapshotContent", Name: cn, Err: errors.New(*c.Status.Error.Message)}
				}
				contentReady = c.Status != nil && c.Status.ReadyToUse != nil && *c.Status.ReadyToUse
			} else if !apierrors.IsNotFound(err) {
				return false, apiErr("get", "VolumeSnapshotContent", "", cn, err)
			}
		}
		if st.ReadyToUse != nil && *st.ReadyToUse {
			return true, nil
		}
		if polls%10 == 0 && contentReady {
			b.opt.log.Warnf("VolumeSnapshot %s/%s: its content is readyToUse but the snapshot is not yet; waiting for the snapshot controller", ns, name)
		} else if polls%10 == 0 {
			b.opt.log.Infof("VolumeSnapshot %s/%s: waiting for readyToUse", ns, name)
		}
		return false, nil
	})
	if errors.Is(err, errTimeout) {
		return nil, b.abandon(ctx, vs, lastErr, contentReady)
	}
	if err != nil {
		return nil, err
	}
	return toSnapshot(vs, content), nil
}

// abandon deletes a VolumeSnapshot that did not become ready (when branchml
// made it) and returns the timeout error naming the object at fault.
func (b *Backend) abandon(ctx context.Context, vs *snapv1.VolumeSnapshot, lastErr *storage.ObjectError, contentReady bool) error {
	ns, name := vs.Namespace, vs.Name
	cleanup := "left it in place (not made by branchml)"
	if vs.Labels[storage.KeyManagedBy] == storage.ManagedBy {
		cleanup = fmt.Sprintf("deleted VolumeSnapshot %s/%s", ns, name)
		err := b.snap.SnapshotV1().VolumeSnapshots(ns).Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			cleanup = fmt.Sprintf("could not delete VolumeSnapshot %s/%s: %v", ns, name, err)
		}
	}
	oe := &storage.ObjectError{Op: "wait for readyToUse", Kind: "VolumeSnapshot", Namespace: ns, Name: name, Retriable: true}
	why := "no error reported"
	if lastErr != nil {
		oe.Kind, oe.Namespace, oe.Name = lastErr.Kind, lastErr.Namespace, lastErr.Name
		why = "last error: " + lastErr.Err.Error()
	}
	if contentReady {
		why += "; its VolumeSnapshotContent is readyToUse but the VolumeSnapshot is not, so it cannot be restored from: is the snapshot controller running?"
	}
	oe.Err = fmt.Errorf("not readyToUse after %s (%s); %s; check the Trident backend and the snapshot controller's events (kubectl describe volumesnapshot -n %s %s), or raise snapshot.readyTimeout",
		b.opt.readyTimeout, why, cleanup, ns, name)
	return oe
}

func toSnapshot(vs *snapv1.VolumeSnapshot, content *snapv1.VolumeSnapshotContent) *storage.Snapshot {
	s := &storage.Snapshot{Name: vs.Name, Namespace: vs.Namespace, Labels: vs.Labels, CreatedAt: vs.CreationTimestamp.UTC()}
	if src := vs.Spec.Source.PersistentVolumeClaimName; src != nil {
		s.Volume = *src
	}
	if st := vs.Status; st != nil {
		if st.CreationTime != nil {
			s.CreatedAt = st.CreationTime.UTC()
		}
		if st.RestoreSize != nil {
			s.RestoreSize = st.RestoreSize.String()
		}
	}
	if content != nil && content.Status != nil && content.Status.SnapshotHandle != nil {
		s.Handle = *content.Status.SnapshotHandle
	}
	return s
}

// ListSnapshots lists the VolumeSnapshots in the namespace whose source is
// the PVC volume, newest first (creation time; ties by name descending),
// leaving out those being deleted (their finalizers keep them visible for a
// while after DeleteSnapshot).
func (b *Backend) ListSnapshots(ctx context.Context, volume string) ([]storage.Snapshot, error) {
	ns := b.opt.namespace
	list, err := b.snap.SnapshotV1().VolumeSnapshots(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr("list", "VolumeSnapshot", ns, "", err)
	}
	var out []storage.Snapshot
	for i := range list.Items {
		vs := &list.Items[i]
		if vs.DeletionTimestamp != nil {
			continue // being deleted (the snapshot controller's finalizers): not kept, not restorable
		}
		if src := vs.Spec.Source.PersistentVolumeClaimName; src != nil && *src == volume {
			out = append(out, *toSnapshot(vs, nil))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].Name > out[j].Name
	})
	return out, nil
}

// DeleteSnapshot deletes the VolumeSnapshot name (its content follows the
// class's deletionPolicy); an error wrapping storage.ErrNotFound when absent.
func (b *Backend) DeleteSnapshot(ctx context.Context, name string) error {
	ns := b.opt.namespace
	err := b.snap.SnapshotV1().VolumeSnapshots(ns).Delete(ctx, name, metav1.DeleteOptions{})
	return apiErr("delete", "VolumeSnapshot", ns, name, err)
}

// Annotate merge-patches annotations onto the VolumeSnapshot (an empty
// value removes the key).
func (b *Backend) Annotate(ctx context.Context, name string, annotations map[string]string) error {
	ns := b.opt.namespace
	ann := map[string]any{}
	for k, v := range annotations {
		if strings.TrimSpace(v) == "" {
			ann[k] = nil
		} else {
			ann[k] = v
		}
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	_, err := b.snap.SnapshotV1().VolumeSnapshots(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return apiErr("annotate", "VolumeSnapshot", ns, name, err)
}
