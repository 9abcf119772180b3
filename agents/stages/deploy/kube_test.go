package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/branchml/branchml/agents/backends/serving"
	kube "github.com/branchml/branchml/agents/backends/serving/kubernetes"
	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
	faketfs "github.com/branchml/branchml/agents/internal/fake/tfserving"
	"github.com/branchml/branchml/agents/stages/deploy"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
)

// kubeSim plays what a cluster does around the Kubernetes backend: the
// kubelet syncing the ConfigMap into each variant's pod (a fake TF Serving
// that applies its config key), the Deployment controller (ready replicas
// follow the spec while the pod passes the template's readiness probe),
// and the Service <model> (each request to
// one variant's pod in proportion to the variants' ready pods, round robin).
type kubeSim struct {
	cs        *fake.Clientset
	pods      map[serving.Variant]*faketfs.Server
	urls      map[serving.Variant]string
	behaviors map[int64]faketfs.Behavior
	ready     [2]atomic.Int32 // stable, canary
	probe     [2]atomic.Bool
	// epoch counts created Deployments: a probe taken across a creation
	// is dropped (the new Deployment's pods start not ready).
	epoch atomic.Int64
	n     atomic.Int64
	svc   *httptest.Server
}

func newKubeSim(t *testing.T, behaviors map[int64]faketfs.Behavior) *kubeSim {
	s := &kubeSim{cs: fake.NewClientset(), pods: map[serving.Variant]*faketfs.Server{}, urls: map[serving.Variant]string{}, behaviors: behaviors}
	for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
		p := faketfs.New("djia30")
		hs := httptest.NewServer(p)
		t.Cleanup(hs.Close)
		s.pods[v], s.urls[v] = p, hs.URL
		port, _ := strconv.Atoi(hs.URL[strings.LastIndexByte(hs.URL, ':')+1:])
		yes, name := true, "http"
		p32 := int32(port)
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "djia30-" + string(v) + "-x", Namespace: "ml", Labels: map[string]string{discoveryv1.LabelServiceName: "djia30-" + string(v)}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "djia30-" + string(v) + "-0"}}},
			Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &p32}},
		}
		if _, err := s.cs.DiscoveryV1().EndpointSlices("ml").Create(context.Background(), sl, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Deployments read back with the status the controller would write:
	// every replica ready while the pods pass the readiness probe. (Set on
	// read: a status written back by the test would race the backend's
	// updates of the whole object in the fake clientset.)
	s.cs.PrependReactor("create", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s.epoch.Add(1)
		if strings.HasSuffix(a.(k8stesting.CreateAction).GetObject().(*appsv1.Deployment).Name, "-canary") {
			s.probe[1].Store(false)
		} else {
			s.probe[0].Store(false)
		}
		return false, nil, nil
	})
	s.cs.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		g := a.(k8stesting.GetAction)
		obj, err := s.cs.Tracker().Get(appsv1.SchemeGroupVersion.WithResource("deployments"), g.GetNamespace(), g.GetName())
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment).DeepCopy()
		i := 0
		if strings.HasSuffix(d.Name, "-canary") {
			i = 1
		}
		d.Status.ReadyReplicas, d.Status.UpdatedReplicas = 0, 0
		if s.probe[i].Load() && d.Spec.Replicas != nil {
			d.Status.ReadyReplicas, d.Status.UpdatedReplicas = *d.Spec.Replicas, *d.Spec.Replicas
		}
		return true, d, nil
	})
	proxies := map[serving.Variant]*httputil.ReverseProxy{}
	for v, u := range s.urls {
		pu, _ := url.Parse(u)
		proxies[v] = httputil.NewSingleHostReverseProxy(pu)
	}
	s.svc = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, ca := s.ready[0].Load(), s.ready[1].Load()
		if st+ca == 0 {
			http.Error(w, "no endpoints", http.StatusServiceUnavailable)
			return
		}
		v := serving.Stable
		if s.n.Add(1)%int64(st+ca) < int64(ca) {
			v = serving.Canary
		}
		proxies[v].ServeHTTP(w, r)
	}))
	t.Cleanup(s.svc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		applied := map[serving.Variant]string{}
		empty := map[serving.Variant]bool{}
		for ctx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
			epoch := s.epoch.Load()
			if cm, err := s.cs.CoreV1().ConfigMaps("ml").Get(ctx, "djia30-serving", metav1.GetOptions{}); err == nil {
				for v, p := range s.pods {
					text := cm.Data[string(v)+".config"]
					if text == applied[v] {
						continue
					}
					if mcs, err := tfs.ParseModelConfig(text); err == nil && len(mcs) == 1 {
						_ = p.Configure(mcs[0], s.behaviors)
					}
					applied[v] = text
				}
			}
			for i, v := range []serving.Variant{serving.Stable, serving.Canary} {
				if _, err := s.cs.Tracker().Get(appsv1.SchemeGroupVersion.WithResource("deployments"), "ml", "djia30-"+string(v)); err != nil {
					// No Deployment, no pod: out of the Service first (the
					// requests already sent to it finish, as a terminating
					// pod drains), then the next one starts empty.
					s.probe[i].Store(false)
					s.ready[i].Store(0)
					if !empty[v] {
						time.Sleep(50 * time.Millisecond)
						s.pods[v].Configure(tfs.ModelConfig{Name: "djia30"}, nil)
						empty[v] = true
					}
					applied[v] = ""
					continue
				}
				empty[v] = false
				// The readiness probe of the pod template (the variant's
				// label resolves to a loaded version).
				ok := false
				if resp, err := http.Get(s.urls[v] + "/v1/models/djia30/labels/" + string(v) + "/metadata"); err == nil {
					resp.Body.Close()
					ok = resp.StatusCode == http.StatusOK
				}
				if s.epoch.Load() == epoch {
					s.probe[i].Store(ok)
				}
				ready := int32(0)
				if d, err := s.cs.AppsV1().Deployments("ml").Get(ctx, "djia30-"+string(v), metav1.GetOptions{}); err == nil {
					ready = d.Status.ReadyReplicas
				}
				s.ready[i].Store(ready)
			}
		}
	}()
	return s
}

// The deploy stage with the Kubernetes backend: a first deploy, a canary
// 25→50→75→100 under constant load through the Service with no failed
// request and each step's measured share equal to its weight, then a canary
// answering 500 rolled back (exit 3's ErrRolledBack) with the stable
// untouched, one answering 400 to what the stable accepts rolled back the
// same way (the one definition of a failed request), a slow one (its p99
// from the histograms summed over its pods), one that cannot load,
// reverting deploy.yaml, and rollback --to.
func TestRunOnKubernetes(t *testing.T) {
	sim := newKubeSim(t, map[int64]faketfs.Behavior{3: {FailEvery: 1}, 4: {Status: 400}, 5: {LoadError: "SavedModel file does not exist at /models/models/djia30/5"}, 6: {Delay: 60 * time.Millisecond}})
	b, err := kube.New(sim.cs, "ml", "djia30", "127.0.0.1:5000/djia30/serve@sha256:"+strings.Repeat("a", 64), "djia30-model",
		kube.WithReplicas(4), kube.WithPoll(5*time.Millisecond, 10*time.Second), kube.WithLabelTimeout(10*time.Second),
		kube.WithEndpoint(func(v serving.Variant) string { return sim.urls[v] }))
	if err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(logrus.WarnLevel)
	c := cfg()
	c.Deploy.Canary.Steps = []int{25, 50, 75, 100}
	c.Deploy.Canary.Interval.Duration = 150 * time.Millisecond
	c.Deploy.Canary.MaxLatencyP99.Duration = 40 * time.Millisecond
	c.Deploy.Serving.Replicas = 4
	f := &memForge{}
	o := deploy.Options{Config: c, Workspace: ws, Serving: b, Forge: f, Log: log, StatusFile: filepath.Join(t.TempDir(), "deploy-status.json")}

	run := func(version int64, load bool) (*deploy.Result, loadgen.Report, error) {
		writeSpec(t, ws, version)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan loadgen.Report, 1)
		if !load {
			cancel()
		}
		go func() {
			rep, _ := loadgen.Run(ctx, loadgen.Options{URL: sim.svc.URL + "/v1/models/djia30:predict", Body: []byte(`{"instances":[[1]]}`), Concurrency: 8, Rate: 400})
			done <- rep
		}()
		o.Commit = fmt.Sprintf("c%d", version)
		res, err := deploy.Run(context.Background(), o)
		cancel()
		return res, <-done, err
	}
	stable := func() (int64, int32, int) {
		st, err := b.State(context.Background())
		if err != nil || st.Get(serving.Stable) == nil {
			t.Fatalf("state = %+v, %v", st, err)
		}
		return st.Get(serving.Stable).Model.Version, int32(st.Get(serving.Stable).Replicas), len(st.Variants)
	}

	res, _, err := run(1, false)
	if err != nil || res.Status.Phase != "Succeeded" || res.Status.StableVersion != 1 {
		t.Fatalf("first deploy: %+v, %v", res, err)
	}
	if v, n, vars := stable(); v != 1 || n != 4 || vars != 1 {
		t.Fatalf("after the first deploy: stable v%d with %d pods, %d variants", v, n, vars)
	}

	// The plan says how many pods the canary gets at each step.
	c.Backends.Serving.Type = "kubernetes"
	writeSpec(t, ws, 2)
	dry := o
	dry.DryRun = true
	if plan, err := deploy.Run(context.Background(), dry); err != nil || plan.Plan[0] != "canary djia30 v2 against stable v1: steps [25 50 75 100] every 150ms, threshold 2 (canary pods 1, 2, 3, 4 of 4)" {
		t.Fatalf("dry run: %q, %v", plan.Plan, err)
	}

	res, rep, err := run(2, true)
	if err != nil || res.Status.Phase != "Succeeded" {
		t.Fatalf("v2: %+v, %v", res.Status, err)
	}
	if rep.Failed != 0 || rep.Sent < 100 {
		t.Fatalf("v2 under load: %d of %d requests failed: %q", rep.Failed, rep.Sent, rep.Errors)
	}
	seen := map[int]bool{}
	for _, a := range res.Analyses {
		t.Logf("weight %3d%%: canary %4d requests, stable %4d, measured share %.2f%%, failed %d", a.Weight, a.CanaryRequests, a.StableRequests, a.Share, a.CanaryErrors)
		if a.CanaryErrors != 0 || (a.Weight < 100 && (a.Share < float64(a.Weight)-8 || a.Share > float64(a.Weight)+8)) {
			t.Errorf("weight %d%%: share %.2f%%, %d errors", a.Weight, a.Share, a.CanaryErrors)
		}
		seen[a.Weight] = true
	}
	for _, w := range c.Deploy.Canary.Steps {
		if !seen[w] {
			t.Errorf("no analysis at %d%%: %+v", w, res.Analyses)
		}
	}
	if v, n, vars := stable(); v != 2 || n != 4 || vars != 1 {
		t.Fatalf("after v2: stable v%d with %d pods, %d variants", v, n, vars)
	}

	for _, bad := range []struct {
		version int64
		why     string
		client  bool
	}{{3, "failed)", false}, {4, "client errors (4xx) beyond the stable version's rate", true}, {6, "p99 latency", false}} {
		res, _, err = run(bad.version, true)
		if !errors.Is(err, deploy.ErrRolledBack) || res.Status.Phase != "RolledBack" {
			t.Fatalf("v%d: %+v, %v", bad.version, res.Status, err)
		}
		if !strings.Contains(res.Status.Message, bad.why) || strings.Contains(res.Status.Message, "client errors") != bad.client {
			t.Errorf("v%d rolled back for %q, want %q", bad.version, res.Status.Message, bad.why)
		}
		if v, n, vars := stable(); v != 2 || n != 4 || vars != 1 {
			t.Fatalf("after v%d: stable v%d with %d pods, %d variants", bad.version, v, n, vars)
		}
	}
	// A version whose pods cannot load it: rolled back at once, no step taken.
	res, rep, err = run(5, true)
	if !errors.Is(err, deploy.ErrRolledBack) || !strings.Contains(res.Status.Message, "SavedModel file does not exist") || len(res.Analyses) != 0 || rep.Failed != 0 {
		t.Fatalf("unloadable v5: %+v, %d analyses, %d failed requests (%q), %v", res.Status.Message, len(res.Analyses), rep.Failed, rep.Errors, err)
	}
	if v, n, vars := stable(); v != 2 || n != 4 || vars != 1 {
		t.Fatalf("after v5: stable v%d with %d pods, %d variants", v, n, vars)
	}
	// Reverting deploy.yaml to v1 brings it back by canary; rollback --to 2 after.
	if res, rep, err = run(1, true); err != nil || res.Status.Phase != "Succeeded" || rep.Failed != 0 {
		t.Fatalf("revert to v1: %+v, %d failed (%q), %v", res.Status.Phase, rep.Failed, rep.Errors, err)
	}
	if v, n, vars := stable(); v != 1 || n != 4 || vars != 1 {
		t.Fatalf("after the revert: stable v%d with %d pods, %d variants", v, n, vars)
	}
	rb, err := deploy.Rollback(context.Background(), o, 2)
	if err != nil || rb.Status.StableVersion != 2 {
		t.Fatalf("rollback --to 2: %+v, %v", rb, err)
	}
	if v, n, vars := stable(); v != 2 || n != 4 || vars != 1 {
		t.Fatalf("after rollback --to 2: stable v%d with %d pods, %d variants", v, n, vars)
	}
}
