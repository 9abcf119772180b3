package kubernetes_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/branchml/branchml/agents/backends/serving"
	kube "github.com/branchml/branchml/agents/backends/serving/kubernetes"
	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
	faketfs "github.com/branchml/branchml/agents/internal/fake/tfserving"
	"github.com/branchml/branchml/agents/records"
)

const ns = "ml"

type fixture struct {
	cs             *fake.Clientset
	b              *kube.Backend
	stable, canary *faketfs.Server
	// pods are the fake servers behind each variant's EndpointSlices
	// (stable and canary are the first of each).
	pods map[serving.Variant][]*faketfs.Server
	// endpoint is the variants' endpoints the Backend was given.
	endpoint func(serving.Variant) string
}

func newFixture(t *testing.T, opts ...kube.Option) *fixture {
	f := &fixture{cs: fake.NewClientset(), stable: faketfs.New("djia30"), canary: faketfs.New("djia30"), pods: map[serving.Variant][]*faketfs.Server{}}
	ss, cs := httptest.NewServer(f.stable), httptest.NewServer(f.canary)
	t.Cleanup(ss.Close)
	t.Cleanup(cs.Close)
	f.addPod(t, serving.Stable, f.stable, ss)
	f.addPod(t, serving.Canary, f.canary, cs)
	f.endpoint = func(v serving.Variant) string {
		if v == serving.Stable {
			return ss.URL
		}
		return cs.URL
	}
	b, err := kube.New(f.cs, ns, "djia30", "registry.local/djia30/serve@sha256:abc", "djia30-model",
		append([]kube.Option{kube.WithReplicas(4), kube.WithPoll(5*time.Millisecond, 5*time.Second), kube.WithLabelTimeout(5 * time.Second),
			kube.WithEndpoint(f.endpoint)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	f.b = b
	return f
}

// addPod lists srv (served by hs) as one more pod of variant v: an
// EndpointSlice of the variant's Service with 127.0.0.1 and hs's port.
// deployStable makes v1 available on the stable's pods, deploys it as the
// stable and routes all traffic to it.
func (f *fixture) deployStable(t *testing.T) {
	t.Helper()
	f.stable.SetState(1, tfs.StateAvailable)
	if err := f.b.Deploy(context.Background(), serving.Stable, v1); err != nil {
		t.Fatal(err)
	}
	if err := f.b.Route(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
}

// addCanaryPod adds a second canary pod, its fake TF Serving on its own
// loopback server, and returns that server.
func (f *fixture) addCanaryPod(t *testing.T) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(faketfs.New("djia30"))
	t.Cleanup(hs.Close)
	f.addPod(t, serving.Canary, hs.Config.Handler.(*faketfs.Server), hs)
	return hs
}

func (f *fixture) addPod(t *testing.T, v serving.Variant, srv *faketfs.Server, hs *httptest.Server) {
	t.Helper()
	port, _ := strconv.Atoi(hs.URL[strings.LastIndexByte(hs.URL, ':')+1:])
	name := fmt.Sprintf("djia30-%s-%d", v, len(f.pods[v]))
	yes := true
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "djia30-" + string(v)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: name}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(port))}},
	}
	if _, err := f.cs.DiscoveryV1().EndpointSlices(ns).Create(context.Background(), sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.pods[v] = append(f.pods[v], srv)
}

func ptr[T any](v T) *T { return &v }

// syncConfig plays the kubelet and the servers' config poll: every tick
// it applies the labels of each variant's config key to that variant's
// pods (a label on a version a pod has not loaded is refused, as TF
// Serving refuses it), until the test ends.
func (f *fixture) syncConfig(t *testing.T, every time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			time.Sleep(every)
			cm, err := f.cs.CoreV1().ConfigMaps(ns).Get(ctx, "djia30-serving", metav1.GetOptions{})
			if err != nil {
				continue
			}
			for v, pods := range f.pods {
				mcs, err := tfs.ParseModelConfig(cm.Data[string(v)+".config"])
				if err != nil || len(mcs) != 1 {
					continue
				}
				for l, ver := range mcs[0].Labels {
					for _, p := range pods {
						_ = p.SetLabel(l, ver)
					}
				}
			}
		}
	}()
}

// readyController plays the Deployment controller and the kubelet: a
// Deployment is read back with ready replicas that follow its spec, rising
// only delay after the spec rose (the new pods start and pass their
// readiness probe), falling at once. (Set on read: a status written back
// by the test would race the backend's updates of the whole object in the
// fake clientset.) Call it before any goroutine uses the clientset (adding
// a reactor races its use). It returns the lowest total of ready pods seen once the
// sum first reached min.
func (f *fixture) readyController(t *testing.T, delay time.Duration, min int32) func() int32 {
	type state struct {
		want, ready int32
		since       time.Time
	}
	var mu sync.Mutex
	states := map[string]*state{}
	f.cs.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		g := a.(k8stesting.GetAction)
		obj, err := f.cs.Tracker().Get(appsv1.SchemeGroupVersion.WithResource("deployments"), g.GetNamespace(), g.GetName())
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment).DeepCopy()
		mu.Lock()
		defer mu.Unlock()
		st := states[d.Name]
		if st == nil {
			st = &state{}
			states[d.Name] = st
		}
		if want := *d.Spec.Replicas; want != st.want {
			st.want, st.since = want, time.Now()
		}
		switch {
		case st.want < st.ready:
			st.ready = st.want
		case st.want > st.ready && time.Since(st.since) >= delay:
			st.ready = st.want
		}
		d.Status.ReadyReplicas, d.Status.UpdatedReplicas, d.Status.Replicas = st.ready, st.ready, st.ready
		return true, d, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var lmu sync.Mutex
	lowest, armed := int32(1<<30), false
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			time.Sleep(time.Millisecond)
			var total int32
			for _, name := range []string{"djia30-stable", "djia30-canary"} {
				if d, err := f.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
					total += d.Status.ReadyReplicas
				}
			}
			lmu.Lock()
			if total >= min {
				armed = true
			}
			if armed && total < lowest {
				lowest = total
			}
			lmu.Unlock()
		}
	}()
	return func() int32 {
		lmu.Lock()
		defer lmu.Unlock()
		return lowest
	}
}

func (f *fixture) config(t *testing.T, key string) string {
	cm, err := f.cs.CoreV1().ConfigMaps(ns).Get(context.Background(), "djia30-serving", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data[key]
}

func (f *fixture) replicas(t *testing.T) (int32, int32) {
	get := func(name string) int32 {
		d, err := f.cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return -1
		}
		if err != nil {
			t.Fatal(err)
		}
		return *d.Spec.Replicas
	}
	return get("djia30-stable"), get("djia30-canary")
}

func cfg(version int64, label string) string {
	s := "model_config_list {\n  config {\n    name: \"djia30\"\n    base_path: \"/models/models/djia30\"\n    model_platform: \"tensorflow\"\n    model_version_policy {\n      specific {\n        versions: " +
		itoa(version) + "\n      }\n    }\n"
	if label != "" {
		s += "    version_labels {\n      key: \"" + label + "\"\n      value: " + itoa(version) + "\n    }\n"
	}
	return s + "  }\n}\n"
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

var (
	v1 = records.ModelRef{Name: "djia30", Version: 1, Volume: "djia30-model", Path: "models/djia30"}
	v2 = records.ModelRef{Name: "djia30", Version: 2, Volume: "djia30-model", Path: "models/djia30"}
)

func TestObjectsStepsAndLabelsAfterAvailable(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.readyController(t, time.Millisecond, 4) // before any goroutine uses the clientset: it adds a reactor
	f.syncConfig(t, time.Millisecond)
	f.deployStable(t)
	// Services: one selecting on the app label only, one per variant.
	svcs, _ := f.cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	sel := map[string]map[string]string{}
	for _, s := range svcs.Items {
		sel[s.Name] = s.Spec.Selector
		if s.Spec.Ports[0].Port != 8501 {
			t.Errorf("service %s port %d", s.Name, s.Spec.Ports[0].Port)
		}
	}
	wantSel := map[string]map[string]string{
		"djia30":        {"app": "djia30"},
		"djia30-stable": {"app": "djia30", "branchml.dev/variant": "stable"},
		"djia30-canary": {"app": "djia30", "branchml.dev/variant": "canary"},
	}
	if !reflect.DeepEqual(sel, wantSel) {
		t.Fatalf("service selectors = %v", sel)
	}
	d, _ := f.cs.AppsV1().Deployments(ns).Get(ctx, "djia30-stable", metav1.GetOptions{})
	c := d.Spec.Template.Spec.Containers[0]
	wantArgs := []string{"--port=8500", "--rest_api_port=8501", "--model_config_file=/config/stable.config", "--model_config_file_poll_wait_seconds=10",
		"--monitoring_config_file=/config/monitoring.config", "--allow_version_labels_for_unavailable_models=true"}
	if c.Image != "registry.local/djia30/serve@sha256:abc" || !reflect.DeepEqual(c.Args, wantArgs) {
		t.Fatalf("container = %s %q", c.Image, c.Args)
	}
	if p := c.ReadinessProbe.HTTPGet.Path; p != "/v1/models/djia30/labels/stable/metadata" {
		t.Fatalf("readiness probe path = %s", p)
	}
	if l := c.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Sleep == nil || l.PreStop.Sleep.Seconds != 5 {
		t.Fatalf("lifecycle = %+v, want a preStop sleep of 5 s", l)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.IntValue() != 1 {
		t.Fatalf("rolling update = %+v, want maxUnavailable 0, maxSurge 1", ru)
	}
	vols := d.Spec.Template.Spec.Volumes
	if vols[0].PersistentVolumeClaim == nil || vols[0].PersistentVolumeClaim.ClaimName != "djia30-model" || !vols[0].PersistentVolumeClaim.ReadOnly || !c.VolumeMounts[0].ReadOnly || c.VolumeMounts[0].MountPath != "/models" {
		t.Fatalf("model volume = %+v mounts %+v", vols[0], c.VolumeMounts)
	}
	if vols[1].ConfigMap == nil || vols[1].ConfigMap.Name != "djia30-serving" {
		t.Fatalf("config volume = %+v", vols[1])
	}
	if !reflect.DeepEqual(d.Spec.Selector.MatchLabels, map[string]string{"app": "djia30", "app.kubernetes.io/managed-by": "branchml", "branchml.dev/variant": "stable"}) || d.Labels["branchml.dev/model-version"] != "1" {
		t.Fatalf("labels = %v selector %v", d.Labels, d.Spec.Selector.MatchLabels)
	}
	if got := f.config(t, "stable.config"); got != cfg(1, "stable") {
		t.Fatalf("stable.config =\n%s", got)
	}
	if s, c := f.replicas(t); s != 4 || c != -1 {
		t.Fatalf("replicas = %d/%d, want 4 stable, no canary", s, c)
	}

	// Canary v2 loads slowly: the label must not appear before AVAILABLE.
	f.canary.SetState(2, tfs.StateLoading)
	seen := make(chan string, 1)
	go func() {
		for {
			cm, err := f.cs.CoreV1().ConfigMaps(ns).Get(ctx, "djia30-serving", metav1.GetOptions{})
			if err == nil && cm.Data["canary.config"] != "" {
				seen <- cm.Data["canary.config"]
				time.Sleep(30 * time.Millisecond)
				f.canary.SetState(2, tfs.StateAvailable)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if err := f.b.Deploy(ctx, serving.Canary, v2); err != nil {
		t.Fatal(err)
	}
	if first := <-seen; first != cfg(2, "") {
		t.Fatalf("canary.config before AVAILABLE =\n%s", first)
	}
	if got := f.config(t, "canary.config"); got != cfg(2, "canary") {
		t.Fatalf("canary.config after AVAILABLE =\n%s", got)
	}
	for _, step := range []struct {
		w    int
		s, c int32
	}{{25, 3, 1}, {50, 2, 2}, {75, 1, 3}, {100, 0, 4}} {
		if err := f.b.Route(ctx, step.w); err != nil {
			t.Fatal(err)
		}
		if s, c := f.replicas(t); s != step.s || c != step.c {
			t.Fatalf("weight %d: replicas %d/%d, want %d/%d", step.w, s, c, step.s, step.c)
		}
	}
	st, _ := f.b.State(ctx)
	if st.CanaryWeight != 100 || st.Get(serving.Canary).Model != v2 {
		t.Fatalf("state = %+v", st)
	}
	// Smoke predictions go to the canary by its label; metrics per variant.
	p, err := f.b.Predict(ctx, serving.Canary, []byte(`{"instances":[[1]]}`))
	if err != nil || string(p.Predictions) != "[[2]]" {
		t.Fatalf("predict = %v, %v", p, err)
	}
	if calls := f.canary.Calls(); calls[len(calls)-1].Path != "/v1/models/djia30/labels/canary:predict" {
		t.Fatalf("predict path = %s", calls[len(calls)-1].Path)
	}
	if m, err := f.b.Counters(ctx, serving.Canary); err != nil || m.Requests != 1 {
		t.Fatalf("counters = %+v, %v", m, err)
	}

	f.stable.SetState(2, tfs.StateAvailable)
	if err := f.b.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if s, c := f.replicas(t); s != 4 || c != -1 {
		t.Fatalf("after promote replicas = %d/%d", s, c)
	}
	if got := f.config(t, "stable.config"); got != cfg(2, "stable") {
		t.Fatalf("stable.config after promote =\n%s", got)
	}
	if got := f.config(t, "canary.config"); got != "" {
		t.Fatalf("canary.config after promote = %q", got)
	}
	st, _ = f.b.State(ctx)
	if len(st.Variants) != 1 || st.Get(serving.Stable).Model != v2 || st.CanaryWeight != 0 {
		t.Fatalf("state after promote = %+v", st)
	}
}

func TestStableVersionChangeKeepsOldLabelUntilAvailable(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.syncConfig(t, time.Millisecond)
	f.stable.SetState(1, tfs.StateAvailable)
	if err := f.b.Deploy(ctx, serving.Stable, v1); err != nil {
		t.Fatal(err)
	}
	f.stable.SetState(2, tfs.StateLoading)
	seen := make(chan string, 1)
	go func() {
		for {
			if c := f.config(t, "stable.config"); strings.Contains(c, "versions: 2") {
				seen <- c
				f.stable.SetState(2, tfs.StateAvailable)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if err := f.b.Deploy(ctx, serving.Stable, v2); err != nil {
		t.Fatal(err)
	}
	got := <-seen
	if !strings.Contains(got, "versions: 1\n        versions: 2") || !strings.Contains(got, "key: \"stable\"\n      value: 1") {
		t.Fatalf("stable.config while v2 loads =\n%s", got)
	}
	if c := f.config(t, "stable.config"); c != cfg(2, "stable") {
		t.Fatalf("final =\n%s", c)
	}
}

func TestErrorsAreTypedAndRetriable(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.cs.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, "djia30-serving", errors.New("changed"))
	})
	err := f.b.Deploy(ctx, serving.Stable, v1)
	var se *serving.Error
	if !errors.As(err, &se) || !se.Temporary() || !strings.Contains(se.Op, "update configmap djia30-serving (namespace ml, model djia30)") {
		t.Fatalf("err = %v", err)
	}
	f2 := newFixture(t)
	f2.cs.PrependReactor("create", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "djia30", errors.New("rbac"))
	})
	err = f2.b.Deploy(ctx, serving.Stable, v1)
	if !errors.As(err, &se) || se.Temporary() {
		t.Fatalf("forbidden err = %v", err)
	}
	if _, err := kube.New(f.cs, ns, "djia30", "", "vol"); err == nil {
		t.Fatal("New without image: want an error")
	}
}

func TestSplitRefusesWeightsTheReplicasCannotExpress(t *testing.T) {
	for _, c := range []struct{ total, w, s, c int }{{4, 0, 4, 0}, {4, 25, 3, 1}, {4, 50, 2, 2}, {4, 75, 1, 3}, {4, 100, 0, 4}, {10, 10, 9, 1}, {20, 25, 15, 5}, {2, 50, 1, 1}} {
		if s, cc, err := kube.Split(c.total, c.w); err != nil || s != c.s || cc != c.c {
			t.Errorf("Split(%d, %d) = %d/%d, %v; want %d/%d", c.total, c.w, s, cc, err, c.s, c.c)
		}
	}
	// Before: 10% of 4 replicas gave the canary 1 pod (25%), 10% of 2 gave 50%.
	for _, c := range []struct {
		total, w int
		msg      string
	}{
		{4, 10, "canary weight 10% cannot be expressed with 4 replicas (it would be 25%): with 4 replicas the canary can get 25, 50, 75 or 100%; set deploy.canary.steps to those, or deploy.serving.replicas to a multiple of 10"},
		{2, 25, "canary weight 25% cannot be expressed with 2 replicas (it would be 50%): with 2 replicas the canary can get 50 or 100%; set deploy.canary.steps to those, or deploy.serving.replicas to a multiple of 4"},
		{3, 50, "canary weight 50% cannot be expressed with 3 replicas (it would be 66%): with 3 replicas the canary can get 100%; set deploy.canary.steps to those, or deploy.serving.replicas to a multiple of 2"},
	} {
		if _, _, err := kube.Split(c.total, c.w); err == nil || err.Error() != c.msg {
			t.Errorf("Split(%d, %d) err = %v\nwant %s", c.total, c.w, err, c.msg)
		}
	}
	f := newFixture(t)
	err := f.b.Route(context.Background(), 10)
	var se *serving.Error
	if !errors.As(err, &se) || se.Temporary() || !strings.Contains(err.Error(), "cannot be expressed with 4 replicas") {
		t.Fatalf("Route(10) with 4 replicas = %v", err)
	}
}

// Deploy returns only once every pod of the variant resolves its label to
// the new version: smoke tests by label right after it must not get
// "Unrecognized servable version label" from a pod that has not re-read
// the config yet.
func TestDeployWaitsForTheLabelOnEveryPod(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	hs := f.addCanaryPod(t)
	f.syncConfig(t, 150*time.Millisecond) // the kubelet's ConfigMap sync and the server's poll
	for _, p := range f.pods[serving.Canary] {
		p.SetState(2, tfs.StateAvailable)
	}
	if err := f.b.Deploy(ctx, serving.Canary, v2); err != nil {
		t.Fatal(err)
	}
	for i, p := range f.pods[serving.Canary] {
		c, _ := tfs.New([]string{f.canaryURL(t), hs.URL}[i])
		st, err := c.Status(ctx, "djia30", tfs.Selector{Label: "canary"})
		if err != nil || len(st) != 1 || st[0].Version != 2 {
			t.Fatalf("pod %d right after Deploy: label canary = %+v, %v", i, st, err)
		}
		_ = p
	}
	// Bounded: a pod that never picks the label up fails the deploy in time.
	g := newFixture(t, kube.WithLabelTimeout(100*time.Millisecond))
	g.canary.SetState(2, tfs.StateAvailable)
	start := time.Now()
	err := g.b.Deploy(ctx, serving.Canary, v2)
	if err == nil || !strings.Contains(err.Error(), "wait for label canary on v2 on every pod of canary") || !strings.Contains(err.Error(), "not within 100ms") {
		t.Fatalf("Deploy with a pod that never syncs = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Deploy took %v with a 100ms label timeout", d)
	}
}

func (f *fixture) canaryURL(t *testing.T) string {
	pods, err := f.b.Pods(context.Background(), serving.Canary)
	if err != nil || len(pods) == 0 {
		t.Fatal(pods, err)
	}
	return pods[0].URL
}

// A version that cannot load on the pods is ErrLoadFailed (a failed
// canary), not a timeout.
func TestDeployLoadFailureIsErrLoadFailed(t *testing.T) {
	f := newFixture(t)
	f.canary.SetError(2, "INVALID_ARGUMENT", "SavedModel not found")
	err := f.b.Deploy(context.Background(), serving.Canary, v2)
	if !errors.Is(err, serving.ErrLoadFailed) || !strings.Contains(err.Error(), "SavedModel not found") {
		t.Fatalf("err = %v", err)
	}
}

// The analysis reads every ready pod of the variant and sums them; through
// the Service each scrape reached one pod (50, 5, 50, 5 requests).
func TestCountersSumEveryReadyPod(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	hs := f.addCanaryPod(t)
	for _, p := range f.pods[serving.Canary] {
		p.SetState(2, tfs.StateAvailable)
	}
	predict := func(url string, n int) {
		c, _ := tfs.New(url)
		for range n {
			if _, err := c.Predict(ctx, "djia30", tfs.Selector{Version: 2}, []byte(`{"instances":[[1]]}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	predict(f.canaryURL(t), 50)
	predict(hs.URL, 5)
	for range 4 {
		m, err := f.b.Counters(ctx, serving.Canary)
		if err != nil || m.Requests != 55 || m.Codes[200] != 55 || m.Latency.Count != 55 {
			t.Fatalf("counters = %+v, %v; want 55 requests from both pods", m, err)
		}
	}
	// A pod that is not ready (still loading, or failing its probe) is not
	// scraped: it counts with what it last reported.
	sl, _ := f.cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, "djia30-canary-1", metav1.GetOptions{})
	sl.Endpoints[0].Conditions.Ready = ptr(false)
	if _, err := f.cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	predict(hs.URL, 3)
	if m, err := f.b.Counters(ctx, serving.Canary); err != nil || m.Requests != 55 {
		t.Fatalf("counters with the unready pod = %+v, %v; want 55", m.Requests, err)
	}
	// A pod that goes away (scale-down) keeps its counts: the sum never
	// goes down, so the analysis' delta is not read as a restart.
	if err := f.cs.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "djia30-canary-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	predict(f.canaryURL(t), 2)
	if m, err := f.b.Counters(ctx, serving.Canary); err != nil || m.Requests != 57 {
		t.Fatalf("counters after the pod went away = %+v, %v; want 55 + 2", m.Requests, err)
	}
	// Listed again (a real EndpointSlice controller rewrites slices, and a
	// list can miss a pod for a moment), ready, with counters at least
	// what it had: the same server, counted once (52 + its 8), not added
	// on top of its earlier counts (it was 65 here).
	back := sl.DeepCopy()
	back.ResourceVersion = ""
	back.Endpoints[0].Conditions.Ready = ptr(true)
	if _, err := f.cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, back, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if m, err := f.b.Counters(ctx, serving.Canary); err != nil || m.Requests != 60 {
		t.Fatalf("counters after the pod was listed again = %+v, %v; want 52 + 8", m.Requests, err)
	}
	if err := f.cs.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "djia30-canary-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod whose server restarted (its counters start again) adds to what
	// it had counted before.
	restartedPod := faketfs.New("djia30")
	restartedPod.SetState(2, tfs.StateAvailable)
	hs2 := httptest.NewServer(restartedPod)
	t.Cleanup(hs2.Close)
	sl, _ = f.cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, "djia30-canary-0", metav1.GetOptions{})
	port, _ := strconv.Atoi(hs2.URL[strings.LastIndexByte(hs2.URL, ':')+1:])
	sl.Ports[0].Port = ptr(int32(port))
	if _, err := f.cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	predict(hs2.URL, 4)
	if m, err := f.b.Counters(ctx, serving.Canary); err != nil || m.Requests != 64 || m.Codes[200] != 64 {
		t.Fatalf("counters after a restart = %+v, %v; want 60 + 4", m.Requests, err)
	}
}

// Route, Abort and Promote never leave fewer ready pods than the total:
// the variant that grows is Ready before the other shrinks.
func TestNeverBelowReadyCapacity(t *testing.T) {
	ctx := context.Background()
	for _, end := range []string{"abort", "promote"} {
		t.Run(end, func(t *testing.T) {
			f := newFixture(t)
			lowest := f.readyController(t, 30*time.Millisecond, 4) // first: it adds a reactor
			f.syncConfig(t, time.Millisecond)
			f.deployStable(t)
			for deadline := time.Now().Add(5 * time.Second); lowest() > 4; {
				if time.Now().After(deadline) {
					t.Fatal("the stable's 4 pods never became ready")
				}
				time.Sleep(time.Millisecond)
			}
			f.canary.SetState(2, tfs.StateAvailable)
			if err := f.b.Deploy(ctx, serving.Canary, v2); err != nil {
				t.Fatal(err)
			}
			for _, w := range []int{25, 50, 75, 100} {
				if err := f.b.Route(ctx, w); err != nil {
					t.Fatal(err)
				}
			}
			if end == "abort" {
				if err := f.b.Abort(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				f.stable.SetState(2, tfs.StateAvailable)
				if err := f.b.Promote(ctx); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(10 * time.Millisecond)
			if l := lowest(); l < 4 {
				t.Fatalf("ready pods fell to %d of 4 during the rollout and %s", l, end)
			}
			if s, c := f.replicas(t); s != 4 || c != -1 {
				t.Fatalf("after %s replicas = %d/%d", end, s, c)
			}
		})
	}
}

type bearer struct{ rt http.RoundTripper }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer agent-token")
	return b.rt.RoundTrip(r)
}

// With WithAPIServerProxy the backend reaches a variant through the API
// server's services/proxy and each pod through pods/proxy (by the pod's
// name from the EndpointSlice, on the slice's port), with the API server's
// client: exact paths, the client's credentials on every request.
func TestAPIServerProxyPaths(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var paths []string
	var f *fixture
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer agent-token" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		prefix, rest, ok := strings.Cut(r.URL.Path, "/proxy")
		if !ok {
			http.NotFound(w, r)
			return
		}
		target := f.stable
		if strings.Contains(prefix, "canary") {
			target = f.canary
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = rest
		target.ServeHTTP(w, r2)
	}))
	t.Cleanup(api.Close)
	f = newFixture(t, kube.WithAPIServerProxy(api.URL+"/", &http.Client{Transport: bearer{http.DefaultTransport}}))
	f.canary.SetState(2, tfs.StateAvailable)
	pods, err := f.b.Pods(ctx, serving.Canary)
	if err != nil || len(pods) != 1 {
		t.Fatalf("pods = %+v, %v", pods, err)
	}
	sl, err := f.cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, pods[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(int(*sl.Ports[0].Port)) // the canary pod's port, as its EndpointSlice lists it
	if want := api.URL + "/api/v1/namespaces/ml/pods/" + pods[0].Name + ":" + port + "/proxy"; pods[0].URL != want {
		t.Fatalf("pod URL = %s, want %s", pods[0].URL, want)
	}
	if _, err := f.b.Counters(ctx, serving.Canary); err != nil {
		t.Fatal(err)
	}
	// No label yet: the pod's 404 comes back through the proxy as it is.
	if _, err := f.b.Predict(ctx, serving.Canary, []byte(`{"instances":[[1]]}`)); !tfs.IsNotFound(err) {
		t.Fatalf("predict by a label the canary does not have yet: %v, want the pod's 404", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"GET /api/v1/namespaces/ml/pods/" + pods[0].Name + ":" + port + "/proxy/monitoring/prometheus/metrics",
		"POST /api/v1/namespaces/ml/services/djia30-canary:8501/proxy/v1/models/djia30/labels/canary:predict",
	}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("requests to the API server:\n%q\nwant\n%q", paths, want)
	}
	// The model's Service of both variants, as its users call it.
	if got, want := f.b.ServiceURL(), api.URL+"/api/v1/namespaces/ml/services/djia30:8501/proxy"; got != want {
		t.Errorf("ServiceURL() = %s, want %s", got, want)
	}
	if f.b.HTTPClient() == nil {
		t.Error("HTTPClient() = nil, want the API server's client")
	}
}

// Without the API server's proxy the Service is its cluster DNS name and
// any client will do.
func TestServiceURLInCluster(t *testing.T) {
	b, err := kube.New(fake.NewClientset(), "ml", "djia30", "img", "vol")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.ServiceURL(), "http://djia30.ml.svc:8501"; got != want {
		t.Errorf("ServiceURL() = %s, want %s", got, want)
	}
	if b.HTTPClient() != nil {
		t.Error("HTTPClient() is set without WithAPIServerProxy")
	}
}
