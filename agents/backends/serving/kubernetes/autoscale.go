package kubernetes

import (
	"context"
	"fmt"
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/branchml/branchml/agents/backends/serving"
)

// AutoscaleRouter splits by replica ratio while a HorizontalPodAutoscaler
// owns the stable's count (WithAutoscale): between 0% and 100% the router
// leaves the stable's count to its autoscaler and gives the canary
// round(S·w/(100−w)) pods for the stable's S (at least 1, at most
// MaxReplicas), so that its share of the pods is w as near as whole pods
// allow (with S = 3: 25% → 1 pod, 25.0%; 50% → 3 pods). At 100% the canary
// gets at least the stable's count, then the stable goes to 0 pods (its
// autoscaler stays inactive while its target has none: the controller's
// ScalingDisabled). The stable is grown by the router only at 0% (back to
// at least what it had, MinReplicas, or the canary's count when it had
// none) and when a step below 100% follows the full one; while those pods
// come up the autoscaler's minReplicas is held at their count, so that it
// cannot take them away before they are Ready and the canary's are gone.
// As the stable scales the share drifts until the next Route or
// Backend.Rebalance, which the rollout calls at each analysis that holds a
// step (and an A/B experiment at each interval). Growing variants are Ready
// before another shrinks, as with ReplicaRouter.
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
	s, c, err := b.counts(ctx)
	if err != nil {
		return err
	}
	grow := func(v serving.Variant, n int) error {
		if v == serving.Stable {
			release, err := b.holdFloor(ctx, int32(n))
			if err != nil {
				return err
			}
			defer release()
		}
		if err := b.scaleUp(ctx, v, int32(n)); err != nil {
			return err
		}
		if err := b.waitReady(ctx, v, int32(n)); err != nil {
			return err
		}
		if v == serving.Stable && w == 0 {
			// The canary goes while the floor still holds the stable's pods.
			return b.scale(ctx, serving.Canary, 0)
		}
		return nil
	}
	switch {
	case w == 0:
		n := max(s, int(a.MinReplicas))
		if s == 0 {
			n = max(c, int(a.MinReplicas))
		}
		err = grow(serving.Stable, min(n, max(int(a.MaxReplicas), s)))
	case w >= 100:
		if err := grow(serving.Canary, max(c, s, int(a.MinReplicas))); err != nil {
			return err
		}
		err = b.scale(ctx, serving.Stable, 0)
	default:
		if s == 0 { // back from the full step: the stable first
			s = min(max(c, int(a.MinReplicas)), int(a.MaxReplicas))
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
// with WithAutoscale (its spec as configured: also the minReplicas that
// holdFloor raised); without it, deletes one that branchml made (its
// managed-by label), so that removing deploy.serving.autoscale from the
// configuration hands the count back to deploy.serving.replicas. With
// WithAutoscale an HPA of that name that branchml did not make is an
// error (it is not taken over). A conflict (the HPA controller writes its
// status every sync) is retried on a fresh read.
func (b *Backend) ensureAutoscaler(ctx context.Context) error {
	hpas := b.cs.AutoscalingV2().HorizontalPodAutoscalers(b.ns)
	name := b.AutoscalerName()
	op := "get horizontalpodautoscaler " + name
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := hpas.Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			op = "get horizontalpodautoscaler " + name
			return err
		}
		found := err == nil
		if found && cur.Labels[LabelManagedBy] != "branchml" {
			if b.o.autoscale == nil {
				return nil
			}
			op = "deploy.serving.autoscale"
			return fmt.Errorf("the HorizontalPodAutoscaler %s/%s exists and branchml did not make it (no label %s=branchml): delete it to let branchml manage the stable's autoscaler, or leave deploy.serving.autoscale out", b.ns, name, LabelManagedBy)
		}
		if b.o.autoscale == nil {
			if !found {
				return nil
			}
			op = "delete horizontalpodautoscaler " + name
			err := hpas.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &cur.ResourceVersion}})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
		want := b.autoscaler()
		if !found {
			op = "create horizontalpodautoscaler " + name
			_, err := hpas.Create(ctx, want, metav1.CreateOptions{})
			return err
		}
		if equality.Semantic.DeepEqual(cur.Spec, want.Spec) && cur.Labels[LabelVariant] == want.Labels[LabelVariant] {
			return nil
		}
		op = "update horizontalpodautoscaler " + name
		want.ResourceVersion = cur.ResourceVersion
		_, err = hpas.Update(ctx, want, metav1.UpdateOptions{})
		return err
	})
	return b.wrap(op, err)
}

// holdFloor raises the stable's autoscaler's minReplicas to n (within its
// configured MinReplicas..MaxReplicas) while a handover waits for that
// many stable pods (Promote, Abort, the router growing the stable), so
// that the controller, which sizes the stable on its ready pods' CPU,
// cannot take the new pods away before they are Ready and the canary's
// are gone. The returned release writes the configured spec back
// (ensureAutoscaler, also when ctx has ended; a process that dies in
// between has it written back at its next Deploy). Without WithAutoscale,
// or without an HPA of branchml's, it does nothing.
func (b *Backend) holdFloor(ctx context.Context, n int32) (release func(), err error) {
	a := b.o.autoscale
	nothing := func() {}
	if a == nil || n <= a.MinReplicas {
		return nothing, nil
	}
	n = min(n, a.MaxReplicas)
	hpas := b.cs.AutoscalingV2().HorizontalPodAutoscalers(b.ns)
	held := false
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := hpas.Get(ctx, b.AutoscalerName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.Labels[LabelManagedBy] != "branchml" {
			return nil
		}
		cur.Spec.MinReplicas = &n
		_, err = hpas.Update(ctx, cur, metav1.UpdateOptions{})
		held = err == nil
		return err
	})
	if err != nil {
		return nothing, b.wrap(fmt.Sprintf("hold the minReplicas of horizontalpodautoscaler %s at %d", b.AutoscalerName(), n), err)
	}
	if !held {
		return nothing, nil
	}
	return func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = b.ensureAutoscaler(rctx)
	}, nil
}
