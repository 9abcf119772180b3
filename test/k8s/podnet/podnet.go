// Package podnet reaches the pods of the test bed's node from the tests on
// 127.0.0.1 only: a Forwarder opens port-forwards to pods through the API
// server (client-go's tools/portforward over SPDY, what kubectl
// port-forward does), and a ServiceProxy stands in for kube-proxy on
// loopback: it sends each request to a ready endpoint of a Service, chosen
// at random among those its EndpointSlices list (as kube-proxy's iptables
// mode does per connection; this one per request), through the Forwarder.
//
// The tests send only to 127.0.0.1: the API server and the kubelet carry
// it on (the kubelet reaches the pod inside its network namespace; the API
// server's own proxy, which the serving backend may use, dials pod IPs on
// the node's bridge).
package podnet

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// Forwarder keeps one port-forward per (pod, port) of namespace ns, opened
// on first use and replaced when the pod at an address changes (a restart
// gives a new pod UID).
type Forwarder struct {
	cfg *rest.Config
	cs  kubernetes.Interface
	ns  string

	mu     sync.Mutex
	fws    map[string]*forward // by pod UID and port
	byAddr map[string]*forward // by pod IP and port: what PodURL opened
}

type forward struct {
	pf    *portforward.PortForwarder
	stop  chan struct{}
	local string // http://127.0.0.1:<port>
	done  chan struct{}
}

// NewForwarder returns a Forwarder for the pods of ns.
func NewForwarder(cfg *rest.Config, cs kubernetes.Interface, ns string) *Forwarder {
	return &Forwarder{cfg: cfg, cs: cs, ns: ns, fws: map[string]*forward{}, byAddr: map[string]*forward{}}
}

// PodURL is the loopback base URL ("http://127.0.0.1:<port>") of port on
// the pod whose IP is addr (a terminating pod too, while it runs); an error
// when no running pod of the namespace has that address or the forward
// cannot open.
func (f *Forwarder) PodURL(ctx context.Context, addr string, port int32) (string, error) {
	key := addr + ":" + strconv.Itoa(int(port))
	f.mu.Lock()
	fw, ok := f.byAddr[key]
	f.mu.Unlock()
	if ok {
		select {
		case <-fw.done:
		default:
			return fw.local, nil
		}
	}
	pods, err := f.cs.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		// A terminating pod still serves (its preStop sleep) until the
		// proxies drop its endpoint: it is forwarded to as long as it runs.
		if p.Status.PodIP == addr && p.Status.Phase == corev1.PodRunning {
			u, err := f.To(p, port)
			if err == nil {
				f.mu.Lock()
				f.byAddr[key] = f.fws[string(p.UID)+":"+strconv.Itoa(int(port))]
				f.mu.Unlock()
			}
			return u, err
		}
	}
	return "", fmt.Errorf("no running pod of namespace %s has IP %s", f.ns, addr)
}

// To is the loopback base URL of port on pod p, opening the forward if
// needed (waits until it listens).
func (f *Forwarder) To(p *corev1.Pod, port int32) (string, error) {
	key := string(p.UID) + ":" + strconv.Itoa(int(port))
	f.mu.Lock()
	if fw, ok := f.fws[key]; ok {
		select {
		case <-fw.done: // the forward ended (pod gone, stream lost): open anew
			delete(f.fws, key)
		default:
			f.mu.Unlock()
			return fw.local, nil
		}
	}
	f.mu.Unlock()
	// Opened without the lock (it can take seconds): requests to other
	// pods go on meanwhile; of two opened at once, the first stored wins.
	rt, upgrader, err := spdy.RoundTripperFor(f.cfg)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(f.cfg.Host)
	if err != nil {
		return "", err
	}
	u.Path = fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/portforward", p.Namespace, p.Name)
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	fw := &forward{stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	fw.pf, err = portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(int(port))}, fw.stop, ready, io.Discard, io.Discard)
	if err != nil {
		return "", err
	}
	errc := make(chan error, 1)
	go func() {
		defer close(fw.done)
		errc <- fw.pf.ForwardPorts()
	}()
	select {
	case <-ready:
	case err := <-errc:
		return "", fmt.Errorf("port-forward to pod %s/%s:%d: %v", p.Namespace, p.Name, port, err)
	case <-time.After(30 * time.Second):
		close(fw.stop)
		return "", fmt.Errorf("port-forward to pod %s/%s:%d: not ready within 30s", p.Namespace, p.Name, port)
	}
	ports, err := fw.pf.GetPorts()
	if err != nil || len(ports) != 1 {
		close(fw.stop)
		return "", fmt.Errorf("port-forward to pod %s/%s:%d: no local port (%v)", p.Namespace, p.Name, port, err)
	}
	fw.local = "http://127.0.0.1:" + strconv.Itoa(int(ports[0].Local))
	f.mu.Lock()
	defer f.mu.Unlock()
	if other, ok := f.fws[key]; ok {
		close(fw.stop)
		return other.local, nil
	}
	f.fws[key] = fw
	return fw.local, nil
}

// Close stops every forward.
func (f *Forwarder) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, fw := range f.fws {
		close(fw.stop)
		<-fw.done
		delete(f.fws, k)
	}
	f.byAddr = map[string]*forward{}
}

func listenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// ServiceProxy is kube-proxy for one Service port, on 127.0.0.1.
type ServiceProxy struct {
	cs      kubernetes.Interface
	ns, svc string
	port    int32
	fw      *Forwarder
	srv     *http.Server
	url     string
	cancel  context.CancelFunc
	done    chan struct{}

	mu    sync.Mutex
	ready []endpoint // the ready endpoints, from the EndpointSlices
	rng   *rand.Rand
}

type endpoint struct {
	pod  string
	addr string
}

// NewServiceProxy serves, on a free port of 127.0.0.1, port of Service svc
// of namespace ns: each request goes to one ready endpoint of the Service's
// EndpointSlices (label kubernetes.io/service-name, followed by a watch),
// chosen uniformly at random, through fw; with no ready endpoint it
// answers 503, as a Service without endpoints refuses connections.
func NewServiceProxy(ctx context.Context, cs kubernetes.Interface, ns, svc string, port int32, fw *Forwarder) (*ServiceProxy, error) {
	ctx, cancel := context.WithCancel(ctx)
	p := &ServiceProxy{cs: cs, ns: ns, svc: svc, port: port, fw: fw, cancel: cancel, done: make(chan struct{}),
		rng: rand.New(rand.NewPCG(1, 2))}
	if err := p.sync(ctx); err != nil {
		cancel()
		return nil, err
	}
	go p.follow(ctx)
	l, err := listenLoopback()
	if err != nil {
		cancel()
		return nil, err
	}
	p.url = "http://" + l.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(l)
	return p, nil
}

// URL is the proxy's base URL (http://127.0.0.1:<port>).
func (p *ServiceProxy) URL() string { return p.url }

// Endpoints lists the pods (names) of the ready endpoints, sorted.
func (p *ServiceProxy) Endpoints() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.ready {
		out = append(out, e.pod)
	}
	sort.Strings(out)
	return out
}

// Close stops the proxy and its watch.
func (p *ServiceProxy) Close() {
	p.cancel()
	p.srv.Close()
	<-p.done
}

func (p *ServiceProxy) selector() string { return discoveryv1.LabelServiceName + "=" + p.svc }

// sync lists the Service's EndpointSlices and keeps the ready endpoints
// that serve p.port.
func (p *ServiceProxy) sync(ctx context.Context) error {
	slices, err := p.cs.DiscoveryV1().EndpointSlices(p.ns).List(ctx, metav1.ListOptions{LabelSelector: p.selector()})
	if err != nil {
		return fmt.Errorf("list the EndpointSlices of service %s/%s: %w", p.ns, p.svc, err)
	}
	var ready []endpoint
	for _, s := range slices.Items {
		serves := false
		for _, pt := range s.Ports {
			if pt.Port != nil && *pt.Port == p.port {
				serves = true
			}
		}
		if !serves {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || !*e.Conditions.Ready || len(e.Addresses) == 0 || e.TargetRef == nil {
				continue
			}
			ready = append(ready, endpoint{pod: e.TargetRef.Name, addr: e.Addresses[0]})
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].pod < ready[j].pod })
	p.mu.Lock()
	p.ready = ready
	p.mu.Unlock()
	return nil
}

// follow re-syncs on every change of the EndpointSlices (a watch, renewed
// when it ends) until ctx ends.
func (p *ServiceProxy) follow(ctx context.Context) {
	defer close(p.done)
	for ctx.Err() == nil {
		w, err := p.cs.DiscoveryV1().EndpointSlices(p.ns).Watch(ctx, metav1.ListOptions{LabelSelector: p.selector()})
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		p.sync(ctx) // what changed between the list and the watch
		for range w.ResultChan() {
			p.sync(ctx)
		}
		w.Stop()
		select { // a watch that ends at once is not renewed in a busy loop
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *ServiceProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if len(p.ready) == 0 {
		p.mu.Unlock()
		http.Error(w, fmt.Sprintf("service %s/%s has no ready endpoints", p.ns, p.svc), http.StatusServiceUnavailable)
		return
	}
	e := p.ready[p.rng.IntN(len(p.ready))]
	p.mu.Unlock()
	base, err := p.fw.PodURL(r.Context(), e.addr, p.port)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	target, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, fmt.Sprintf("pod %s: %v", e.pod, err), http.StatusBadGateway)
	}
	rp.ServeHTTP(w, r)
}
