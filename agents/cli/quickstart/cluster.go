package quickstart

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	kube "github.com/branchml/branchml/agents/backends/serving/kubernetes"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/test/k8s/cluster"
)

// startCluster starts the Kubernetes test bed (test/k8s) for --cluster,
// with its node, and its state under <workdir>/k8s (etcd's data included,
// so a second quickstart finds its PVCs, VolumeSnapshots and serving
// Deployments again). It returns the BRANCHML_* settings that put the
// stages on it, and stop, which stops the cluster:
//   - storage: trident on the test bed's storage class and snapshot class,
//     its hostpath CSI driver as the expected driver, and the driver's data
//     directory so the local pipeline tasks read and write the PVCs'
//     directories;
//   - serving: the kubernetes backend in namespace default through the API
//     server's proxy (access apiserver: the agents run outside the
//     cluster), with the canary steps the example's 4 replicas can express
//     (the backend splits traffic by pods: 25, 50, 75, 100 instead of the
//     example's 10, 25, 50, 100);
//   - images: the pods run the serve component's image the build stage
//     pushed to the embedded registry; the deploy stage names its current
//     address on 127.0.0.1, where the node's containerd pulls it over plain
//     HTTP (as it does for any localhost registry with no hosts.toml).
func (r *run) startCluster(ctx context.Context, source string) (map[string]string, func(), error) {
	t0 := time.Now()
	dir := filepath.Join(r.opt.Workdir, "k8s")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	var progress io.Writer = io.Discard
	if !binariesCached(source) {
		progress = r.opt.Out // the first run builds Kubernetes: say so
	}
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir, Source: source, EtcdDir: filepath.Join(dir, "etcd"), Kubelet: true, Progress: progress})
	if err != nil { // Start stopped what it had started
		return nil, nil, agent.Failed("start the Kubernetes test bed", err, "see the component logs in "+filepath.Join(dir, "logs"))
	}
	hc, err := c.HTTPClient()
	if err != nil {
		c.Stop()
		return nil, nil, err
	}
	const ns = "default"
	r.kube = &clusterServing{server: c.Server, hc: hc, ns: ns, kubeconfig: c.Kubeconfig}
	r.add("cluster", time.Since(t0), fmt.Sprintf("Kubernetes %s on %s with node %s; storage class %s, snapshot class %s (CSI driver %s)",
		cluster.KubeVersion, c.Server, cluster.NodeName, cluster.StorageClass, cluster.SnapshotClass, cluster.Driver))
	return map[string]string{
		"BRANCHML_BACKENDS_STORAGE_TYPE":          "trident",
		"BRANCHML_BACKENDS_STORAGE_KUBECONFIG":    c.Kubeconfig,
		"BRANCHML_BACKENDS_STORAGE_NAMESPACE":     ns,
		"BRANCHML_BACKENDS_STORAGE_STORAGE_CLASS": cluster.StorageClass,
		"BRANCHML_BACKENDS_STORAGE_DRIVER":        cluster.Driver,
		"BRANCHML_BACKENDS_STORAGE_HOST_PATH_DIR": c.HostPathDir,
		"BRANCHML_SNAPSHOT_CLASS":                 cluster.SnapshotClass,
		"BRANCHML_BACKENDS_SERVING_TYPE":          kube.Name,
		"BRANCHML_BACKENDS_SERVING_KUBECONFIG":    c.Kubeconfig,
		"BRANCHML_BACKENDS_SERVING_NAMESPACE":     ns,
		"BRANCHML_BACKENDS_SERVING_ACCESS":        "apiserver",
		"BRANCHML_DEPLOY_CANARY_STEPS":            clusterSteps,
	}, c.Stop, nil
}

// clusterSteps are the canary steps on the test bed: whole pods of the
// example's deploy.serving.replicas 4.
const clusterSteps = "[25, 50, 75, 100]"

// clusterServing is the model's Service on the test bed, reached as its
// users would from outside the cluster: through the API server's proxy
// with the admin's credentials.
type clusterServing struct {
	server     string // the API server, https://127.0.0.1:PORT
	hc         *http.Client
	ns         string
	kubeconfig string
}

// url is the REST endpoint of model's Service through the API server:
// <server><path>.
func (k *clusterServing) url(model string) string { return k.server + k.path(model) }

// path is the API server's path to model's Service:
// /api/v1/namespaces/<ns>/services/<model>:8501/proxy.
func (k *clusterServing) path(model string) string { return kube.ServiceProxyPath(k.ns, model) }

// serves reports whether the model's stable Deployment exists (its pods
// come back with the node when the quickstart starts again): a GET of
// <model>-stable answers 200, not 404.
func (k *clusterServing) serves(ctx context.Context, model string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second) // the API server's client has no timeout of its own
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		k.server+"/apis/apps/v1/namespaces/"+k.ns+"/deployments/"+model+"-"+string(serving.Stable), nil)
	if err != nil {
		return false
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
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
