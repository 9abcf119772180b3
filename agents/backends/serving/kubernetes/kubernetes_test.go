package kubernetes_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

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
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{cs: fake.NewClientset(), stable: faketfs.New("djia30"), canary: faketfs.New("djia30")}
	ss, cs := httptest.NewServer(f.stable), httptest.NewServer(f.canary)
	t.Cleanup(ss.Close)
	t.Cleanup(cs.Close)
	b, err := kube.New(f.cs, ns, "djia30", "registry.local/djia30/serve@sha256:abc", "djia30-model",
		kube.WithReplicas(4), kube.WithPoll(5*time.Millisecond, 5*time.Second),
		kube.WithEndpoint(func(v serving.Variant) string {
			if v == serving.Stable {
				return ss.URL
			}
			return cs.URL
		}))
	if err != nil {
		t.Fatal(err)
	}
	f.b = b
	return f
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
	f.stable.SetState(1, tfs.StateAvailable)
	if err := f.b.Deploy(ctx, serving.Stable, v1); err != nil {
		t.Fatal(err)
	}
	if err := f.b.Route(ctx, 0); err != nil {
		t.Fatal(err)
	}
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
	wantArgs := []string{"--rest_api_port=8501", "--model_config_file=/config/stable.config", "--model_config_file_poll_wait_seconds=10", "--monitoring_config_file=/config/monitoring.config"}
	if c.Image != "registry.local/djia30/serve@sha256:abc" || !reflect.DeepEqual(c.Args, wantArgs) {
		t.Fatalf("container = %s %q", c.Image, c.Args)
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
	}{{10, 3, 1}, {25, 3, 1}, {50, 2, 2}, {100, 0, 4}} {
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
	// TF Serving reloads the config: mirror the label in the fake.
	if err := f.canary.SetLabel("canary", 2); err != nil {
		t.Fatal(err)
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

func TestSplit(t *testing.T) {
	for _, c := range []struct{ total, w, s, c int }{{4, 0, 4, 0}, {4, 1, 3, 1}, {4, 10, 3, 1}, {4, 50, 2, 2}, {4, 60, 1, 3}, {4, 100, 0, 4}, {10, 25, 7, 3}} {
		if s, cc := kube.Split(c.total, c.w); s != c.s || cc != c.c {
			t.Errorf("Split(%d, %d) = %d/%d, want %d/%d", c.total, c.w, s, cc, c.s, c.c)
		}
	}
}
