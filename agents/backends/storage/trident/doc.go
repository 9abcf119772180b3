// Package trident is the Kubernetes storage backend on NetApp Trident:
// volumes are PVCs on a Trident storage class, snapshots are CSI
// VolumeSnapshots (snapshot.storage.k8s.io/v1, external-snapshotter client)
// on a VolumeSnapshotClass whose driver is csi.trident.netapp.io, clones are
// PVCs with a VolumeSnapshot as dataSource, and in-place restores are
// Trident's TridentActionSnapshotRestore (trident.netapp.io/v1) driven
// through the dynamic client.
//
// As an implementation of the storage backend it imports only packages of
// that concern (agents/backends/storage/...), agents/records, agents/config
// and helpers; never a stage, a command or another concern.
package trident
