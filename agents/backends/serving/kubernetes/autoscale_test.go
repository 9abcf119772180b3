package kubernetes_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/branchml/branchml/agents/backends/serving"
	kube "github.com/branchml/branchml/agents/backends/serving/kubernetes"
	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
)

func TestCanaryReplicas(t *testing.T) {
	for _, c := range []struct{ stable, w, max, want int }{
		{3, 25, 0, 1}, // 1 of 4 pods: 25%
		{6, 25, 0, 2}, // 2 of 8: 25%
		{4, 25, 0, 1}, // 1.33 → 1 of 5: 20%, the nearest
		{2, 10, 0, 1}, // 0.22 → at least 1 pod: 33%
		{4, 50, 0, 4}, // 50%
		{6, 75, 8, 8}, // 18 → capped at MaxReplicas
		{0, 50, 0, 1}, // no stable pod: still one canary pod
		{5, 0, 0, 0},  // 0%: none
		{10, 90, 0, 90},
	} {
		if got := kube.CanaryReplicas(c.stable, c.w, c.max); got != c.want {
			t.Errorf("CanaryReplicas(%d, %d, %d) = %d, want %d", c.stable, c.w, c.max, got, c.want)
		}
	}
}

var cpu100m = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}

func newAutoscaled(t *testing.T) *fixture {
	return newFixture(t, kube.WithResources(cpu100m), kube.WithAutoscale(kube.Autoscale{MinReplicas: 2, MaxReplicas: 8, TargetCPUUtilization: 50}))
}

// hpaScales plays the HorizontalPodAutoscaler controller: it sets the
// stable's replicas.
func (f *fixture) hpaScales(t *testing.T, n int32) {
	t.Helper()
	d, err := f.cs.AppsV1().Deployments(ns).Get(context.Background(), "djia30-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Replicas = &n
	if _, err := f.cs.AppsV1().Deployments(ns).Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestAutoscalerAndCanaryShareFollowingTheStable(t *testing.T) {
	ctx := context.Background()
	f := newAutoscaled(t)
	f.readyController(t, time.Millisecond, 2)
	f.syncConfig(t, time.Millisecond)
	f.deployStable(t)

	hpa, err := f.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "djia30-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	two, fifty := int32(2), int32(50)
	want := autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "djia30-stable"},
		MinReplicas:    &two, MaxReplicas: 8,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &fifty}}}},
	}
	if !reflect.DeepEqual(hpa.Spec, want) {
		t.Fatalf("HPA spec = %+v\nwant %+v", hpa.Spec, want)
	}
	if hpa.Labels["app.kubernetes.io/managed-by"] != "branchml" || hpa.Labels["branchml.dev/variant"] != "stable" {
		t.Fatalf("HPA labels = %v", hpa.Labels)
	}
	d, _ := f.cs.AppsV1().Deployments(ns).Get(ctx, "djia30-stable", metav1.GetOptions{})
	if got := d.Spec.Template.Spec.Containers[0].Resources; !reflect.DeepEqual(got, cpu100m) {
		t.Fatalf("container resources = %+v, want %+v", got, cpu100m)
	}
	// Route 0 on a stable of 1 pod: MinReplicas.
	if s, c := f.replicas(t); s != 2 || c != -1 {
		t.Fatalf("after the first deploy replicas = %d/%d, want 2/none", s, c)
	}

	f.canary.SetState(2, tfs.StateAvailable)
	if err := f.b.Deploy(ctx, serving.Canary, v2); err != nil {
		t.Fatal(err)
	}
	step := func(w int, wantS, wantC int32) {
		t.Helper()
		if err := f.b.Route(ctx, w); err != nil {
			t.Fatal(err)
		}
		if s, c := f.replicas(t); s != wantS || c != wantC {
			t.Fatalf("at %d%% replicas = %d/%d, want %d/%d", w, s, c, wantS, wantC)
		}
	}
	step(25, 2, 1) // round(2·25/75) = 1: the canary's pods are 33%
	// The autoscaler grows the stable to 6: Rebalance gives the canary 2 (25%).
	f.hpaScales(t, 6)
	if err := f.b.Rebalance(ctx); err != nil {
		t.Fatal(err)
	}
	if s, c := f.replicas(t); s != 6 || c != 2 {
		t.Fatalf("after the stable scaled to 6 and Rebalance replicas = %d/%d, want 6/2", s, c)
	}
	if st, err := f.b.State(ctx); err != nil || st.CanaryWeight != 25 {
		t.Fatalf("State weight = %d, %v; want 25", st.CanaryWeight, err)
	}
	// And shrinks it to 3: the canary goes down to 1.
	f.hpaScales(t, 3)
	if err := f.b.Rebalance(ctx); err != nil {
		t.Fatal(err)
	}
	if s, c := f.replicas(t); s != 3 || c != 1 {
		t.Fatalf("after the stable scaled to 3 and Rebalance replicas = %d/%d, want 3/1", s, c)
	}
	step(50, 3, 3)
	step(100, 0, 3) // the canary has the stable's count before the stable goes
	f.stable.SetState(2, tfs.StateAvailable)
	if err := f.b.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	// The stable takes the canary's 3 pods over; the autoscaler goes on from there.
	if s, c := f.replicas(t); s != 3 || c != -1 {
		t.Fatalf("after Promote replicas = %d/%d, want 3/none", s, c)
	}
	if _, err := f.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "djia30-stable", metav1.GetOptions{}); err != nil {
		t.Fatalf("the HPA after Promote: %v", err)
	}
}

func TestAutoscaledAbortTakesTheCanarysPodsOver(t *testing.T) {
	ctx := context.Background()
	f := newAutoscaled(t)
	lowest := f.readyController(t, 20*time.Millisecond, 7) // first: it adds a reactor
	f.syncConfig(t, time.Millisecond)
	f.deployStable(t)
	f.hpaScales(t, 6)
	f.canary.SetState(2, tfs.StateAvailable)
	if err := f.b.Deploy(ctx, serving.Canary, v2); err != nil {
		t.Fatal(err)
	}
	if err := f.b.Route(ctx, 25); err != nil {
		t.Fatal(err)
	}
	if s, c := f.replicas(t); s != 6 || c != 2 {
		t.Fatalf("at 25%% replicas = %d/%d, want 6/2", s, c)
	}
	if err := f.b.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	// 6 + 2 = 8 = MaxReplicas, Ready before the canary went.
	if s, c := f.replicas(t); s != 8 || c != -1 {
		t.Fatalf("after Abort replicas = %d/%d, want 8/none", s, c)
	}
	time.Sleep(10 * time.Millisecond)
	if l := lowest(); l < 7 {
		t.Fatalf("ready pods fell to %d during Abort (the stable had 6 and the canary 1+ ready)", l)
	}
}

// hpaController plays the HorizontalPodAutoscaler controller at low load:
// every millisecond it sets the stable's replicas to its HPA's
// minReplicas (what it would compute from idle pods), as long as the test
// runs. It returns the highest minReplicas it saw.
func (f *fixture) hpaController(t *testing.T) func() int32 {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var mu sync.Mutex
	var highest int32
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			time.Sleep(time.Millisecond)
			h, err := f.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "djia30-stable", metav1.GetOptions{})
			if err != nil {
				continue
			}
			mu.Lock()
			highest = max(highest, *h.Spec.MinReplicas)
			mu.Unlock()
			d, err := f.cs.AppsV1().Deployments(ns).Get(ctx, "djia30-stable", metav1.GetOptions{})
			if err != nil || *d.Spec.Replicas == 0 || *d.Spec.Replicas == *h.Spec.MinReplicas {
				continue // 0: ScalingDisabled
			}
			d.Spec.Replicas = h.Spec.MinReplicas
			_, _ = f.cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		}
	}()
	return func() int32 {
		mu.Lock()
		defer mu.Unlock()
		return highest
	}
}

// At low load the autoscaler wants minReplicas: Abort's and Promote's
// handover holds its minReplicas at the count they wait for (else the
// controller takes the new pods away and the wait never ends), then gives
// the configured minimum back.
func TestHandoverHoldsTheAutoscalersFloor(t *testing.T) {
	for _, end := range []string{"abort", "promote"} {
		t.Run(end, func(t *testing.T) {
			ctx := context.Background()
			f := newAutoscaled(t)
			f.readyController(t, 5*time.Millisecond, 2)
			f.syncConfig(t, time.Millisecond)
			f.deployStable(t)
			highest := f.hpaController(t)
			f.canary.SetState(2, tfs.StateAvailable)
			if err := f.b.Deploy(ctx, serving.Canary, v2); err != nil {
				t.Fatal(err)
			}
			w, want := 50, int32(4) // Abort: 2 stable + 2 canary
			if end == "promote" {
				w, want = 75, 6 // Promote: the canary's 6
			}
			if err := f.b.Route(ctx, w); err != nil {
				t.Fatal(err)
			}
			if end == "abort" {
				if err := f.b.Abort(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := f.b.Route(ctx, 100); err != nil {
					t.Fatal(err)
				}
				f.stable.SetState(2, tfs.StateAvailable)
				if err := f.b.Promote(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if h := highest(); h != want {
				t.Fatalf("highest minReplicas during %s = %d, want %d", end, h, want)
			}
			h, err := f.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "djia30-stable", metav1.GetOptions{})
			if err != nil || *h.Spec.MinReplicas != 2 {
				t.Fatalf("minReplicas after %s = %v, %v; want the configured 2 back", end, h.Spec.MinReplicas, err)
			}
			if _, c := f.replicas(t); c != -1 {
				t.Fatalf("canary after %s: %d replicas, want it deleted", end, c)
			}
		})
	}
}

func TestAutoscalerRemovedWithItsConfiguration(t *testing.T) {
	ctx := context.Background()
	f := newAutoscaled(t)
	f.readyController(t, time.Millisecond, 2)
	f.syncConfig(t, time.Millisecond)
	f.deployStable(t)
	// A later run without deploy.serving.autoscale: its canary's Deploy
	// (a rollout's first call) deletes the HPA branchml made; Abort gives
	// the fixed count back.
	b, err := kube.New(f.cs, ns, "djia30", "registry.local/djia30/serve@sha256:abc", "djia30-model", kube.WithReplicas(4),
		kube.WithPoll(5*time.Millisecond, 5*time.Second), kube.WithLabelTimeout(5*time.Second), kube.WithEndpoint(f.endpoint))
	if err != nil {
		t.Fatal(err)
	}
	f.canary.SetState(2, tfs.StateAvailable)
	if err := b.Deploy(ctx, serving.Canary, v2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "djia30-stable", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("HPA after the canary's deploy without autoscale: err = %v, want NotFound", err)
	}
	if err := b.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if s, c := f.replicas(t); s != 4 || c != -1 {
		t.Fatalf("replicas = %d/%d, want 4/none", s, c)
	}
	// One that branchml did not make: left alone without autoscale,
	// refused (not taken over) with it.
	other := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "djia30-stable", Namespace: ns}}
	if _, err := f.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Deploy(ctx, serving.Canary, v2); err != nil {
		t.Fatal(err)
	}
	if h, err := f.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "djia30-stable", metav1.GetOptions{}); err != nil || h.Spec.MaxReplicas != 0 {
		t.Fatalf("an HPA not labelled managed-by branchml was touched: %+v, %v", h, err)
	}
	err = f.b.Deploy(ctx, serving.Canary, v2)
	if err == nil || !strings.Contains(err.Error(), "the HorizontalPodAutoscaler ml/djia30-stable exists and branchml did not make it (no label app.kubernetes.io/managed-by=branchml)") || serving.IsTemporary(err) {
		t.Fatalf("autoscale over a foreign HPA: %v, want a lasting error naming it", err)
	}
}

func TestAutoscaleNeedsACPURequest(t *testing.T) {
	limitOnly := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")}}
	if _, err := kube.New(fake.NewClientset(), ns, "djia30", "img", "vol", kube.WithResources(limitOnly),
		kube.WithAutoscale(kube.Autoscale{MaxReplicas: 4, TargetCPUUtilization: 50})); err != nil {
		t.Fatalf("a CPU limit alone (the request, as Kubernetes defaults it): %v", err)
	}
	for _, c := range []struct {
		opts []kube.Option
		want string
	}{
		{[]kube.Option{kube.WithAutoscale(kube.Autoscale{MaxReplicas: 4, TargetCPUUtilization: 50})}, "needs deploy.serving.resources.requests.cpu"},
		// An explicit zero request stays zero whatever the limit.
		{[]kube.Option{kube.WithResources(corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0")},
			Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")}}),
			kube.WithAutoscale(kube.Autoscale{MaxReplicas: 4, TargetCPUUtilization: 50})}, "needs deploy.serving.resources.requests.cpu above zero"},
		{[]kube.Option{kube.WithResources(cpu100m), kube.WithAutoscale(kube.Autoscale{MinReplicas: 5, MaxReplicas: 4, TargetCPUUtilization: 50})}, "maxReplicas 4 is below minReplicas 5"},
		{[]kube.Option{kube.WithResources(cpu100m), kube.WithAutoscale(kube.Autoscale{MaxReplicas: 4})}, "targetCPUUtilizationPercentage 0 must be at least 1"},
	} {
		_, err := kube.New(fake.NewClientset(), ns, "djia30", "img", "vol", c.opts...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New = %v, want an error containing %q", err, c.want)
		}
	}
}
