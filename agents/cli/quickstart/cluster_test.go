package quickstart

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/branchml/branchml/test/k8s/cluster"
	"github.com/branchml/branchml/test/k8s/k8stest"
)

// TestQuickstartCluster: the whole quickstart with its storage on the
// Kubernetes test bed: the volumes are PVCs, the snapshots are CSI
// VolumeSnapshots, and the lineage names them; after the quickstart has
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
	if sum.Prediction == nil {
		t.Error("no prediction")
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
}
