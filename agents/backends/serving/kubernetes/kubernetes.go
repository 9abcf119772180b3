package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/records"
)

// Name of this backend in config.Backends.Serving.Type.
const Name = "kubernetes"

// Labels and annotations set on every object.
const (
	LabelApp        = "app"
	LabelVariant    = "branchml.dev/variant"
	LabelVersion    = "branchml.dev/model-version"
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	AnnotationModel = "branchml.dev/model"
	// RESTPort is TF Serving's REST port in the pods, GRPCPort its gRPC
	// port (--port; TF Serving requires one).
	RESTPort = 8501
	GRPCPort = 8500
	// PreStopSleepSeconds is how long a removed pod keeps serving before
	// its server gets SIGTERM (a preStop sleep), in seconds: long enough
	// for proxies to follow the EndpointSlices, well inside the default
	// 30-second termination grace period.
	PreStopSleepSeconds = 5
	// ModelMount and ConfigMount are where the volume and the ConfigMap are mounted.
	ModelMount  = "/models"
	ConfigMount = "/config"
)

var _ serving.Backend = (*Backend)(nil)

// Router splits traffic between the variants.
type Router interface {
	// Route sends canaryWeight percent of the traffic to the canary.
	Route(ctx context.Context, b *Backend, canaryWeight int) error
}

// ReplicaRouter splits by replica ratio: the Service selects the pods of
// both variants, so the canary's share of the traffic is its share of the
// ready pods. Only the weights that are a whole number of pods can be
// expressed: w such that R*w/100 is an integer (R = total replicas).
type ReplicaRouter struct{}

var _ Router = ReplicaRouter{}

// Split returns the stable and canary replica counts for weight w (percent)
// of total replicas, and an error when w is not a whole number of pods
// (the error names the weights total can express).
func Split(total, w int) (stable, canary int, err error) {
	if total < 1 || w < 0 || w > 100 {
		return 0, 0, fmt.Errorf("canary weight %d%% of %d replicas: weight must be 0..100 and replicas at least 1", w, total)
	}
	if total*w%100 != 0 {
		return 0, 0, fmt.Errorf("canary weight %d%% cannot be expressed with %d replicas (it would be %d%%): with %d replicas the canary can get %s; set deploy.canary.steps to those, or deploy.serving.replicas to a multiple of %d",
			w, total, 100*((total*w+99)/100)/total, total, ExpressibleWeights(total), 100/gcd(w, 100))
	}
	canary = total * w / 100
	return total - canary, canary, nil
}

// ExpressibleWeights lists the canary weights (percent, above 0) that total
// replicas can express, e.g. "25, 50, 75 or 100%" for 4.
func ExpressibleWeights(total int) string {
	var ws []string
	for c := 1; c <= total; c++ {
		if 100*c%total == 0 {
			ws = append(ws, strconv.Itoa(100*c/total))
		}
	}
	switch len(ws) {
	case 0:
		return "no weight"
	case 1:
		return ws[0] + "%"
	}
	out := ""
	for i, w := range ws[:len(ws)-1] {
		if i > 0 {
			out += ", "
		}
		out += w
	}
	return out + " or " + ws[len(ws)-1] + "%"
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Route scales the two Deployments, never below the ready capacity: the
// variants that grow are scaled first and waited for until their new pods
// are Ready; only then does the other shrink.
func (ReplicaRouter) Route(ctx context.Context, b *Backend, w int) error {
	s, c, err := Split(b.replicas, w)
	if err != nil {
		return &serving.Error{Op: "route", Err: err}
	}
	want := map[serving.Variant]int{serving.Stable: s, serving.Canary: c}
	order := []serving.Variant{serving.Canary, serving.Stable}
	cur := map[serving.Variant]int{}
	for _, v := range order {
		if cur[v], err = b.specReplicas(ctx, v); err != nil {
			return err
		}
	}
	for _, v := range order {
		if want[v] > cur[v] {
			if err := b.scale(ctx, v, int32(want[v])); err != nil {
				return err
			}
		}
	}
	for _, v := range order {
		// Also the variant that keeps its count: a canary just deployed
		// may not be Ready yet.
		if want[v] >= cur[v] && want[v] > 0 {
			if err := b.waitReady(ctx, v, int32(want[v])); err != nil {
				return err
			}
		}
	}
	for _, v := range order {
		if want[v] < cur[v] {
			if err := b.scale(ctx, v, int32(want[v])); err != nil {
				return err
			}
		}
	}
	return nil
}

type options struct {
	endpoint  func(serving.Variant) string
	pod       func(addr string, port int32) string
	podName   func(name string, port int32) string // set by WithAPIServerProxy: pods by name
	hc        *http.Client
	proxyHost string
	router    Router
	poll      time.Duration
	timeout   time.Duration
	label     time.Duration
	replicas  int
	resources corev1.ResourceRequirements
	autoscale *Autoscale
}

// Autoscale is the HorizontalPodAutoscaler (autoscaling/v2) of the stable
// Deployment: MinReplicas..MaxReplicas pods at a mean CPU use of
// TargetCPUUtilization percent of the container's CPU request.
type Autoscale struct {
	MinReplicas, MaxReplicas int32
	TargetCPUUtilization     int32
}

// Option configures a Backend.
type Option func(*options)

// WithEndpoint sets how a variant's REST endpoint is reached (default: its
// Service's cluster DNS name, http://<model>-<variant>.<ns>.svc:8501).
func WithEndpoint(f func(serving.Variant) string) Option { return func(o *options) { o.endpoint = f } }

// WithPodEndpoint sets how one pod's REST endpoint is reached from the
// address and port its EndpointSlice lists (default http://addr:port).
func WithPodEndpoint(f func(addr string, port int32) string) Option {
	return func(o *options) { o.pod = f }
}

// WithAPIServerProxy reaches the variants' Services and the pods through
// the API server at host (the rest.Config's Host, e.g.
// "https://10.0.0.1:6443") with hc (an authenticated client for it:
// rest.HTTPClientFor): a variant's endpoint is
// <host>/api/v1/namespaces/<ns>/services/<model>-<variant>:8501/proxy, a
// pod's <host>/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy, as kubectl
// and the dashboard reach them from outside the cluster. The account needs
// get and create on services/proxy and pods/proxy. A request the API server
// cannot pass on (no ready endpoint, pod gone) is its 503.
func WithAPIServerProxy(host string, hc *http.Client) Option {
	return func(o *options) { o.hc, o.proxyHost = hc, strings.TrimRight(host, "/") }
}

// WithLabelTimeout bounds the wait for every pod of a variant to report
// its version label after the ConfigMap changed (default 3 minutes: the
// kubelet syncs a ConfigMap volume within about a minute, then the server
// re-reads the file every 10 seconds).
func WithLabelTimeout(d time.Duration) Option { return func(o *options) { o.label = d } }

// WithRouter replaces the ReplicaRouter.
func WithRouter(r Router) Option { return func(o *options) { o.router = r } }

// WithResources sets the serving container's resources (requests and
// limits; default none).
func WithResources(r corev1.ResourceRequirements) Option {
	return func(o *options) { o.resources = r }
}

// WithAutoscale gives the stable Deployment a HorizontalPodAutoscaler
// <model>-stable (created or updated at each Deploy of either variant;
// without this option one of ours left from an earlier configuration is
// deleted there, and one that branchml did not make is an error) and
// routes with the AutoscaleRouter unless WithRouter names another. The
// container needs a CPU request (WithResources): New refuses one without.
// MinReplicas below 1 means 1.
func WithAutoscale(a Autoscale) Option { return func(o *options) { o.autoscale = &a } }

// WithReplicas sets the total replicas (default 2).
func WithReplicas(n int) Option { return func(o *options) { o.replicas = n } }

// WithPoll sets the AVAILABLE poll interval and its timeout.
func WithPoll(every, timeout time.Duration) Option {
	return func(o *options) { o.poll, o.timeout = every, timeout }
}

// Backend serves one model on Kubernetes.
type Backend struct {
	cs                       k8s.Interface
	ns, model, image, volume string
	replicas                 int
	o                        options

	mu sync.Mutex
	// seen are the last counters read from each pod of a variant, retired
	// the counts of the pods that went away (or restarted): Counters is
	// their sum, so it never goes down while the variant scales or its
	// pods restart.
	seen    map[serving.Variant]map[string]tfserving.Counters
	retired map[serving.Variant]tfserving.Counters
	// gone are the last counters of the pods no longer listed, by name
	// (a pod listed again with counters at least these is the same server).
	gone map[serving.Variant]map[string]tfserving.Counters
	// routed is the weight of the last successful Route of the
	// AutoscaleRouter (hasRouted: there was one), for Rebalance.
	routed    int
	hasRouted bool
}

// New returns a backend for model in namespace ns with image, mounting PVC
// volume read-only.
func New(cs k8s.Interface, ns, model, image, volume string, opts ...Option) (*Backend, error) {
	o := options{poll: 2 * time.Second, timeout: 10 * time.Minute, label: 3 * time.Minute, replicas: 2}
	for _, opt := range opts {
		opt(&o)
	}
	if a := o.autoscale; a != nil {
		if a.MinReplicas < 1 {
			a.MinReplicas = 1
		}
		switch {
		case a.MaxReplicas < a.MinReplicas:
			return nil, fmt.Errorf("kubernetes serving: deploy.serving.autoscale.maxReplicas %d is below minReplicas %d", a.MaxReplicas, a.MinReplicas)
		case a.TargetCPUUtilization < 1:
			return nil, fmt.Errorf("kubernetes serving: deploy.serving.autoscale.targetCPUUtilizationPercentage %d must be at least 1", a.TargetCPUUtilization)
		case !cpuRequest(o.resources):
			return nil, errors.New("kubernetes serving: deploy.serving.autoscale needs deploy.serving.resources.requests.cpu above zero (the CPU target is a percentage of the request)")
		}
	}
	if o.router == nil {
		o.router = ReplicaRouter{}
		if o.autoscale != nil {
			o.router = AutoscaleRouter{}
		}
	}
	switch {
	case cs == nil:
		return nil, errors.New("kubernetes serving: no client")
	case model == "" || image == "" || volume == "":
		return nil, fmt.Errorf("kubernetes serving: model %q, image %q and volume %q must all be set (deploy.model, deploy.serving.image or component, training.model.volume)", model, image, volume)
	case o.replicas < 1:
		return nil, fmt.Errorf("kubernetes serving: deploy.serving.replicas %d must be at least 1", o.replicas)
	}
	if ns == "" {
		ns = "default"
	}
	b := &Backend{cs: cs, ns: ns, model: model, image: image, volume: volume, replicas: o.replicas, o: o,
		seen: map[serving.Variant]map[string]tfserving.Counters{}, retired: map[serving.Variant]tfserving.Counters{},
		gone: map[serving.Variant]map[string]tfserving.Counters{}}
	if b.o.pod == nil {
		b.o.pod = func(addr string, port int32) string {
			return "http://" + net.JoinHostPort(addr, strconv.Itoa(int(port)))
		}
	}
	if h := b.o.proxyHost; h != "" {
		b.o.endpoint = func(v serving.Variant) string { return h + ServiceProxyPath(ns, b.name(v)) }
		b.o.podName = func(name string, port int32) string {
			return fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s:%d/proxy", h, ns, name, port)
		}
	}
	if b.o.endpoint == nil {
		b.o.endpoint = func(v serving.Variant) string { return serviceDNS(ns, b.name(v)) }
	}
	return b, nil
}

// cpuRequest reports whether r requests CPU above zero: its requests.cpu,
// or when it has none its limits.cpu (Kubernetes defaults a request to its
// limit; an explicit zero request stays zero).
func cpuRequest(r corev1.ResourceRequirements) bool {
	q, ok := r.Requests[corev1.ResourceCPU]
	if !ok {
		q, ok = r.Limits[corev1.ResourceCPU]
	}
	return ok && q.Sign() > 0
}

func (b *Backend) name(v serving.Variant) string { return b.model + "-" + string(v) }

// ServiceURL is the REST endpoint of the model's Service, the one of both
// variants that its users call (no trailing slash; append
// "/v1/models/<model>:predict"): http://<model>.<ns>.svc:8501, or with
// WithAPIServerProxy <host>/api/v1/namespaces/<ns>/services/<model>:8501/proxy.
// A WithEndpoint function is not consulted (it names variants only).
func (b *Backend) ServiceURL() string {
	if h := b.o.proxyHost; h != "" {
		return h + ServiceProxyPath(b.ns, b.model)
	}
	return serviceDNS(b.ns, b.model)
}

// serviceDNS is the in-cluster REST endpoint of Service name in ns:
// http://<name>.<ns>.svc:8501.
func serviceDNS(ns, name string) string {
	return fmt.Sprintf("http://%s.%s.svc:%d", name, ns, RESTPort)
}

// ServiceProxyPath is the API server path that proxies to the REST port of
// Service name in namespace ns (services/proxy, no trailing slash):
// /api/v1/namespaces/<ns>/services/<name>:8501/proxy. The model's Service
// is named after the model, a variant's <model>-<variant>.
func ServiceProxyPath(ns, name string) string {
	return fmt.Sprintf("/api/v1/namespaces/%s/services/%s:%d/proxy", ns, name, RESTPort)
}

// HTTPClient is the client for ServiceURL and the variants' endpoints: the
// API server's authenticated client with WithAPIServerProxy, else nil
// (any plain client).
func (b *Backend) HTTPClient() *http.Client { return b.o.hc }

// ConfigMapName is the ConfigMap holding the model configs.
func (b *Backend) ConfigMapName() string { return b.model + "-serving" }

func (b *Backend) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	retriable := apierrors.IsConflict(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || serving.IsTemporary(err)
	return &serving.Error{Op: fmt.Sprintf("%s (namespace %s, model %s)", op, b.ns, b.model), Err: err, Retriable: retriable}
}

func (b *Backend) labels(v serving.Variant) map[string]string {
	l := map[string]string{LabelApp: b.model, LabelManagedBy: "branchml"}
	if v != "" {
		l[LabelVariant] = string(v)
	}
	return l
}

// ensureShared creates the Service and ConfigMap when missing.
func (b *Backend) ensureShared(ctx context.Context) error {
	svcs := []*corev1.Service{b.service("", b.model), b.service(serving.Stable, b.name(serving.Stable)), b.service(serving.Canary, b.name(serving.Canary))}
	for _, s := range svcs {
		if _, err := b.cs.CoreV1().Services(b.ns).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return b.wrap("create service "+s.Name, err)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: b.ConfigMapName(), Namespace: b.ns, Labels: b.labels("")},
		Data: map[string]string{"monitoring.config": "prometheus_config {\n  enable: true\n  path: \"/monitoring/prometheus/metrics\"\n}\n"}}
	if _, err := b.cs.CoreV1().ConfigMaps(b.ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return b.wrap("create configmap "+cm.Name, err)
	}
	return nil
}

// service selects on the app label only when v is "" (both variants get
// traffic), else on the variant too (for probing one variant).
func (b *Backend) service(v serving.Variant, name string) *corev1.Service {
	sel := map[string]string{LabelApp: b.model}
	if v != "" {
		sel[LabelVariant] = string(v)
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.ns, Labels: b.labels(v)},
		Spec:       corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Name: "http", Port: RESTPort, TargetPort: intstr.FromInt32(RESTPort)}}},
	}
}

// setConfig writes variant v's model config key.
func (b *Backend) setConfig(ctx context.Context, v serving.Variant, m records.ModelRef, versions []int64, labels map[string]int64) error {
	cms := b.cs.CoreV1().ConfigMaps(b.ns)
	cm, err := cms.Get(ctx, b.ConfigMapName(), metav1.GetOptions{})
	if err != nil {
		return b.wrap("get configmap "+b.ConfigMapName(), err)
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[string(v)+".config"] = tfserving.FormatModelConfig(tfserving.ModelConfig{Name: b.model, BasePath: b.basePath(m), Versions: versions, Labels: labels})
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return b.wrap("update configmap "+b.ConfigMapName(), err)
}

func (b *Backend) basePath(m records.ModelRef) string {
	return path.Join(ModelMount, path.Clean("/"+m.Path))
}

func (b *Backend) deployment(v serving.Variant, m records.ModelRef, replicas int32) *appsv1.Deployment {
	lbl := b.labels(v)
	podLabels := map[string]string{}
	for k, x := range lbl {
		podLabels[k] = x
	}
	podLabels[LabelVersion] = strconv.FormatInt(m.Version, 10)
	ref, _ := json.Marshal(m)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: b.name(v), Namespace: b.ns, Labels: podLabels, Annotations: map[string]string{AnnotationModel: string(ref)}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			// A rollout of the variant's own template (a new image) never
			// drops below its ready count: one pod more, none less.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptrTo(intstr.FromInt32(0)), MaxSurge: ptrTo(intstr.FromInt32(1))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  "tfserving",
						Image: b.image,
						Args: []string{
							"--port=" + strconv.Itoa(GRPCPort),
							"--rest_api_port=" + strconv.Itoa(RESTPort),
							"--model_config_file=" + ConfigMount + "/" + string(v) + ".config",
							"--model_config_file_poll_wait_seconds=10",
							"--monitoring_config_file=" + ConfigMount + "/monitoring.config",
							// A pod that starts (scale-up, restart) reads a config whose
							// label names a version it has not loaded yet; without this
							// flag TF Serving refuses the config and exits.
							"--allow_version_labels_for_unavailable_models=true",
						},
						Ports:     []corev1.ContainerPort{{Name: "http", ContainerPort: RESTPort}},
						Resources: *b.o.resources.DeepCopy(),
						// A pod being removed (scale-down, Abort, Promote) leaves the
						// Service's EndpointSlices at once, but proxies (kube-proxy,
						// a gateway) take a moment to stop sending to it, and TF
						// Serving exits at SIGTERM without draining: it keeps serving
						// for PreStopSleep first (the kubelet's sleep action, no
						// binary needed in the image; Kubernetes 1.30+).
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: PreStopSleepSeconds}}},
						// Ready once the variant's label resolves to a loaded version:
						// metadata needs the servable loaded (a model status would
						// answer 200 while the version still loads).
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/v1/models/" + b.model + "/labels/" + string(v) + "/metadata", Port: intstr.FromInt32(RESTPort)}}, PeriodSeconds: 2},
						VolumeMounts: []corev1.VolumeMount{{Name: "model", MountPath: ModelMount, ReadOnly: true}, {Name: "config", MountPath: ConfigMount, ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{
						{Name: "model", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: b.volume, ReadOnly: true}}},
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: b.ConfigMapName()}}}},
					},
				},
			},
		},
	}
}

// Deploy makes variant v serve m: the config lists m.Version (and, while
// it loads, the version v served before, which keeps its label); once
// m.Version reports AVAILABLE at v's endpoint the label moves to it and
// the old version is dropped.
func (b *Backend) Deploy(ctx context.Context, v serving.Variant, m records.ModelRef) error {
	if err := b.ensureShared(ctx); err != nil {
		return err
	}
	// The stable's autoscaler as configured now, at every deploy of either
	// variant (a rollout starts with the canary's), before anything moves.
	if err := b.ensureAutoscaler(ctx); err != nil {
		return err
	}
	deps := b.cs.AppsV1().Deployments(b.ns)
	cur, err := deps.Get(ctx, b.name(v), metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return b.wrap("get deployment "+b.name(v), err)
	}
	var old *records.ModelRef
	if err == nil {
		if om, ok := modelOf(cur); ok {
			if om.Version == m.Version && om.Path == m.Path && cur.Spec.Replicas != nil && *cur.Spec.Replicas > 0 {
				return nil
			}
			old = &om
		}
	}
	versions, labels := []int64{m.Version}, map[string]int64{}
	if old != nil && old.Path == m.Path && old.Version != m.Version && cur.Spec.Replicas != nil && *cur.Spec.Replicas > 0 {
		versions = append(versions, old.Version)
		labels[string(v)] = old.Version
	}
	if err := b.setConfig(ctx, v, m, versions, labels); err != nil {
		return err
	}
	want := b.deployment(v, m, 1)
	if cur == nil || apierrors.IsNotFound(err) {
		if _, err := deps.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return b.wrap("create deployment "+want.Name, err)
		}
	} else {
		if cur.Spec.Replicas != nil && *cur.Spec.Replicas > 1 {
			want.Spec.Replicas = cur.Spec.Replicas
		}
		want.ResourceVersion = cur.ResourceVersion
		if _, err := deps.Update(ctx, want, metav1.UpdateOptions{}); err != nil {
			return b.wrap("update deployment "+want.Name, err)
		}
	}
	n := *want.Spec.Replicas
	if err := b.waitPods(ctx, v, n, b.o.timeout, fmt.Sprintf("v%d AVAILABLE", m.Version), func(ctx context.Context, c *tfserving.Client) (bool, error) {
		return c.Available(ctx, b.model, m.Version)
	}); err != nil {
		return err
	}
	// Only now: TF Serving refuses to move a label to a version that is not
	// loaded (even with --allow_version_labels_for_unavailable_models,
	// which only lets a new label name an unloaded version).
	if err := b.setConfig(ctx, v, m, []int64{m.Version}, map[string]int64{string(v): m.Version}); err != nil {
		return err
	}
	// The pods see the new file after the kubelet synced the ConfigMap
	// volume and the server re-read it: wait until every pod resolves the
	// label to the version, so that what follows (smoke tests by label,
	// traffic) finds it on whichever pod it reaches.
	return b.waitPods(ctx, v, n, b.o.label, fmt.Sprintf("label %s on v%d", v, m.Version), func(ctx context.Context, c *tfserving.Client) (bool, error) {
		st, err := c.Status(ctx, b.model, tfserving.Selector{Label: string(v)})
		if tfserving.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return len(st) == 1 && st[0].Version == m.Version && st[0].Available(), nil
	})
}

// Pod is one pod of a variant as its Service's EndpointSlices list it.
type Pod struct {
	// Name is the pod's name (the endpoint's targetRef), else its address.
	Name string
	// URL is the pod's REST endpoint (WithPodEndpoint).
	URL string
	// Ready is the endpoint's ready condition (the readiness probe passed
	// and the pod is not terminating).
	Ready bool
}

// Pods lists the pods of variant v from the EndpointSlices of its Service
// (<model>-<variant>), sorted by name; terminating pods are left out.
func (b *Backend) Pods(ctx context.Context, v serving.Variant) ([]Pod, error) {
	list, err := b.cs.DiscoveryV1().EndpointSlices(b.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + b.name(v)})
	if err != nil {
		return nil, b.wrap("list endpointslices of "+b.name(v), err)
	}
	seen := map[string]bool{}
	var out []Pod
	for _, sl := range list.Items {
		port := int32(RESTPort)
		for _, p := range sl.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "http") {
				port = *p.Port
			}
		}
		for _, ep := range sl.Endpoints {
			if len(ep.Addresses) == 0 || (ep.Conditions.Terminating != nil && *ep.Conditions.Terminating) {
				continue
			}
			name := ep.Addresses[0]
			if ep.TargetRef != nil && ep.TargetRef.Name != "" {
				name = ep.TargetRef.Name
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			u := b.o.pod(ep.Addresses[0], port)
			if b.o.podName != nil {
				if ep.TargetRef == nil || ep.TargetRef.Name == "" {
					// Through the API server a pod is reached by name; an
					// endpoint without one is not a pod of ours (and the API
					// server's credentials never go to a bare address).
					continue
				}
				u = b.o.podName(ep.TargetRef.Name, port)
			}
			out = append(out, Pod{Name: name, URL: u, Ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// waitPods polls until variant v has at least n pods (ready or not) and
// check holds on every one, or timeout. A *tfserving.LoadError from check
// ends the wait at once, wrapping serving.ErrLoadFailed.
func (b *Backend) waitPods(ctx context.Context, v serving.Variant, n int32, timeout time.Duration, what string, check func(context.Context, *tfserving.Client) (bool, error)) error {
	op := fmt.Sprintf("wait for %s on every pod of %s", what, v)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no pod listed yet"
	for {
		pods, err := b.Pods(wctx, v)
		switch {
		case err != nil:
			last = err.Error()
		case int32(len(pods)) < n:
			last = fmt.Sprintf("%d of %d pods have an endpoint", len(pods), n)
		default:
			done := true
			for _, p := range pods {
				c, err := tfserving.New(p.URL, b.client(5*time.Second)...)
				if err != nil {
					return b.wrap(op, err)
				}
				ok, err := check(wctx, c)
				var le *tfserving.LoadError
				if errors.As(err, &le) {
					return b.wrap(op, fmt.Errorf("%w: pod %s: %w", serving.ErrLoadFailed, p.Name, err))
				}
				if !ok {
					done = false
					last = "pod " + p.Name + " not yet"
					if err != nil {
						last += ": " + err.Error()
					}
					break
				}
			}
			if done {
				return nil
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return b.wrap(op, ctx.Err())
			}
			return b.wrap(op, fmt.Errorf("not within %v (last: %s)", timeout, last))
		case <-time.After(b.o.poll):
		}
	}
}

// waitReady polls until variant v's Deployment has observed its spec and
// at least n ready pods of the current template, or the timeout.
func (b *Backend) waitReady(ctx context.Context, v serving.Variant, n int32) error {
	wctx, cancel := context.WithTimeout(ctx, b.o.timeout)
	defer cancel()
	deps := b.cs.AppsV1().Deployments(b.ns)
	last := ""
	for {
		d, err := deps.Get(wctx, b.name(v), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) && n == 0:
			return nil
		case err != nil:
			last = err.Error()
		case d.Status.ObservedGeneration >= d.Generation && d.Status.ReadyReplicas >= n && d.Status.UpdatedReplicas >= n:
			return nil
		default:
			last = fmt.Sprintf("%d of %d ready", d.Status.ReadyReplicas, n)
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return b.wrap("wait for "+b.name(v)+" ready", ctx.Err())
			}
			return b.wrap(fmt.Sprintf("wait for %d ready pods of %s", n, b.name(v)), fmt.Errorf("not within %v (last: %s)", b.o.timeout, last))
		case <-time.After(b.o.poll):
		}
	}
}

func (b *Backend) specReplicas(ctx context.Context, v serving.Variant) (int, error) {
	d, err := b.cs.AppsV1().Deployments(b.ns).Get(ctx, b.name(v), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, b.wrap("get deployment "+b.name(v), err)
	}
	if d.Spec.Replicas == nil {
		return 1, nil
	}
	return int(*d.Spec.Replicas), nil
}

// counts are the stable's and the canary's spec.replicas (0 for a
// variant without a Deployment).
func (b *Backend) counts(ctx context.Context) (stable, canary int, err error) {
	if stable, err = b.specReplicas(ctx, serving.Stable); err != nil {
		return 0, 0, err
	}
	canary, err = b.specReplicas(ctx, serving.Canary)
	return stable, canary, err
}

func modelOf(d *appsv1.Deployment) (records.ModelRef, bool) {
	var m records.ModelRef
	if d == nil || d.Annotations[AnnotationModel] == "" {
		return m, false
	}
	return m, json.Unmarshal([]byte(d.Annotations[AnnotationModel]), &m) == nil
}

// scale sets variant v's replicas to n. A conflict (the autoscaler, or
// the Deployment controller, wrote in between) is retried on a fresh read
// (client-go's retry.RetryOnConflict).
func (b *Backend) scale(ctx context.Context, v serving.Variant, n int32) error {
	return b.setReplicas(ctx, v, func(int32) int32 { return n })
}

// scaleUp sets variant v's replicas to at least n (more left as they are:
// the autoscaler may have added pods since they were read).
func (b *Backend) scaleUp(ctx context.Context, v serving.Variant, n int32) error {
	return b.setReplicas(ctx, v, func(cur int32) int32 { return max(cur, n) })
}

func (b *Backend) setReplicas(ctx context.Context, v serving.Variant, want func(cur int32) int32) error {
	deps := b.cs.AppsV1().Deployments(b.ns)
	var n int32
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deps.Get(ctx, b.name(v), metav1.GetOptions{})
		if apierrors.IsNotFound(err) && want(0) == 0 {
			n = 0
			return nil
		}
		if err != nil {
			return b.wrap("get deployment "+b.name(v), err)
		}
		cur := int32(1)
		if d.Spec.Replicas != nil {
			cur = *d.Spec.Replicas
		}
		if n = want(cur); n == cur && d.Spec.Replicas != nil {
			return nil
		}
		d.Spec.Replicas = &n
		_, err = deps.Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	var se *serving.Error
	if err == nil || errors.As(err, &se) {
		return err
	}
	return b.wrap(fmt.Sprintf("scale %s to %d", b.name(v), n), err)
}

// Route splits traffic through the Router.
func (b *Backend) Route(ctx context.Context, canaryWeight int) error {
	if canaryWeight < 0 || canaryWeight > 100 {
		return &serving.Error{Op: "route", Err: fmt.Errorf("canary weight %d outside 0..100", canaryWeight)}
	}
	return b.o.router.Route(ctx, b, canaryWeight)
}

// Promote deploys the canary's model to stable (label moved after
// AVAILABLE), scales stable to all replicas (with an autoscaler: to the
// canary's count within MinReplicas..MaxReplicas, its autoscaler held at
// that floor until the canary is gone), waits until they are Ready, then
// removes the canary.
func (b *Backend) Promote(ctx context.Context) error {
	d, err := b.cs.AppsV1().Deployments(b.ns).Get(ctx, b.name(serving.Canary), metav1.GetOptions{})
	if err != nil {
		return b.wrap("get canary deployment", err)
	}
	m, ok := modelOf(d)
	if !ok {
		return b.wrap("promote", errors.New("canary deployment has no "+AnnotationModel+" annotation"))
	}
	if err := b.Deploy(ctx, serving.Stable, m); err != nil {
		return err
	}
	n := int32(b.replicas)
	if a := b.o.autoscale; a != nil {
		c, err := b.specReplicas(ctx, serving.Canary)
		if err != nil {
			return err
		}
		n = min(max(int32(c), a.MinReplicas), a.MaxReplicas)
		release, err := b.holdFloor(ctx, n)
		if err != nil {
			return err
		}
		defer release()
	}
	if err := b.scaleUp(ctx, serving.Stable, n); err != nil {
		return err
	}
	if err := b.waitReady(ctx, serving.Stable, n); err != nil {
		return err
	}
	return b.removeCanary(ctx)
}

// Abort scales stable to all replicas and removes the canary. With an
// autoscaler the stable takes the canary's pods over (its count plus the
// canary's, within MinReplicas..MaxReplicas), its autoscaler held at that
// floor until the canary is gone; then the autoscaler sizes it again.
func (b *Backend) Abort(ctx context.Context) error {
	n := int32(b.replicas)
	if a := b.o.autoscale; a != nil {
		s, c, err := b.counts(ctx)
		if err != nil {
			return err
		}
		n = min(max(int32(s+c), a.MinReplicas), max(a.MaxReplicas, int32(s)))
		release, err := b.holdFloor(ctx, n)
		if err != nil {
			return err
		}
		defer release()
	}
	err := b.scaleUp(ctx, serving.Stable, n)
	if err != nil && !apierrors.IsNotFound(errors.Unwrap(err)) {
		return err
	}
	if err == nil {
		// Never below the stable's capacity: the canary goes only once
		// the stable pods that replace it are Ready.
		if err := b.waitReady(ctx, serving.Stable, n); err != nil {
			return err
		}
	}
	return b.removeCanary(ctx)
}

func (b *Backend) removeCanary(ctx context.Context) error {
	err := b.cs.AppsV1().Deployments(b.ns).Delete(ctx, b.name(serving.Canary), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return b.wrap("delete canary deployment", err)
	}
	cms := b.cs.CoreV1().ConfigMaps(b.ns)
	cm, err := cms.Get(ctx, b.ConfigMapName(), metav1.GetOptions{})
	if err == nil && cm.Data[string(serving.Canary)+".config"] != "" {
		delete(cm.Data, string(serving.Canary)+".config")
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return b.wrap("update configmap", err)
	}
	return nil
}

// State reads both Deployments; the weight is the canary's replica share.
func (b *Backend) State(ctx context.Context) (serving.State, error) {
	st := serving.State{Backend: Name, Model: b.model, Endpoint: fmt.Sprintf("http://%s.%s.svc:%d", b.model, b.ns, RESTPort)}
	total, canary := 0, 0
	for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
		d, err := b.cs.AppsV1().Deployments(b.ns).Get(ctx, b.name(v), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return st, b.wrap("get deployment "+b.name(v), err)
		}
		m, _ := modelOf(d)
		n := 0
		if d.Spec.Replicas != nil {
			n = int(*d.Spec.Replicas)
		}
		total += n
		if v == serving.Canary {
			canary = n
		}
		st.Variants = append(st.Variants, serving.VariantState{Variant: v, Model: m, Endpoint: b.o.endpoint(v), Replicas: n})
	}
	if total > 0 {
		st.CanaryWeight = 100 * canary / total
	}
	return st, nil
}

// Counters scrapes the Prometheus endpoint of every ready pod of variant
// v (its EndpointSlices) and sums them: through the Service each scrape
// would reach one pod only. The sum is kept cumulative for this Backend: a
// pod that is not ready counts with what it last reported, one that went
// away (scale-down, Abort) or restarted (its counters went down) keeps
// the counts it had, so the analysis' deltas (tfserving.Counters.Sub) are
// the requests of the interval, not a restart. No pod gives zero counters.
func (b *Backend) Counters(ctx context.Context, v serving.Variant) (tfserving.Counters, error) {
	pods, err := b.Pods(ctx, v)
	if err != nil {
		return tfserving.Counters{}, err
	}
	read := map[string]tfserving.Counters{}
	listed := map[string]bool{}
	for _, p := range pods {
		listed[p.Name] = true
		if !p.Ready {
			continue
		}
		c, err := tfserving.New(p.URL, b.client(5*time.Second)...)
		if err != nil {
			return tfserving.Counters{}, err
		}
		m, err := c.Metrics(ctx, b.model)
		if err != nil {
			return tfserving.Counters{}, b.wrap(fmt.Sprintf("metrics of %s pod %s", v, p.Name), err)
		}
		read[p.Name] = m
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := b.seen[v]
	if seen == nil {
		seen = map[string]tfserving.Counters{}
		b.seen[v] = seen
	}
	gone := b.gone[v]
	if gone == nil {
		gone = map[string]tfserving.Counters{}
		b.gone[v] = gone
	}
	for name, last := range seen {
		if m, ok := read[name]; ok && restarted(m, last) {
			b.retired[v] = b.retired[v].Add(last) // its server started again: those counts are final
			delete(seen, name)
		} else if !listed[name] {
			// Not listed now: scaled down, deleted, or missing from one
			// list of the EndpointSlices while the controller rewrites
			// them. Its counts stay in the sum; if it is listed again with
			// counters at least these, it is the same server, counted once.
			gone[name] = last
			delete(seen, name)
		}
	}
	for name, m := range read {
		if last, ok := gone[name]; ok {
			if restarted(m, last) {
				b.retired[v] = b.retired[v].Add(last)
			}
			delete(gone, name)
		}
		seen[name] = m
	}
	sum := b.retired[v].Clone()
	for _, m := range gone {
		sum = sum.Add(m)
	}
	for _, m := range seen {
		sum = sum.Add(m)
	}
	return sum, nil
}

// restarted reports whether a pod's counters went down since last: its
// server started again (a container restart keeps the pod's name).
func restarted(m, last tfserving.Counters) bool {
	if m.Requests < last.Requests || m.Latency.Count < last.Latency.Count {
		return true
	}
	for code, n := range last.Codes {
		if m.Codes[code] < n {
			return true
		}
	}
	return false
}

// Predict sends body to variant v by its version label.
func (b *Backend) Predict(ctx context.Context, v serving.Variant, body []byte) (*tfserving.PredictResponse, error) {
	c, err := tfserving.New(b.o.endpoint(v), b.client(10*time.Second)...)
	if err != nil {
		return nil, err
	}
	return c.Predict(ctx, b.model, tfserving.Selector{Label: string(v)}, body)
}

func ptrTo[T any](v T) *T { return &v }

// client is the TF Serving client options: timeout d, and the API
// server's client with WithAPIServerProxy.
func (b *Backend) client(d time.Duration) []tfserving.Option {
	opts := []tfserving.Option{tfserving.WithTimeout(d)}
	if b.o.hc != nil {
		opts = append(opts, tfserving.WithHTTPClient(b.o.hc))
	}
	return opts
}
