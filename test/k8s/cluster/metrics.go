package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

func ptr[T any](v T) *T { return &v }

// MetricsAPIService is the APIService that metrics-server registers: the
// resource metrics API (PodMetrics, NodeMetrics) the HorizontalPodAutoscaler
// controller reads CPU and memory usage from.
const MetricsAPIService = "v1beta1.metrics.k8s.io"

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// startMetrics runs metrics-server (built from sigs.k8s.io/metrics-server,
// test/k8s/build/metrics-server) as a process of the test bed, serving on
// the node's bridge address NodeIP (the API server's aggregator dials it
// there: an APIService's Service has to have an endpoint that is not
// loopback), with pki's metrics-server.crt; it scrapes the kubelet's
// /metrics/resource every 10 s (its least resolution), verifying the
// kubelet's certificate with the cluster CA. Then it registers it as
// metrics-server's own manifest does (components.yaml of the release): the
// Service kube-system/metrics-server on port 443 (here without selector,
// with an EndpointSlice naming the process) and the APIService
// v1beta1.metrics.k8s.io with the cluster CA as caBundle; and waits until
// the node's NodeMetrics are served through the API server.
func (c *Cluster) startMetrics(ctx context.Context, env []string) error {
	l, err := net.Listen("tcp", net.JoinHostPort(NodeIP, "0"))
	if err != nil {
		return fmt.Errorf("cluster: a port for metrics-server on %s: %w", NodeIP, err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p := func(f string) string { return filepath.Join(c.Dir, "pki", f) }
	if err := c.run(ctx, "metrics-server", procSpec{bin: filepath.Join(c.BinDir, "metrics-server"), env: env, args: []string{
		"--kubeconfig=" + c.Kubeconfig, "--authentication-kubeconfig=" + c.Kubeconfig, "--authorization-kubeconfig=" + c.Kubeconfig,
		"--bind-address=" + NodeIP, "--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + p("metrics-server.crt"), "--tls-private-key-file=" + p("metrics-server.key"),
		"--kubelet-preferred-address-types=InternalIP", "--kubelet-use-node-status-port",
		"--kubelet-certificate-authority=" + p("ca.crt"),
		// Its least resolution, which must exceed the kubelet request timeout.
		"--metric-resolution=10s", "--kubelet-request-timeout=5s", "--profiling=false", "--v=1",
	}}, func(ctx context.Context) error {
		return httpOK(ctx, c.caPool(), "https://"+net.JoinHostPort(NodeIP, strconv.Itoa(port))+"/livez", "")
	}); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return err
	}
	labels := map[string]string{"k8s-app": "metrics-server"}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-server", Namespace: "kube-system", Labels: labels},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP,
			TargetPort: intstr.FromInt32(int32(port))}}},
	}
	if _, err := cs.CoreV1().Services("kube-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("cluster: create Service kube-system/metrics-server: %w", err)
	}
	// The Service has no selector: its one EndpointSlice, naming the
	// process, is the test bed's (the aggregator resolves through
	// EndpointSlices, k8s.io/apiserver/pkg/util/proxy.ResolveEndpoint).
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-server", Namespace: "kube-system", Labels: map[string]string{
			discoveryv1.LabelServiceName: "metrics-server", discoveryv1.LabelManagedBy: "testbed.branchml.dev", "k8s-app": "metrics-server"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{NodeIP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("https"), Port: ptr(int32(port)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("kube-system").Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("cluster: create EndpointSlice kube-system/metrics-server: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return err
	}
	as := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": MetricsAPIService, "labels": map[string]any{"k8s-app": "metrics-server"}},
		"spec": map[string]any{
			"group": "metrics.k8s.io", "version": "v1beta1",
			"service":              map[string]any{"name": "metrics-server", "namespace": "kube-system", "port": int64(443)},
			"caBundle":             base64.StdEncoding.EncodeToString(caPEM), // []byte in JSON
			"groupPriorityMinimum": int64(100), "versionPriority": int64(100),
		},
	}}
	if _, err := dyn.Resource(apiServiceGVR).Create(ctx, as, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("cluster: create APIService %s: %w", MetricsAPIService, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := httpOK(wctx, c.caPool(), c.Server+"/apis/metrics.k8s.io/v1beta1/nodes/"+NodeName, c.Token); err != nil {
		return fmt.Errorf("cluster: metrics-server runs, but the API server serves no NodeMetrics of %s through %s: %w (log: %s)\n%s",
			NodeName, MetricsAPIService, err, c.LogFile("metrics-server"), tail(c.LogFile("metrics-server"), 20))
	}
	return nil
}
