package kubernetes

import (
	"context"
	"math"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/branchml/branchml/agents/backends/serving"
)

// AutoscaleRouter splits by replica ratio while a HorizontalPodAutoscaler
// owns the stable's count (WithAutoscale): the stable is never scaled by
// the router but for the full canary step, and the canary gets
// round(S·w/(100−w)) pods for the stable's S (at least 1, at most
// MaxReplicas), so that its share of the pods is w as near as whole pods
// allow (with S = 3: 25% → 1 pod, 25.0%; 50% → 3 pods). At 100% the canary
// gets at least the stable's count, then the stable goes to 0 pods (its
// autoscaler stays inactive while its target has none: the controller's
// ScalingDisabled); at 0% the stable gets back at least what it had and
// MinReplicas before the canary goes. As the stable scales the share drifts
// until the next Route or Backend.Rebalance, which the rollout calls at each
// analysis that holds a step. Growing variants are Ready before another
// shrinks, as with ReplicaRouter.
type AutoscaleRouter struct{}

var _ Router = AutoscaleRouter{}

// CanaryReplicas is the canary's pod count for weight w (percent, 0..99)
// next to stable pods: round(stable·w/(100−w)), at least 1 for w > 0, at
// most max (max < 1: no bound). w = 0 gives 0.
func CanaryReplicas(stable, w, max int) int {
	if w <= 0 {
		return 0
	}
	c := int(math.Round(float64(stable) * float64(w) / float64(100-w)))
	if c < 1 {
		c = 1
	}
	if max > 0 && c > max {
		c = max
	}
	return c
}

// Route scales the canary to its share of the stable's current count.
func (AutoscaleRouter) Route(ctx context.Context, b *Backend, w int) error {
	a := b.o.autoscale
	if a == nil {
		a = &Autoscale{MinReplicas: 1, MaxReplicas: int32(b.replicas)}
	}
	s, err := b.specReplicas(ctx, serving.Stable)
	if err != nil {
		return err
	}
	c, err := b.specReplicas(ctx, serving.Canary)
	if err != nil {
		return err
	}
	grow := func(v serving.Variant, n int) error {
		if err := b.scaleUp(ctx, v, int32(n)); err != nil {
			return err
		}
		return b.waitReady(ctx, v, int32(n))
	}
	switch {
	case w == 0:
		n := max(s, int(a.MinReplicas))
		if s == 0 {
			n = max(c, int(a.MinReplicas))
		}
		if err := grow(serving.Stable, n); err != nil {
			return err
		}
		err = b.scale(ctx, serving.Canary, 0)
	case w >= 100:
		if err := grow(serving.Canary, max(c, s, int(a.MinReplicas))); err != nil {
			return err
		}
		err = b.scale(ctx, serving.Stable, 0)
	default:
		if s == 0 { // back from the full step: the stable first
			s = max(c, int(a.MinReplicas))
			if err := grow(serving.Stable, s); err != nil {
				return err
			}
		}
		n := CanaryReplicas(s, w, int(a.MaxReplicas))
		if n >= c {
			// Also when it keeps its count: a canary just deployed may not
			// be Ready yet.
			err = grow(serving.Canary, n)
		} else {
			err = b.scale(ctx, serving.Canary, int32(n))
		}
	}
	if err == nil {
		b.mu.Lock()
		b.routed, b.hasRouted = w, true
		b.mu.Unlock()
	}
	return err
}

// Rebalance routes the weight of the last Route of this Backend again, so
// that the canary's share follows the stable's autoscaler; without
// WithAutoscale, or before any Route, it does nothing.
func (b *Backend) Rebalance(ctx context.Context) error {
	b.mu.Lock()
	w, ok := b.routed, b.hasRouted
	b.mu.Unlock()
	if b.o.autoscale == nil || !ok {
		return nil
	}
	return b.o.router.Route(ctx, b, w)
}

// AutoscalerName is the HorizontalPodAutoscaler of the stable Deployment.
func (b *Backend) AutoscalerName() string { return b.name(serving.Stable) }

// autoscaler is the HorizontalPodAutoscaler of WithAutoscale.
func (b *Backend) autoscaler() *autoscalingv2.HorizontalPodAutoscaler {
	a := b.o.autoscale
	min := a.MinReplicas
	target := a.TargetCPUUtilization
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: b.AutoscalerName(), Namespace: b.ns, Labels: b.labels(serving.Stable)},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: b.name(serving.Stable)},
			MinReplicas:    &min,
			MaxReplicas:    a.MaxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &target}},
			}},
		},
	}
}

// ensureAutoscaler creates or updates the stable's HorizontalPodAutoscaler
// with WithAutoscale; without it, deletes one that branchml made (its
// managed-by label), so that removing deploy.serving.autoscale from the
// configuration hands the count back to deploy.serving.replicas.
func (b *Backend) ensureAutoscaler(ctx context.Context) error {
	hpas := b.cs.AutoscalingV2().HorizontalPodAutoscalers(b.ns)
	cur, err := hpas.Get(ctx, b.AutoscalerName(), metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return b.wrap("get horizontalpodautoscaler "+b.AutoscalerName(), err)
	}
	found := err == nil
	if b.o.autoscale == nil {
		if !found || cur.Labels[LabelManagedBy] != "branchml" {
			return nil
		}
		err := hpas.Delete(ctx, cur.Name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			err = nil
		}
		return b.wrap("delete horizontalpodautoscaler "+cur.Name, err)
	}
	want := b.autoscaler()
	if !found {
		_, err := hpas.Create(ctx, want, metav1.CreateOptions{})
		return b.wrap("create horizontalpodautoscaler "+want.Name, err)
	}
	want.ResourceVersion = cur.ResourceVersion
	_, err = hpas.Update(ctx, want, metav1.UpdateOptions{})
	return b.wrap("update horizontalpodautoscaler "+want.Name, err)
}
