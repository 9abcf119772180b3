package quickstart

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/test/k8s/cluster"
)

// startCluster starts the Kubernetes test bed (test/k8s) for --cluster,
// with its state under <workdir>/k8s (etcd's data included, so a second
// quickstart finds its PVCs and VolumeSnapshots again), and returns the
// BRANCHML_* settings that put the storage backend on it: trident on the
// test bed's storage class and snapshot class, its hostpath CSI driver as
// the expected driver, and the driver's data directory so the local
// pipeline tasks read and write the PVCs' directories.
func (r *run) startCluster(ctx context.Context, source string) (*cluster.Cluster, map[string]string, error) {
	t0 := time.Now()
	dir := filepath.Join(r.opt.Workdir, "k8s")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	var progress io.Writer = io.Discard
	if !binariesCached(source) {
		progress = r.opt.Out // the first run builds Kubernetes: say so
	}
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir, Source: source, EtcdDir: filepath.Join(dir, "etcd"), Progress: progress})
	if err != nil {
		return nil, nil, agent.Failed("start the Kubernetes test bed", err, "see the component logs in "+filepath.Join(dir, "logs"))
	}
	r.add("cluster", time.Since(t0), fmt.Sprintf("Kubernetes %s on %s; storage class %s, snapshot class %s (CSI driver %s)",
		cluster.KubeVersion, c.Server, cluster.StorageClass, cluster.SnapshotClass, cluster.Driver))
	return c, map[string]string{
		"BRANCHML_BACKENDS_STORAGE_TYPE":          "trident",
		"BRANCHML_BACKENDS_STORAGE_KUBECONFIG":    c.Kubeconfig,
		"BRANCHML_BACKENDS_STORAGE_NAMESPACE":     "default",
		"BRANCHML_BACKENDS_STORAGE_STORAGE_CLASS": cluster.StorageClass,
		"BRANCHML_BACKENDS_STORAGE_DRIVER":        cluster.Driver,
		"BRANCHML_BACKENDS_STORAGE_HOST_PATH_DIR": c.HostPathDir,
		"BRANCHML_SNAPSHOT_CLASS":                 cluster.SnapshotClass,
	}, nil
}

// binariesCached is true when the test bed needs no build.
func binariesCached(source string) bool {
	v, err := cluster.Version(source)
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(cluster.CacheRoot(), v, "bin", "kube-apiserver"))
	return err == nil
}
