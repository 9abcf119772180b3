// Package k8stest gives tests a real single-node Kubernetes (package
// cluster) shared by all tests of one test binary: Main starts nothing and
// stops what Shared started; Shared starts it on first use. The tests run
// only when BRANCHML_K8S_TESTS=1 (make test-k8s sets it, after building the
// binaries); otherwise Shared skips the test. With BRANCHML_K8S_TESTS=1 and
// no cached binaries, the first Shared builds them (10-20 minutes).
package k8stest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/branchml/branchml/test/k8s/cluster"
)

// Env enables the tests that need a cluster.
const Env = "BRANCHML_K8S_TESTS"

var (
	mu       sync.Mutex
	shared   *cluster.Cluster
	dir      string
	started  error
	withNode bool
	metrics  bool
)

// Enabled reports whether BRANCHML_K8S_TESTS=1.
func Enabled() bool { return os.Getenv(Env) == "1" }

// MainWithNode is Main for a test binary whose cluster also runs a node
// (cluster.Options.Kubelet: containerd, runc and a kubelet, so pods run).
func MainWithNode(m *testing.M) {
	withNode = true
	Main(m)
}

// MainWithMetrics is MainWithNode with metrics-server too
// (cluster.Options.Metrics: the resource metrics API that
// HorizontalPodAutoscalers read).
func MainWithMetrics(m *testing.M) {
	withNode, metrics = true, true
	Main(m)
}

// Main runs the tests and stops the shared cluster after them (use it as
// TestMain: func TestMain(m *testing.M) { k8stest.Main(m) }).
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	if shared != nil {
		shared.Stop()
	}
	if dir != "" && code == 0 {
		os.RemoveAll(dir)
	} else if dir != "" {
		fmt.Fprintf(os.Stderr, "k8stest: cluster state and component logs kept in %s\n", dir)
	}
	mu.Unlock()
	os.Exit(code)
}

// Shared returns the test binary's cluster, starting it on first call
// (skips the test unless Enabled; fails it when the cluster cannot start).
func Shared(t testing.TB) *cluster.Cluster {
	t.Helper()
	if !Enabled() {
		t.Skipf("needs the Kubernetes test bed: run make test-k8s (or set %s=1)", Env)
	}
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && started == nil {
		if dir, started = os.MkdirTemp("", "branchml-k8stest-"); started == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			shared, started = cluster.Start(ctx, cluster.Options{Dir: dir, Kubelet: withNode, Metrics: metrics, Progress: testLog{t}})
		}
	}
	if started != nil {
		t.Fatalf("start the Kubernetes test bed: %v", started)
	}
	if ex := shared.Exited(); len(ex) > 0 {
		t.Fatalf("test bed components exited: %v", ex)
	}
	return shared
}

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Client is an admin clientset of c.
func Client(t testing.TB, c *cluster.Cluster) kubernetes.Interface {
	t.Helper()
	k, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Namespace creates a namespace of its own for the test (name prefix plus
// a counter) and deletes it when the test ends.
func Namespace(t testing.TB, c *cluster.Cluster, prefix string) string {
	t.Helper()
	k := Client(t, c)
	ns, err := k.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}
