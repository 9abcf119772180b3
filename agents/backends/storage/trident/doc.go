// Package trident is the Kubernetes storage backend on NetApp Trident:
// volumes are PVCs on a storage class, snapshots are CSI VolumeSnapshots
// (snapshot.storage.k8s.io/v1, external-snapshotter client) on a
// VolumeSnapshotClass, both of the expected CSI driver (backends.storage.driver,
// default Trident's csi.trident.netapp.io; the test bed's hostpath driver in
// its tests), checked by Preflight before anything is created. Clones are
// PVCs with a VolumeSnapshot as dataSource, sized from the snapshot's
// restoreSize; in-place restores are Trident's TridentActionSnapshotRestore
// (trident.netapp.io/v1, through the dynamic client) or a re-created PVC.
// With backends.storage.hostPathDir (a single-machine cluster whose driver
// keeps volumes as directories) Volume.Path and HostPath give a PVC's
// directory on this machine.
//
// As an implementation of the storage backend it imports only packages of
// that concern (agents/backends/storage/...), agents/records, agents/config
// and helpers; never a stage, a command or another concern.
package trident
