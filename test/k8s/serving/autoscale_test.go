package serving_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/branchml/branchml/agents/backends/serving"
	kube "github.com/branchml/branchml/agents/backends/serving/kubernetes"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/stages/deploy"
	"github.com/branchml/branchml/agents/stages/deploy/loadgen"
)

// podMetrics is the CPU use of each pod of the namespace as metrics-server
// serves it through the API server (metrics.k8s.io/v1beta1 PodMetricsList),
// in millicores, by pod name.
func (b *bed) podMetrics(ctx context.Context) (map[string]int64, error) {
	hc, err := b.c.HTTPClient()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.c.Server+"/apis/metrics.k8s.io/v1beta1/namespaces/"+b.ns+"/pods", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", resp.Status, raw)
	}
	var list struct {
		Items []struct {
			Metadata   struct{ Name string }
			Containers []struct {
				Name  string
				Usage map[string]string
			}
		}
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, p := range list.Items {
		for _, c := range p.Containers {
			q, err := resource.ParseQuantity(c.Usage["cpu"])
			if err != nil {
				return nil, fmt.Errorf("pod %s: cpu %q: %v", p.Metadata.Name, c.Usage["cpu"], err)
			}
			out[p.Metadata.Name] += q.MilliValue()
		}
	}
	return out, nil
}

// The stable's HorizontalPodAutoscaler (autoscaling/v2) on the node, with
// metrics-server reading the kubelet: a first deploy at minReplicas 1; a
// load step from the test (0 → 200 predicts/s through the Service) scales
// the stable out on the pods' real CPU use against their 10m request; a
// canary 25→50→100 under that load, its pods a share of the stable's
// count as the autoscaler left it, then promoted: the stable takes the
// canary's pods over and keeps its autoscaler. No request fails.
func TestAutoscaleOnTheNode(t *testing.T) {
	b := newBed(t)
	b.writeVersion(t, 1, 1)
	b.writeVersion(t, 2, 1)
	req := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}}
	k := b.backend(t, kube.WithResources(req), kube.WithAutoscale(kube.Autoscale{MinReplicas: 1, MaxReplicas: 4, TargetCPUUtilization: 50}))
	ws := t.TempDir()
	log := logrus.New()
	log.SetOutput(testWriter{t})
	c := cfg()
	c.Deploy.Serving.Autoscale = &config.Autoscale{MinReplicas: 1, MaxReplicas: 4, TargetCPUUtilizationPercentage: 50}
	c.Deploy.Serving.Resources.Requests = map[string]string{"cpu": "10m"}
	c.Deploy.Canary.Steps = []int{25, 50, 100}
	o := deploy.Options{Config: c, Workspace: ws, Serving: k, Log: log, StatusFile: filepath.Join(t.TempDir(), "deploy-status.json")}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	deps := b.cs.AppsV1().Deployments(b.ns)
	hpas := b.cs.AutoscalingV2().HorizontalPodAutoscalers(b.ns)

	// The timeline: every 2 s, what the autoscaler saw and did.
	var tmu sync.Mutex
	var timeline []string
	t0 := time.Now()
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sctx.Err() == nil {
			line := fmt.Sprintf("%5.1fs", time.Since(t0).Seconds())
			for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
				if d, err := deps.Get(sctx, model+"-"+string(v), metav1.GetOptions{}); err == nil {
					line += fmt.Sprintf(" %s %d/%d ready", v, d.Status.ReadyReplicas, *d.Spec.Replicas)
				}
			}
			if h, err := hpas.Get(sctx, k.AutoscalerName(), metav1.GetOptions{}); err == nil {
				line += fmt.Sprintf("; hpa desired %d", h.Status.DesiredReplicas)
				for _, m := range h.Status.CurrentMetrics {
					if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
						line += fmt.Sprintf(", cpu %d%% of request", *m.Resource.Current.AverageUtilization)
					}
				}
			}
			tmu.Lock()
			timeline = append(timeline, line)
			tmu.Unlock()
			select {
			case <-sctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	defer func() {
		stopSampling()
		<-sampled
		for _, l := range timeline {
			t.Logf("autoscale timeline: %s", l)
		}
	}()

	writeSpec(t, ws, 1)
	o.Commit = "c1"
	if res, err := deploy.Run(ctx, o); err != nil || res.Status.Phase != "Succeeded" {
		t.Fatalf("first deploy: %+v, %v", res, err)
	}
	h, err := hpas.Get(ctx, model+"-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the stable's HorizontalPodAutoscaler: %v", err)
	}
	if h.Spec.ScaleTargetRef.Name != model+"-stable" || *h.Spec.MinReplicas != 1 || h.Spec.MaxReplicas != 4 ||
		*h.Spec.Metrics[0].Resource.Target.AverageUtilization != 50 {
		t.Fatalf("HPA spec %+v", h.Spec)
	}
	if d, _ := deps.Get(ctx, model+"-stable", metav1.GetOptions{}); *d.Spec.Replicas != 1 {
		t.Fatalf("stable replicas after the first deploy = %d, want minReplicas 1", *d.Spec.Replicas)
	}
	// metrics-server has the pod's CPU, the autoscaler reads it.
	until := func(what string, d time.Duration, ok func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			done, last := ok()
			if done {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v (last: %s)", what, d, last)
			}
			time.Sleep(time.Second)
		}
	}
	until("PodMetrics of the stable pod", 2*time.Minute, func() (bool, string) {
		m, err := b.podMetrics(ctx)
		if err != nil {
			return false, err.Error()
		}
		for name := range m {
			if strings.HasPrefix(name, model+"-stable-") {
				t.Logf("PodMetrics at rest: %v (millicores)", m)
				return true, ""
			}
		}
		return false, fmt.Sprintf("%v", m)
	})
	until("the autoscaler reads the stable's CPU", 2*time.Minute, func() (bool, string) {
		h, err := hpas.Get(ctx, model+"-stable", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range h.Status.Conditions {
			if cond.Type == autoscalingv2.ScalingActive {
				return cond.Status == corev1.ConditionTrue, cond.Reason + ": " + cond.Message
			}
		}
		return false, "no ScalingActive condition"
	})

	// The load step.
	lctx, stopLoad := context.WithCancel(ctx)
	loaded := make(chan loadgen.Report, 1)
	go func() {
		rep, _ := loadgen.Run(lctx, loadgen.Options{URL: b.proxies[""].URL() + "/v1/models/" + model + ":predict", Body: []byte(predictBody), Concurrency: 8, Rate: 200})
		loaded <- rep
	}()
	step := time.Now()
	var scaled int32
	until("the autoscaler scales the stable out under the load step", 4*time.Minute, func() (bool, string) {
		d, err := deps.Get(ctx, model+"-stable", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		scaled = *d.Spec.Replicas
		return scaled >= 2 && d.Status.ReadyReplicas == scaled, fmt.Sprintf("%d/%d ready", d.Status.ReadyReplicas, scaled)
	})
	t.Logf("load step: the autoscaler scaled the stable from 1 to %d pods, Ready %s after the step", scaled, time.Since(step).Round(time.Second))
	if m, err := b.podMetrics(ctx); err == nil {
		t.Logf("PodMetrics under load: %v (millicores)", m)
	}

	writeSpec(t, ws, 2)
	o.Commit = "c2"
	res, err := deploy.Run(ctx, o)
	stopLoad()
	rep := <-loaded
	t.Logf("load: %d sent, %d failed %q", rep.Sent, rep.Failed, rep.Errors)
	if err != nil || res.Status.Phase != "Succeeded" || res.Status.StableVersion != 2 {
		t.Fatalf("v2 under the autoscaler: %+v, %v", res.Status, err)
	}
	for _, a := range res.Analyses {
		t.Logf("canary timeline: weight %3d%%: canary %4d requests, stable %4d, measured share %6.2f%%, failed %d", a.Weight, a.CanaryRequests, a.StableRequests, a.Share, a.CanaryErrors)
		// Whole pods next to the stable's count: 25% of 2..4 stable pods
		// is 1 canary pod (33..20%).
		if a.CanaryErrors != 0 || (a.Weight < 100 && (a.Share < float64(a.Weight)-15 || a.Share > float64(a.Weight)+15)) {
			t.Errorf("weight %d%%: share %.2f%%, %d errors", a.Weight, a.Share, a.CanaryErrors)
		}
	}
	if rep.Failed != 0 || rep.Sent < 1000 {
		t.Errorf("under load: %d of %d requests failed: %q", rep.Failed, rep.Sent, rep.Errors)
	}
	d, err := deps.Get(ctx, model+"-stable", metav1.GetOptions{})
	if err != nil || *d.Spec.Replicas < 2 {
		t.Fatalf("the stable after Promote: %v replicas, %v; want the canary's (at least 2)", d.Spec.Replicas, err)
	}
	if _, err := deps.Get(ctx, model+"-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the canary after Promote: %v, want NotFound", err)
	}
	if h, err := hpas.Get(ctx, model+"-stable", metav1.GetOptions{}); err != nil || h.Spec.ScaleTargetRef.Name != model+"-stable" {
		t.Fatalf("the HPA after Promote: %+v, %v", h, err)
	}
}
