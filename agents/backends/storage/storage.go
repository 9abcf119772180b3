package storage

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned (wrapped) for an unknown volume or snapshot.
var ErrNotFound = errors.New("not found")

// VolumeSpec asks for a volume.
type VolumeSpec struct {
	// Name is a DNS-1123 name (the PVC name).
	Name string
	// Size in Kubernetes quantity notation ("1Gi").
	Size   string
	Labels map[string]string
}

// Volume is a provisioned volume.
type Volume struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Size      string `json:"size,omitempty"`
	// Path is where the volume is mounted on this machine (local backend);
	// "" for a PVC, which is mounted in pods only.
	Path string `json:"path,omitempty"`
	// Created is false when the volume already existed.
	Created bool `json:"created"`
}

// SnapshotSpec asks for a snapshot of a volume.
type SnapshotSpec struct {
	// Name is deterministic (volume, run) so that retrying creates nothing twice.
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// Snapshot is a ready, immutable point-in-time copy of a volume.
type Snapshot struct {
	Name      string `json:"name"`
	Volume    string `json:"volume"`
	Namespace string `json:"namespace,omitempty"`
	// Handle is the backend's own ID (VolumeSnapshotContent snapshotHandle,
	// or the local snapshot's content digest).
	Handle      string            `json:"handle,omitempty"`
	RestoreSize string            `json:"restoreSize,omitempty"`
	CreatedAt   time.Time         `json:"createdAt"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Path is the read-only snapshot tree on this machine (local backend).
	Path string `json:"path,omitempty"`
}

// Backend provisions volumes and snapshots them.
type Backend interface {
	// EnsureVolume returns the volume named spec.Name, creating it when absent.
	EnsureVolume(ctx context.Context, spec VolumeSpec) (*Volume, error)
	// Snapshot snapshots volume and waits until it is ready to use; a
	// snapshot with the same name is returned as is.
	Snapshot(ctx context.Context, volume string, spec SnapshotSpec) (*Snapshot, error)
	// Clone creates volume newVolume from snapshot and waits until it is usable.
	Clone(ctx context.Context, snapshot, newVolume string) (*Volume, error)
	// ListSnapshots lists volume's snapshots, newest first.
	ListSnapshots(ctx context.Context, volume string) ([]Snapshot, error)
	// DeleteSnapshot deletes a snapshot; ErrNotFound when absent.
	DeleteSnapshot(ctx context.Context, name string) error
}
