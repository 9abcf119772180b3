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
	_ storage.Backend   = (*Backend)(nil)
	_ storage.Restorer  = (*Backend)(nil)
	_ storage.Annotator = (*Backend)(nil)
)

// Driver is the CSI driver name of Trident; the snapshot class must use it.
const Driver = "csi.trident.netapp.io"

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

// WithSnapshotClass sets the VolumeSnapshotClass every snapshot names (required).
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
}

// New returns a Backend using the given clients. The snapshot class is
// required; the access mode must be ReadWriteOnce or ReadWriteMany.
func New(kube kubernetes.Interface, snap snapclient.Interface, dyn dynamic.Interface, opts ...Option) (*Backend, error) {
	o := options{
		namespace: "default", accessMode: corev1.ReadWriteOnce,
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
	case o.snapshotClass == "":
		return nil, errors.New("trident storage: no VolumeSnapshotClass; set snapshot.class to a class whose driver is " + Driver)
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
