package trident

import (
	"fmt"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/branchml/branchml/agents/config"
)

// NewFromConfig connects to the cluster of backends.storage.kubeconfig
// (relative to branchml.yaml; "" = $KUBECONFIG, ~/.kube/config, or the
// in-cluster service account) and returns a Backend with the namespace,
// storage class and access mode of backends.storage and the class and ready
// timeout of snapshot. opts are applied after those (tests, logger).
func NewFromConfig(cfg *config.Config, opts ...Option) (*Backend, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kc := cfg.Backends.Storage.Kubeconfig; kc != "" {
		rules.ExplicitPath = cfg.Path(kc)
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("trident storage: load kubeconfig: %w (set backends.storage.kubeconfig or KUBECONFIG)", err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	snap, err := snapclient.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return New(kube, snap, dyn, append(ConfigOptions(cfg), opts...)...)
}

// ConfigOptions are the options branchml.yaml sets: namespace, storage
// class, access mode, CSI driver, host path directory, restore mode,
// snapshot class and ready timeout.
func ConfigOptions(cfg *config.Config) []Option {
	st := cfg.Backends.Storage
	opts := []Option{WithStorageClass(st.StorageClass), WithSnapshotClass(cfg.Snapshot.Class), WithAccessMode(st.AccessMode)}
	if st.Driver != "" {
		opts = append(opts, WithDriver(st.Driver))
	}
	if st.HostPathDir != "" {
		opts = append(opts, WithHostPathDir(cfg.Path(st.HostPathDir)))
	}
	if st.RestoreMode != "" {
		opts = append(opts, WithRestoreMode(st.RestoreMode))
	}
	if st.Namespace != "" {
		opts = append(opts, WithNamespace(st.Namespace))
	}
	if d := cfg.Snapshot.ReadyTimeout.Duration; d > 0 {
		opts = append(opts, WithReadyTimeout(d))
	}
	return opts
}
