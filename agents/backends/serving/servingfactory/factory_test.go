package servingfactory_test

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/kubernetes"
	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/backends/serving/servingfactory"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
)

func TestNew(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Config{}
	cfg.Deploy.Model = "djia30"
	cfg.Training.Model.Volume = "djia30-model"
	cfg.Backends.Serving.Type = "nope"
	if _, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{}); err == nil || !strings.Contains(err.Error(), `backends.serving.type "nope": use local or kubernetes`) {
		t.Fatalf("unknown type: %v", err)
	}
	cfg.Backends.Serving.Type = "local"
	if _, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{StateDir: t.TempDir()}); !errors.Is(err, local.ErrNoPlane) || !strings.Contains(err.Error(), "branchml serve --model djia30") {
		t.Fatalf("local with no plane running: %v", err)
	}
	b, closeFn, err := servingfactory.New(ctx, cfg, servingfactory.Options{StateDir: t.TempDir(), ServeCommand: []string{"/bin/true"}, Host: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*local.Backend); !ok {
		t.Fatalf("local: got %T", b)
	}
	_ = closeFn(ctx)
	cfg.Backends.Serving.Type = "kubernetes"
	cfg.Deploy.Serving.Image = "tensorflow/serving:2.14.1"
	b, _, err = servingfactory.New(ctx, cfg, servingfactory.Options{Kube: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*kubernetes.Backend); !ok {
		t.Fatalf("kubernetes: got %T", b)
	}
}

// backends.serving.access: a bad value is refused naming the two; apiserver
// builds the backend on the kubeconfig's API server, and its predictions
// go to the API server's services/proxy of the variant, with the
// kubeconfig's token.
func TestAccessAPIServer(t *testing.T) {
	ctx := context.Background()
	var got []string
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		http.Error(w, `{"error":"no such label"}`, http.StatusNotFound)
	}))
	t.Cleanup(api.Close)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	ca := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}))
	// client-go sends a kubeconfig's credentials over TLS only.
	os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: "+api.URL+", certificate-authority-data: "+ca+"}\n"+
		"users:\n- name: u\n  user: {token: agent-token}\ncontexts:\n- name: x\n  context: {cluster: c, user: u, namespace: ml}\ncurrent-context: x\n"), 0o600)
	cfg := &config.Config{}
	cfg.Deploy.Model = "djia30"
	cfg.Training.Model.Volume = "djia30-model"
	cfg.Deploy.Serving.Image = "tensorflow/serving:2.14.1"
	cfg.Backends.Serving = config.ServingBackend{Type: "kubernetes", Namespace: "ml", Kubeconfig: kc, Access: "outside"}
	if _, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{}); err == nil || err.Error() != `backends.serving.access "outside": use cluster (the agent runs in the cluster) or apiserver (through the API server's proxy, from outside)` {
		t.Fatalf("bad access: %v", err)
	}
	cfg.Backends.Serving.Access = "apiserver"
	b, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{Kube: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.(*kubernetes.Backend).Predict(ctx, "canary", []byte(`{"instances":[[1]]}`)); err == nil {
		t.Fatal("predict: no error from the API server's 404")
	}
	want := []string{"POST /api/v1/namespaces/ml/services/djia30-canary:8501/proxy/v1/models/djia30/labels/canary:predict Bearer agent-token"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("requests to the API server: %q, want %q", got, want)
	}
}

// deploy.serving.resources and autoscale reach the Deployment and the
// HorizontalPodAutoscaler; a value that is no quantity names its field.
func TestResourcesAndAutoscale(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Config{}
	cfg.Deploy.Model = "djia30"
	cfg.Training.Model.Volume = "djia30-model"
	cfg.Backends.Serving.Type = "kubernetes"
	cfg.Backends.Serving.Namespace = "ml"
	cfg.Deploy.Serving.Image = "tensorflow/serving:2.14.1"
	cfg.Deploy.Serving.Resources = config.ContainerResources{Requests: map[string]string{"cpu": "250m", "memory": "256Mi"}, Limits: map[string]string{"memory": "1Gi"}}
	cfg.Deploy.Serving.Autoscale = &config.Autoscale{MinReplicas: 2, MaxReplicas: 6, TargetCPUUtilizationPercentage: 70}
	cs := fake.NewClientset()
	b, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{Kube: cs})
	if err != nil {
		t.Fatal(err)
	}
	// The Deployment and the HPA are made by the stable's Deploy; the
	// fake clientset has no pods, so the deploy stops waiting for them.
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_ = b.Deploy(dctx, serving.Stable, records.ModelRef{Name: "djia30", Version: 1, Volume: "djia30-model", Path: "models/djia30"})
	d, err := cs.AppsV1().Deployments("ml").Get(ctx, "djia30-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := d.Spec.Template.Spec.Containers[0].Resources
	if res.Requests.Cpu().String() != "250m" || res.Requests.Memory().String() != "256Mi" || res.Limits.Memory().String() != "1Gi" || res.Limits.Cpu().String() != "0" {
		t.Fatalf("container resources = %+v", res)
	}
	h, err := cs.AutoscalingV2().HorizontalPodAutoscalers("ml").Get(ctx, "djia30-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *h.Spec.MinReplicas != 2 || h.Spec.MaxReplicas != 6 || *h.Spec.Metrics[0].Resource.Target.AverageUtilization != 70 {
		t.Fatalf("HPA spec = %+v", h.Spec)
	}
	cfg.Deploy.Serving.Resources.Requests["cpu"] = "a lot"
	if _, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{Kube: cs}); err == nil ||
		!strings.Contains(err.Error(), `deploy.serving.resources.requests.cpu "a lot" is not a Kubernetes quantity`) {
		t.Fatalf("bad quantity: %v", err)
	}
}

// What a setting causes wraps ErrConfig (the commands exit 2).
func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Config{}
	cfg.Deploy.Model = "djia30"
	cfg.Training.Model.Volume = "djia30-model"
	cfg.Backends.Serving.Type = "nope"
	if _, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{}); !errors.Is(err, servingfactory.ErrConfig) {
		t.Fatalf("unknown type: %v, want ErrConfig", err)
	}
	cfg.Backends.Serving.Type = "kubernetes"
	if _, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{Kube: fake.NewClientset()}); !errors.Is(err, servingfactory.ErrConfig) || !strings.Contains(err.Error(), "deploy.serving.image or component") {
		t.Fatalf("no image: %v, want ErrConfig naming deploy.serving.image", err)
	}
	cfg.Deploy.Serving.Image = "tensorflow/serving:2.14.1"
	cfg.Backends.Serving.Access = "vpn"
	if _, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{Kube: fake.NewClientset()}); !errors.Is(err, servingfactory.ErrConfig) {
		t.Fatalf("bad access: %v, want ErrConfig", err)
	}
}
