package quickstart

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/branchml/branchml/test/k8s/cluster"
	"github.com/branchml/branchml/test/k8s/k8stest"
)

// TestQuickstartCluster: the whole quickstart with its storage and its
// serving on the Kubernetes test bed: the volumes are PVCs, the snapshots
// are CSI VolumeSnapshots, and the lineage names them; the model is served
// by pods of the serve component's image, rolled out by canary, and the
// live prediction goes through its Service; after the quickstart has
// stopped the cluster, starting it again on the same state shows them.
func TestQuickstartCluster(t *testing.T) {
	if !k8stest.Enabled() {
		t.Skipf("needs the Kubernetes test bed: run make test-k8s (or set %s=1)", k8stest.Env)
	}
	if _, err := findData("", "."); err != nil {
		t.Skipf("no DJIA 30 data beside the checkout: %v", err)
	}
	work := t.TempDir()
	out := &syncWriter{}
	sum, err := Run(context.Background(), Options{Workdir: work, Out: out, Cluster: true})
	if err != nil {
		t.Fatalf("quickstart --cluster: %v\n%s", err, out)
	}
	text := out.String()
	for _, want := range []string{
		"cluster ", "Kubernetes " + cluster.KubeVersion, "lineage lin-", "trident backend",
		"→ data snapshot   djia30-data-lin-", "of volume djia30-data in namespace default, handle snapshot-",
		"CSI VolumeSnapshots: default/djia30-data-lin-", "KPI gate passed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The live prediction went through the model's Service on the node.
	const svcPath = "/api/v1/namespaces/default/services/djia30:8501/proxy/v1/models/djia30:predict"
	if sum.Prediction == nil {
		t.Error("no prediction")
	} else if u := sum.Prediction.URL; !strings.HasPrefix(u, "https://127.0.0.1:") || !strings.HasSuffix(u, svcPath) {
		t.Errorf("prediction URL %s, want https://127.0.0.1:PORT%s", u, svcPath)
	}
	deployLog, err := os.ReadFile(filepath.Join(work, "logs", "deploy.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"the pods pull the serving image from the embedded registry at 127.0.0.1:",
		"analysis traffic: 150 predicts/s through https://127.0.0.1:",
	} {
		if !strings.Contains(string(deployLog), want) {
			t.Errorf("deploy log lacks %q", want)
		}
	}
	if ps := processesUnder(work); len(ps) > 0 {
		t.Errorf("processes left running:\n%s", strings.Join(ps, "\n"))
	}
	if t.Failed() {
		t.Fatalf("output:\n%s", text)
	}
	// The VolumeSnapshots are real objects of the (persistent) cluster.
	c, err := cluster.Start(context.Background(), cluster.Options{Dir: filepath.Join(work, "k8s"), EtcdDir: filepath.Join(work, "k8s", "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	snap, err := snapclient.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	list, err := snap.SnapshotV1().VolumeSnapshots("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready, named := 0, 0
	for _, vs := range list.Items {
		if vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse && vs.Annotations["branchml.dev/lineage"] != "" {
			ready++
		}
		if strings.Contains(text, "default/"+vs.Name) {
			named++
		}
	}
	if named != 2 {
		t.Errorf("%d VolumeSnapshots named in the summary, want the latest run's data and model snapshots", named)
	}
	if ready != 6 {
		t.Errorf("%d ready VolumeSnapshots with a lineage annotation, want 6 (data and model of the three passes' runs): %d listed", ready, len(list.Items))
	}
	if _, err := os.Stat(filepath.Join(work, "k8s", "hostpath", ".snapshots")); err != nil {
		t.Error(err)
	}
	// The serving Deployments the deploy stage left: the canary promoted
	// (the stable holds all 4 replicas, the canary Deployment is gone), of
	// the serve component's image on the embedded registry, by digest.
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	d, err := cs.AppsV1().Deployments("default").Get(context.Background(), "djia30-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("stable Deployment: %v", err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 4 {
		t.Errorf("stable Deployment: spec.replicas %v, want 4", d.Spec.Replicas)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; !strings.HasPrefix(img, "127.0.0.1:") || !strings.Contains(img, "/djia30/serve@sha256:") {
		t.Errorf("stable Deployment: image %s, want 127.0.0.1:PORT/djia30/serve@sha256:…", img)
	}
	if _, err := cs.AppsV1().Deployments("default").Get(context.Background(), "djia30-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("canary Deployment after the promotion: %v, want it deleted", err)
	}
	t.Logf("quickstart --cluster output:\n%s", text)
}
