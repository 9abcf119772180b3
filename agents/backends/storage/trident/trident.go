package trident

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/branchml/branchml/agents/backends/storage"
)

var (
	_ storage.Backend     = (*Backend)(nil)
	_ storage.Restorer    = (*Backend)(nil)
	_ storage.Annotator   = (*Backend)(nil)
	_ storage.Preflighter = (*Backend)(nil)
	_ storage.HostPather  = (*Backend)(nil)
)

// Driver is the CSI driver name of Trident, the default expected driver of
// the storage class and the snapshot class (WithDriver changes it).
const Driver = "csi.trident.netapp.io"

// Restore modes (WithRestoreMode).
const (
	// RestoreAuto uses a TASR when the cluster serves the CRD, else RestoreRecreate.
	RestoreAuto = "auto"
	// RestoreTASR always uses Trident's TridentActionSnapshotRestore.
	RestoreTASR = "tasr"
	// RestoreRecreate deletes the PVC and creates it again from the snapshot.
	RestoreRecreate = "recreate"
)

// SnapshotGroupVersion is the CSI snapshot API branchml uses.
const SnapshotGroupVersion = "snapshot.storage.k8s.io/v1"

// SnapshotAPIGroup is the apiGroup of a PVC dataSource naming a VolumeSnapshot.
const SnapshotAPIGroup = "snapshot.storage.k8s.io"

// TASR is Trident's TridentActionSnapshotRestore resource (open-source
// Trident 24.10 and later): spec.pvcName, spec.volumeSnapshotName;
// status.state "Succeeded", "Failed" or "In progress", status.message.
var TASR = schema.GroupVersionResource{Group: "trident.netapp.io", Version: "v1", Resource: "tridentactionsnapshotrestores"}

// Defaults of the options.
var (
	DefaultPollInterval = 2 * time.Second
	DefaultReadyTimeout = 5 * time.Minute
	DefaultBindTimeout  = 5 * time.Minute
)

type options struct {
	namespace     string
	storageClass  string
	snapshotClass string
	accessMode    corev1.PersistentVolumeAccessMode
	driver        string
	hostPathDir   string
	restoreMode   string
	readyTimeout  time.Duration
	bindTimeout   time.Duration
	poll          time.Duration
	log           logrus.FieldLogger
}

// Option configures a Backend.
type Option func(*options)

// WithNamespace sets the namespace of PVCs, VolumeSnapshots and TASRs (default "default").
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithStorageClass sets the PVCs' storageClassName ("" = the cluster default).
func WithStorageClass(c string) Option { return func(o *options) { o.storageClass = c } }

// WithDriver sets the CSI driver the storage class and the snapshot class
// must use (default Driver, Trident's; the test bed's hostpath driver there).
func WithDriver(d string) Option { return func(o *options) { o.driver = d } }

// WithHostPathDir makes volumes reachable on this machine: dir is a
// hostpath CSI driver's data directory, and Volume.Path of a PVC is
// dir/<its PV's spec.csi.volumeHandle> (only on a single-machine cluster
// whose driver keeps volumes as directories, like the test bed's).
func WithHostPathDir(dir string) Option { return func(o *options) { o.hostPathDir = dir } }

// WithRestoreMode sets how Restore rolls a PVC back: RestoreAuto (default),
// RestoreTASR or RestoreRecreate.
func WithRestoreMode(m string) Option { return func(o *options) { o.restoreMode = m } }

// WithSnapshotClass sets the VolumeSnapshotClass every snapshot names ("":
// the class marked default for the driver, found by Preflight).
func WithSnapshotClass(c string) Option { return func(o *options) { o.snapshotClass = c } }

// WithAccessMode sets the PVCs' access mode: "ReadWriteOnce" (default) or "ReadWriteMany".
func WithAccessMode(m string) Option {
	return func(o *options) { o.accessMode = corev1.PersistentVolumeAccessMode(m) }
}

// WithReadyTimeout bounds the wait for a snapshot's readyToUse and a TASR's end.
func WithReadyTimeout(d time.Duration) Option { return func(o *options) { o.readyTimeout = d } }

// WithBindTimeout bounds the wait for a PVC to be Bound.
func WithBindTimeout(d time.Duration) Option { return func(o *options) { o.bindTimeout = d } }

// WithPollInterval sets how often waits re-read the objects (tests: a millisecond).
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// WithLogger sets where progress of waits is logged.
func WithLogger(l logrus.FieldLogger) Option { return func(o *options) { o.log = l } }

// Backend is the Trident storage backend.
type Backend struct {
	kube kubernetes.Interface
	snap snapclient.Interface
	dyn  dynamic.Interface
	opt  options

	mu      sync.Mutex
	checked bool
	// class is the VolumeSnapshotClass snapshots name: the configured one,
	// or the driver's default class found by Preflight.
	class string
}

// New returns a Backend using the given clients. The access mode must be
// ReadWriteOnce or ReadWriteMany; nothing is read from the cluster yet
// (Preflight does that).
func New(kube kubernetes.Interface, snap snapclient.Interface, dyn dynamic.Interface, opts ...Option) (*Backend, error) {
	o := options{
		namespace: "default", accessMode: corev1.ReadWriteOnce, driver: Driver, restoreMode: RestoreAuto,
		readyTimeout: DefaultReadyTimeout, bindTimeout: DefaultBindTimeout, poll: DefaultPollInterval,
	}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		l := logrus.New()
		l.SetLevel(logrus.WarnLevel)
		o.log = l
	}
	if o.accessMode == "" {
		o.accessMode = corev1.ReadWriteOnce
	}
	switch {
	case kube == nil || snap == nil || dyn == nil:
		return nil, errors.New("trident storage: kubernetes, snapshot and dynamic clients are all required")
	case o.driver == "":
		return nil, errors.New("trident storage: empty CSI driver name; set backends.storage.driver (Trident's is " + Driver + ")")
	case o.restoreMode != RestoreAuto && o.restoreMode != RestoreTASR && o.restoreMode != RestoreRecreate:
		return nil, fmt.Errorf("trident storage: restore mode %q: use auto, tasr or recreate", o.restoreMode)
	case o.accessMode != corev1.ReadWriteOnce && o.accessMode != corev1.ReadWriteMany:
		return nil, fmt.Errorf("trident storage: access mode %q: use ReadWriteOnce or ReadWriteMany", o.accessMode)
	case o.namespace == "":
		return nil, errors.New("trident storage: empty namespace; set backends.storage.namespace")
	}
	return &Backend{kube: kube, snap: snap, dyn: dyn, opt: o}, nil
}

// apiErr wraps an API server error with the object's identity and status;
// a 404 also wraps storage.ErrNotFound, a 409 storage.ErrExists.
func apiErr(op, kind, ns, name string, err error) error {
	if err == nil {
		return nil
	}
	oe := &storage.ObjectError{Op: op, Kind: kind, Namespace: ns, Name: name, Err: err}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		oe.Status = int(st.Status().Code)
	}
	switch {
	case apierrors.IsNotFound(err):
		oe.Err = fmt.Errorf("%w: %v", storage.ErrNotFound, err)
	case apierrors.IsAlreadyExists(err):
		oe.Err = fmt.Errorf("%w: %v", storage.ErrExists, err)
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsTooManyRequests(err):
		oe.Retriable = true
	}
	return oe
}

// errTimeout ends a wait that ran out of time.
var errTimeout = errors.New("timed out")

// wait calls check every poll interval until it reports done, fails, the
// timeout passes (errTimeout) or ctx ends.
func (b *Backend) wait(ctx context.Context, timeout time.Duration, check func() (bool, error)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(b.opt.poll)
	defer tick.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return errTimeout
		case <-tick.C:
		}
	}
}
