package serving_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/agents/backends/serving"
	kube "github.com/branchml/branchml/agents/backends/serving/kubernetes"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/stages/deploy"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
	"github.com/branchml/branchml/test/k8s/cluster"
	"github.com/branchml/branchml/test/k8s/k8stest"
	"github.com/branchml/branchml/test/k8s/ociimage"
	"github.com/branchml/branchml/test/k8s/podnet"
)

func TestMain(m *testing.M) { k8stest.MainWithMetrics(m) }

const (
	model  = "djia30"
	volume = "djia30-model"
	// predictBody is one instance of the one-feature models below.
	predictBody = `{"instances":[[1]]}`
)

// modelFile is a model.json of the example's format (examples/djia30
// internal/model, format branchml.djia30.ffnn): features inputs, one
// sigmoid unit with every weight 1, so the prediction for [1] is
// sigmoid(1) = 0.7310586 with one feature.
func modelFile(version int64, features int) string {
	names, zeros, ones, rows := make([]string, features), make([]string, features), make([]string, features), make([]string, features)
	for i := range features {
		names[i], zeros[i], ones[i], rows[i] = fmt.Sprintf("%q", fmt.Sprintf("f%d", i)), "0", "1", "[1]"
	}
	return fmt.Sprintf(`{"format":"branchml.djia30.ffnn","format_version":1,"model_name":%q,"model_version":%d,"features":[%s],`+
		`"normalization":{"mean":[%s],"std":[%s]},"layers":[{"activation":"sigmoid","inputs":%d,"outputs":1,"weights":[%s],"bias":[0]}]}`,
		model, version, strings.Join(names, ","), strings.Join(zeros, ","), strings.Join(ones, ","), features, strings.Join(rows, ","))
}

// bed is one test's namespace on the node: the serve image, the model PVC
// (its directory on the CSI driver's side, where the test writes model
// versions as training would), the pods' port-forwards and a kube-proxy
// stand-in per Service of the backend.
type bed struct {
	c        *cluster.Cluster
	cs       kubernetes.Interface
	ns       string
	image    string
	modelDir string // <volume>/models/djia30
	fw       *podnet.Forwarder
	proxies  map[serving.Variant]*podnet.ServiceProxy // "" is the Service of both variants
	agent    *rest.Config                             // the branchml-agent account's (agentAccount, once)
}

func newBed(t *testing.T) *bed {
	t.Helper()
	c := k8stest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, err := cluster.SourceDir("")
	if err != nil {
		t.Fatal(err)
	}
	image, err := ociimage.PushServe(ctx, c.Registry, src)
	if err != nil {
		t.Fatalf("push the serve image: %v", err)
	}
	b := &bed{c: c, cs: k8stest.Client(t, c), ns: k8stest.Namespace(t, c, "serving"), image: image, proxies: map[serving.Variant]*podnet.ServiceProxy{}}
	sc := cluster.StorageClass
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: volume, Namespace: b.ns}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, StorageClassName: &sc,
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}}}}
	if _, err := b.cs.CoreV1().PersistentVolumeClaims(b.ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pv string
	for pv == "" {
		got, err := b.cs.CoreV1().PersistentVolumeClaims(b.ns).Get(ctx, volume, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Phase == corev1.ClaimBound {
			pv = got.Spec.VolumeName
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("PVC %s not Bound: %+v", volume, got.Status)
		case <-time.After(200 * time.Millisecond):
		}
	}
	b.modelDir = filepath.Join(c.HostPathDir, pv, "models", model)
	// What the pods send stays on the node: no forwarding off the bridge.
	if fwd, err := os.ReadFile(cluster.BridgeForwarding); err != nil || strings.TrimSpace(string(fwd)) != "0" {
		t.Fatalf("%s = %q, %v; want 0 while the node runs", cluster.BridgeForwarding, fwd, err)
	}
	b.fw = podnet.NewForwarder(c.RESTConfig(), b.cs, b.ns)
	t.Cleanup(b.fw.Close)
	for v, svc := range map[serving.Variant]string{"": model, serving.Stable: model + "-stable", serving.Canary: model + "-canary"} {
		p, err := podnet.NewServiceProxy(context.Background(), b.cs, b.ns, svc, kube.RESTPort, b.fw)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		b.proxies[v] = p
	}
	return b
}

// writeVersion writes model version v as the trainer does (a complete
// directory renamed into place): model.json (features inputs; 0 writes
// one that is not JSON, which the server cannot load) and signature.json.
func (b *bed) writeVersion(t *testing.T, v int64, features int) {
	t.Helper()
	m := modelFile(v, features)
	if features == 0 {
		m = `{"format":"branchml.djia30.ffnn",`
	}
	b.writeModel(t, v, m)
}

// writeModel writes model version v with model.json m and signature.json
// as the trainer does: a complete directory renamed into place.
func (b *bed) writeModel(t *testing.T, v int64, m string) {
	t.Helper()
	tmp := filepath.Join(b.modelDir, fmt.Sprintf(".tmp-%d", v))
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"model.json": m, "signature.json": `{"signature_def":{"serving_default":{}}}`} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, filepath.Join(b.modelDir, fmt.Sprint(v))); err != nil {
		t.Fatal(err)
	}
}

// writeSlowVersion writes model version v that answers like the others
// but slowly: one feature, two relu layers of width units (width² + 2·width
// multiply-adds a prediction; with 1500, 2.25 million, milliseconds where
// the one-unit models take microseconds) and the sigmoid unit.
func (b *bed) writeSlowVersion(t *testing.T, v int64, width int) {
	t.Helper()
	row := func(n int) string { return "[" + strings.TrimSuffix(strings.Repeat("0.001,", n), ",") + "]" }
	rows := func(in, out int) string { return "[" + strings.TrimSuffix(strings.Repeat(row(out)+",", in), ",") + "]" }
	m := fmt.Sprintf(`{"format":"branchml.djia30.ffnn","format_version":1,"model_name":%q,"model_version":%d,"features":["f0"],`+
		`"normalization":{"mean":[0],"std":[1]},"layers":[`+
		`{"activation":"relu","inputs":1,"outputs":%d,"weights":%s,"bias":%s},`+
		`{"activation":"relu","inputs":%d,"outputs":%d,"weights":%s,"bias":%s},`+
		`{"activation":"sigmoid","inputs":%d,"outputs":1,"weights":%s,"bias":[0]}]}`,
		model, v, width, rows(1, width), row(width), width, width, rows(width, width), row(width), width, rows(width, 1))
	b.writeModel(t, v, m)
}

// agentAccount applies the branchml-agent ServiceAccount and the Roles and
// RoleBindings branchml-agent and branchml-agent-proxy (access: apiserver)
// of resources/branchml/agent-rbac.yaml in the bed's namespace
// and returns a client configuration with a token of that account (the
// TokenRequest API): the backend then runs with exactly the permissions
// the README tells a cluster admin to grant.
func (b *bed) agentAccount(t *testing.T, src string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(src, "resources", "branchml", "agent-rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	applied := 0
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(head.Metadata.Name, "branchml-agent") || strings.HasPrefix(head.Kind, "Cluster") {
			continue // the Jenkins controller's account; the cluster-scoped snapshot reader
		}
		switch head.Kind {
		case "ServiceAccount":
			var sa corev1.ServiceAccount
			mustYAML(t, doc, &sa)
			sa.Namespace = b.ns
			_, err = b.cs.CoreV1().ServiceAccounts(b.ns).Create(ctx, &sa, metav1.CreateOptions{})
		case "Role":
			var r rbacv1.Role
			mustYAML(t, doc, &r)
			r.Namespace = b.ns
			_, err = b.cs.RbacV1().Roles(b.ns).Create(ctx, &r, metav1.CreateOptions{})
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			mustYAML(t, doc, &rb)
			rb.Namespace = b.ns
			for i := range rb.Subjects {
				rb.Subjects[i].Namespace = b.ns
			}
			_, err = b.cs.RbacV1().RoleBindings(b.ns).Create(ctx, &rb, metav1.CreateOptions{})
		default:
			t.Fatalf("agent-rbac.yaml: unexpected %s %s", head.Kind, head.Metadata.Name)
		}
		if err != nil {
			t.Fatalf("apply %s %s: %v", head.Kind, head.Metadata.Name, err)
		}
		applied++
	}
	if applied != 5 {
		t.Fatalf("agent-rbac.yaml: %d branchml-agent objects, want its ServiceAccount, and the Role and RoleBinding of the backends and of the proxy", applied)
	}
	exp := int64(3600)
	tok, err := b.cs.CoreV1().ServiceAccounts(b.ns).CreateToken(ctx, "branchml-agent", &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: b.c.Server, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAFile: b.c.CAFile}}
}

func mustYAML(t *testing.T, doc string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(doc), v); err != nil {
		t.Fatal(err)
	}
}

// backend is the Kubernetes serving backend as branchml-deploy builds it
// for backends.serving.access: apiserver, with the branchml-agent
// account: the variants' Services and the pods through the API server's
// proxy.
func (b *bed) backend(t *testing.T, opts ...kube.Option) *kube.Backend {
	t.Helper()
	return b.backendWithImage(t, b.image, opts...)
}

// backendWithImage is backend with another serving image (the serve
// component's next build).
func (b *bed) backendWithImage(t *testing.T, image string, opts ...kube.Option) *kube.Backend {
	t.Helper()
	if b.agent == nil {
		src, err := cluster.SourceDir("")
		if err != nil {
			t.Fatal(err)
		}
		b.agent = b.agentAccount(t, src)
	}
	rc := b.agent
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kube.New(cs, b.ns, model, image, volume, append([]kube.Option{
		kube.WithReplicas(4), kube.WithPoll(500*time.Millisecond, 3*time.Minute), kube.WithLabelTimeout(3 * time.Minute),
		kube.WithAPIServerProxy(rc.Host, hc)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func cfg() *config.Config {
	c := &config.Config{Project: model, Branches: map[string]string{"deploy": "deploy-model"}}
	c.Backends.Serving.Type = kube.Name
	c.Deploy.Model = model
	c.Deploy.Strategy = "canary"
	c.Deploy.Serving.Replicas = 4
	c.Deploy.Canary = config.Canary{Steps: []int{25, 50, 75, 100}, Interval: config.Duration{Duration: 3 * time.Second}, Threshold: 2,
		MinRequests: 20, SuccessRate: 99, MaxLatencyP99: config.Duration{Duration: 2 * time.Second}}
	return c
}

func writeSpec(t *testing.T, ws string, version int64) {
	t.Helper()
	spec := fmt.Sprintf("apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel:\n  name: %s\n  version: %d\n  volume: %s\n  path: models/%s\nlineageId: lin-%d\n", model, version, volume, model, version)
	if err := os.WriteFile(filepath.Join(ws, "deploy.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The deploy stage with the Kubernetes backend on real pods: a first
// deploy of 4 pods; a canary 25→50→75→100 under constant load through the
// Service (100 requests/s) with no failed request and each step's share,
// measured from the pods' own metrics, within 10 points of its weight
// (the first interval starts before its route: the canary's one pod of 5,
// 20%, while the stable's fourth goes; ~450 requests a 3 s step at random
// among the pods); a
// canary answering 400 to what the stable accepts (its model wants two
// features) rolled back with the stable untouched; one whose version
// cannot load rolled back before any step; a slow one (p99 above its
// bound) rolled back; one on a server build that answers 500 to every
// prediction rolled back at the threshold; rollback --to 1; all that
// with never fewer than the stable's 4 ready pods behind the Service; then
// v2 again with a stable pod deleted in the middle of the rollout, and
// deploy.yaml reverted to v1.
func TestCanaryOnTheNode(t *testing.T) {
	b := newBed(t)
	for v, features := range map[int64]int{1: 1, 2: 1, 3: 2, 4: 0} {
		b.writeVersion(t, v, features)
	}
	k := b.backend(t)
	ws := t.TempDir()
	log := logrus.New()
	log.SetOutput(testWriter{t})
	log.SetLevel(logrus.InfoLevel)
	c := cfg()
	o := deploy.Options{Config: c, Workspace: ws, Serving: k, Log: log, StatusFile: filepath.Join(t.TempDir(), "deploy-status.json")}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	run := func(version int64, load bool) (*deploy.Result, loadgen.Report, error) {
		t.Helper()
		writeSpec(t, ws, version)
		lctx, stop := context.WithCancel(ctx)
		done := make(chan loadgen.Report, 1)
		go func() {
			if !load {
				done <- loadgen.Report{}
				return
			}
			rep, _ := loadgen.Run(lctx, loadgen.Options{URL: b.proxies[""].URL() + "/v1/models/" + model + ":predict", Body: []byte(predictBody), Concurrency: 8, Rate: 100})
			done <- rep
		}()
		o.Commit = fmt.Sprintf("c%d", version)
		start := time.Now()
		res, err := deploy.Run(ctx, o)
		stop()
		rep := <-done
		t.Logf("v%d: %s; load: %d sent, %d failed %q", version, time.Since(start).Round(100*time.Millisecond), rep.Sent, rep.Failed, rep.Errors)
		return res, rep, err
	}
	stable := func(want int64, when string) {
		t.Helper()
		st, err := k.State(ctx)
		if err != nil || st.Get(serving.Stable) == nil || st.Get(serving.Canary) != nil {
			t.Fatalf("%s: state %+v, %v", when, st, err)
		}
		s := st.Get(serving.Stable)
		if s.Model.Version != want || s.Replicas != 4 {
			t.Fatalf("%s: stable v%d with %d pods, want v%d with 4", when, s.Model.Version, s.Replicas, want)
		}
		// The removed variant's pods leave the Service's EndpointSlices
		// once they are deleted: within their preStop sleep.
		deadline := time.Now().Add(time.Duration(kube.PreStopSleepSeconds+10) * time.Second)
		for eps := b.proxies[""].Endpoints(); len(eps) != 4 || !allStable(eps); eps = b.proxies[""].Endpoints() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the Service has ready endpoints %v, want the 4 stable pods", when, eps)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// Through the Service, on a real pod: sigmoid(1).
		resp, err := http.Post(b.proxies[""].URL()+"/v1/models/"+model+":predict", "application/json", strings.NewReader(predictBody))
		if err != nil {
			t.Fatalf("%s: predict through the Service: %v", when, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "0.7310586") {
			t.Fatalf("%s: predict through the Service: %d %s", when, resp.StatusCode, body)
		}
	}

	res, _, err := run(1, false)
	if err != nil || res.Status.Phase != "Succeeded" || res.Status.StableVersion != 1 {
		t.Fatalf("first deploy: %+v, %v", res, err)
	}
	stable(1, "after the first deploy")
	// From here until a pod is deleted on purpose, the Service never has
	// fewer ready pods than the stable's 4: every scaling (the steps,
	// Abort at a rollback, Promote, rollback --to) adds pods before it
	// removes any. Sampled every 50 ms from the EndpointSlices.
	stopSampling := b.lowestReady(ctx)

	res, rep, err := run(2, true)
	if err != nil || res.Status.Phase != "Succeeded" {
		t.Fatalf("v2: %+v, %v", res.Status, err)
	}
	if rep.Failed != 0 || rep.Sent < 300 {
		t.Errorf("v2 under load: %d of %d requests failed: %q", rep.Failed, rep.Sent, rep.Errors)
	}
	seen := map[int]bool{}
	for _, a := range res.Analyses {
		t.Logf("canary timeline: weight %3d%%: canary %4d requests, stable %4d, measured share %6.2f%%, failed %d", a.Weight, a.CanaryRequests, a.StableRequests, a.Share, a.CanaryErrors)
		if a.CanaryErrors != 0 || (a.Weight < 100 && (a.Share < float64(a.Weight)-10 || a.Share > float64(a.Weight)+10)) {
			t.Errorf("weight %d%%: share %.2f%%, %d errors", a.Weight, a.Share, a.CanaryErrors)
		}
		seen[a.Weight] = true
	}
	for _, w := range c.Deploy.Canary.Steps {
		if !seen[w] {
			t.Errorf("no analysis at %d%%: %+v", w, res.Analyses)
		}
	}
	stable(2, "after v2")

	// v3 wants two features: every request the stable answers, it refuses
	// with 400 — the client errors beyond the stable's rate fail it.
	res, _, err = run(3, true)
	if !errors.Is(err, deploy.ErrRolledBack) || res.Status.Phase != "RolledBack" || !strings.Contains(res.Status.Message, "client errors (4xx) beyond the stable version's rate") {
		t.Fatalf("v3 (400 to every request): %+v, %v", res.Status, err)
	}
	stable(2, "after v3")

	// v4's model.json is not JSON: its pods never load it; rolled back
	// before any step, no request failed.
	res, rep, err = run(4, true)
	if !errors.Is(err, deploy.ErrRolledBack) || len(res.Analyses) != 0 || rep.Failed != 0 {
		t.Fatalf("unloadable v4: %+v, %d analyses, %d failed requests (%q), %v", res.Status, len(res.Analyses), rep.Failed, rep.Errors, err)
	}
	t.Logf("unloadable v4: %s", res.Status.Message)
	stable(2, "after v4")

	// v5 answers right, slowly (writeSlowVersion): with a p99 bound of
	// 2 ms it is rolled back at its first steps, no request fails.
	b.writeSlowVersion(t, 5, 1500)
	c.Deploy.Canary.MaxLatencyP99 = config.Duration{Duration: 2 * time.Millisecond}
	res, rep, err = run(5, true)
	c.Deploy.Canary.MaxLatencyP99 = config.Duration{Duration: 2 * time.Second}
	if !errors.Is(err, deploy.ErrRolledBack) || res.Status.Phase != "RolledBack" || !strings.Contains(res.Status.Message, "p99 latency") || rep.Failed != 0 {
		t.Fatalf("slow v5: %+v, %d of %d requests failed (%q), %v", res.Status, rep.Failed, rep.Sent, rep.Errors, err)
	}
	for _, a := range res.Analyses {
		t.Logf("slow v5: weight %3d%%: canary %4d requests, p99 %.2f ms, failed %d", a.Weight, a.CanaryRequests, a.P99Millis, a.CanaryErrors)
	}
	stable(2, "after the slow v5")

	// v6 is a good model, but the serve component's next image is a broken
	// build (ociimage.PushFaultyServe: every predict a 500 INTERNAL, as TF
	// Serving answers an internal error; status and metadata as usual, so
	// its pods are Ready): the canary's pods fail every request they get;
	// rolled back at the threshold, the stable's pods (the good image)
	// untouched. The clients saw those 500s while the canary had its share.
	b.writeVersion(t, 6, 1)
	src, err := cluster.SourceDir("")
	if err != nil {
		t.Fatal(err)
	}
	faulty, err := ociimage.PushFaultyServe(ctx, b.c.Registry, src)
	if err != nil {
		t.Fatalf("push the fault-injecting serve image: %v", err)
	}
	o.Serving = b.backendWithImage(t, faulty)
	res, rep, err = run(6, true)
	o.Serving = k
	if !errors.Is(err, deploy.ErrRolledBack) || res.Status.Phase != "RolledBack" || len(res.Analyses) != c.Deploy.Canary.Threshold {
		t.Fatalf("v6 on the broken image: %+v, %d analyses, %v", res.Status, len(res.Analyses), err)
	}
	for _, a := range res.Analyses {
		t.Logf("v6 on the broken image: weight %3d%%: canary %4d requests, %d failed, success rate %.2f%%", a.Weight, a.CanaryRequests, a.CanaryErrors, a.SuccessRate)
		if a.Weight != c.Deploy.Canary.Steps[0] || a.CanaryRequests < 20 || a.CanaryErrors != a.CanaryRequests || a.SuccessRate != 0 {
			t.Errorf("v6 on the broken image: analysis %+v, want every canary request failed at %d%%", a, c.Deploy.Canary.Steps[0])
		}
	}
	if rep.Failed == 0 || len(rep.Errors) == 0 || !strings.Contains(rep.Errors[0], "500") {
		t.Errorf("v6 on the broken image: the clients saw %d failures (%q), want the canary's 500s", rep.Failed, rep.Errors)
	}
	stable(2, "after v6 on the broken image")
	if d, err := b.cs.AppsV1().Deployments(b.ns).Get(ctx, model+"-stable", metav1.GetOptions{}); err != nil || d.Spec.Template.Spec.Containers[0].Image != b.image {
		t.Fatalf("the stable's image after v6: %v, want %s", err, b.image)
	}

	if res, err = deploy.Rollback(ctx, o, 1); err != nil || res.Status.StableVersion != 1 {
		t.Fatalf("rollback --to 1: %+v, %v", res.Status, err)
	}
	stable(1, "after rollback --to 1")

	lowest, samples := stopSampling()
	t.Logf("ready pods behind the Service from the first deploy to here: at least %d (%d samples)", lowest, samples)
	if lowest < 4 || samples < 100 {
		t.Errorf("ready pods behind the Service fell to %d (%d samples), want never below the stable's 4", lowest, samples)
	}

	// A stable pod deleted in the middle of a rollout (once the canary
	// has 2 of the 4 pods): the Deployment replaces it, the new pod starts
	// with a config whose label it has not loaded yet and becomes ready
	// once it has; the analysis does not read the new pod's counters as a
	// restart, no request fails (the deleted pod serves through its preStop
	// sleep while the proxies drop it), and v2 is promoted.
	deleted := make(chan string, 1)
	dctx, stopDeleting := context.WithCancel(ctx)
	go func() {
		defer close(deleted)
		for dctx.Err() == nil {
			d, err := b.cs.AppsV1().Deployments(b.ns).Get(dctx, model+"-canary", metav1.GetOptions{})
			if err == nil && d.Status.ReadyReplicas >= 2 {
				pods, _ := b.cs.CoreV1().Pods(b.ns).List(dctx, metav1.ListOptions{LabelSelector: kube.LabelVariant + "=stable"})
				for _, p := range pods.Items {
					if p.DeletionTimestamp != nil {
						continue // on its way out already (a scale-down): not a restart
					}
					if err := b.cs.CoreV1().Pods(b.ns).Delete(dctx, p.Name, metav1.DeleteOptions{}); err == nil {
						deleted <- p.Name
					}
					return
				}
			}
			select {
			case <-dctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	res, rep, err = run(2, true)
	stopDeleting()
	name := <-deleted
	if err != nil || res.Status.Phase != "Succeeded" || name == "" {
		t.Fatalf("v2 with stable pod %q deleted at 50%%: %+v, %v", name, res.Status, err)
	}
	if rep.Failed != 0 {
		t.Errorf("v2 with stable pod %s deleted at 50%%: %d of %d requests failed: %q", name, rep.Failed, rep.Sent, rep.Errors)
	}
	for _, a := range res.Analyses {
		t.Logf("with stable pod %s deleted at 50%%: weight %3d%%: canary %4d requests, stable %4d, share %6.2f%%, failed %d", name, a.Weight, a.CanaryRequests, a.StableRequests, a.Share, a.CanaryErrors)
		if a.CanaryErrors != 0 || a.StableRequests > 1000 {
			t.Errorf("weight %d%%: %d canary errors, %d stable requests in one interval (at 100 requests/s)", a.Weight, a.CanaryErrors, a.StableRequests)
		}
	}
	stable(2, "after v2 with a stable pod deleted")

	// Reverting deploy.yaml to v1 (the merge of a revert, a commit of its
	// own): v1 comes back by canary through every step, under load, no
	// request failed.
	writeSpec(t, ws, 1)
	o.Commit = "c1-revert"
	lctx, stopLoad := context.WithCancel(ctx)
	reverted := make(chan loadgen.Report, 1)
	go func() {
		rep, _ := loadgen.Run(lctx, loadgen.Options{URL: b.proxies[""].URL() + "/v1/models/" + model + ":predict", Body: []byte(predictBody), Concurrency: 8, Rate: 100})
		reverted <- rep
	}()
	res, err = deploy.Run(ctx, o)
	stopLoad()
	rep = <-reverted
	if err != nil || res.Status.Phase != "Succeeded" || res.Status.StableVersion != 1 || rep.Failed != 0 || len(res.Analyses) != len(c.Deploy.Canary.Steps) {
		t.Fatalf("deploy.yaml reverted to v1: %+v, %d analyses, %d of %d failed (%q), %v", res.Status, len(res.Analyses), rep.Failed, rep.Sent, rep.Errors, err)
	}
	for i, a := range res.Analyses {
		if a.Weight != c.Deploy.Canary.Steps[i] || a.CanaryErrors != 0 {
			t.Errorf("reverted to v1: analysis %d at %d%% (%d errors), want %d%%", i, a.Weight, a.CanaryErrors, c.Deploy.Canary.Steps[i])
		}
	}
	t.Logf("deploy.yaml reverted to v1: by canary %v, %d requests, 0 failed", c.Deploy.Canary.Steps, rep.Sent)
	stable(1, "after deploy.yaml was reverted to v1")
}

// lowestReady samples the number of ready pods behind the model's Service
// every 50 ms until the returned stop, which gives the lowest count seen
// and the number of samples.
func (b *bed) lowestReady(ctx context.Context) (stop func() (lowest, samples int)) {
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	lowest, samples := 1<<30, 0
	go func() {
		defer close(done)
		for sctx.Err() == nil {
			lowest = min(lowest, len(b.proxies[""].Endpoints()))
			samples++
			select {
			case <-sctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() (int, int) {
		cancel()
		<-done
		return lowest, samples
	}
}

func allStable(pods []string) bool {
	for _, p := range pods {
		if !strings.HasPrefix(p, model+"-stable-") {
			return false
		}
	}
	return true
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
