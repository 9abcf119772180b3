package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// Names of the test bed's storage objects.
const (
	// Driver is the CSI driver name of the test bed's hostpath driver.
	Driver = "hostpath.csi.branchml.dev"
	// StorageClass provisions PVCs with Driver (Immediate binding).
	StorageClass = "csi-hostpath"
	// SnapshotClass is a VolumeSnapshotClass of Driver (deletionPolicy
	// Delete); it is not marked default.
	SnapshotClass = "csi-hostpath-snapclass"
)

const serviceIP = "10.0.0.1" // first address of --service-cluster-ip-range; never dialled

// Options configure Start.
type Options struct {
	// Dir keeps the cluster's state: pki/, kubeconfig, logs/<component>.log
	// and hostpath/ (the CSI driver's volumes). Required.
	Dir string
	// Source is the branchml checkout whose test/k8s/build is built when the
	// binaries are not cached ("" finds it from the working directory).
	Source string
	// NoStorage leaves out the CSI stack (driver, provisioner, snapshotter,
	// snapshot controller) and the snapshot CRDs: a bare control plane.
	NoStorage bool
	// EtcdDir keeps etcd's data across restarts of the test bed ("": a
	// fresh directory in /dev/shm, removed by Stop).
	EtcdDir string
	// Kubelet also runs a kubelet registered as node "node-1" against a
	// containerd it starts (see kubelet.go).
	Kubelet bool
	// Metrics also runs metrics-server (needs Kubelet; see metrics.go):
	// the resource metrics API metrics.k8s.io/v1beta1 that the
	// HorizontalPodAutoscaler controller reads.
	Metrics bool
	// Progress gets one line per started component (nil: discarded).
	Progress io.Writer
}

// Cluster is a running single-node test bed on 127.0.0.1.
type Cluster struct {
	// Dir is Options.Dir; Kubeconfig is Dir/kubeconfig (admin, token auth).
	Dir, Kubeconfig string
	// Server is the API server's URL (https://127.0.0.1:PORT); Token the
	// admin bearer token (group system:masters); CAFile its CA bundle.
	Server, Token, CAFile string
	// BinDir holds the built binaries.
	BinDir string
	// HostPathDir is the CSI driver's data directory: a PV's volume lives
	// in HostPathDir/<spec.csi.volumeHandle> ("" with NoStorage).
	HostPathDir string
	// Socket is the CSI driver's unix socket.
	Socket string
	// Registry is the node's image registry, "127.0.0.1:PORT" (plain
	// HTTP; Options.Kubelet only): push the images pods run there and name
	// them Registry+"/repo:tag".
	Registry string
	// CRISocket is containerd's socket (Options.Kubelet only).
	CRISocket string

	opt     Options
	etcdDir string
	mu      sync.Mutex
	procs   map[string]*proc
	specs   map[string]procSpec
	order   []string
	stopped bool
	// the node's (kubelet.go)
	bridge      bool
	ctdState    string
	kubeletRoot string
	nodeLock    *os.File // held while this process runs the machine's one node
}

type procSpec struct {
	bin  string
	args []string
	env  []string
}

// Start builds the binaries if needed (BinDir), then starts etcd (Debian's
// etcd on PATH), kube-apiserver, kube-controller-manager, kube-scheduler
// and, unless NoStorage, the CSI hostpath driver, csi-provisioner,
// csi-snapshotter and snapshot-controller, with the VolumeSnapshot CRDs of
// the external-snapshotter client module, the TridentActionSnapshotRestore
// CRD of manifests/, StorageClass and SnapshotClass. Every listener is on
// 127.0.0.1 on a free port; every process is in its own process group and
// dies with this process. On error everything started is stopped.
func Start(ctx context.Context, opt Options) (c *Cluster, err error) {
	if opt.Dir == "" {
		return nil, errors.New("cluster: Options.Dir is required")
	}
	if opt.Progress == nil {
		opt.Progress = io.Discard
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return nil, errors.New("etcd not found on PATH: install Debian's etcd-server (apt-get install etcd-server)")
	}
	src, err := SourceDir(opt.Source)
	if err != nil {
		return nil, err
	}
	bin, err := BinDir(ctx, src, opt.Progress)
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: opt.Dir, BinDir: bin, opt: opt, procs: map[string]*proc{}, specs: map[string]procSpec{}}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	pkiDir := filepath.Join(opt.Dir, "pki")
	for _, d := range []string{pkiDir, filepath.Join(opt.Dir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return c, err
		}
	}
	if c.Token, err = pki(pkiDir); err != nil {
		return c, err
	}
	c.CAFile = filepath.Join(pkiDir, "ca.crt")
	// etcd's data in memory when /dev/shm exists: no fsync cost.
	shm := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		shm = "/dev/shm"
	}
	reap(shm, "branchml-etcd-")
	reap("", "bml-csi-")
	etcdData := opt.EtcdDir
	if etcdData == "" {
		if c.etcdDir, err = os.MkdirTemp(shm, tempPrefix("branchml-etcd-")); err != nil {
			return c, err
		}
		etcdData = c.etcdDir
	} else if err := os.MkdirAll(etcdData, 0o700); err != nil {
		return c, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return c, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.run(ctx, "etcd", procSpec{bin: etcd, args: []string{
		"--name=default", "--data-dir=" + etcdData,
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL, "--log-level=warn",
	}}, func(ctx context.Context) error { return httpOK(ctx, nil, etcdURL+"/health", "") }); err != nil {
		return c, err
	}
	c.Server = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	p := func(f string) string { return filepath.Join(pkiDir, f) }
	if err := c.run(ctx, "kube-apiserver", procSpec{bin: filepath.Join(bin, "kube-apiserver"), args: []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[2]),
		"--tls-cert-file=" + p("apiserver.crt"), "--tls-private-key-file=" + p("apiserver.key"),
		"--client-ca-file=" + p("ca.crt"), "--token-auth-file=" + p("tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file=" + p("sa.pub"),
		"--service-account-signing-key-file=" + p("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24", "--endpoint-reconciler-type=none",
		"--authorization-mode=Node,RBAC", "--allow-privileged=true", "--enable-priority-and-fairness=false",
		"--kubelet-preferred-address-types=InternalIP",   // the node's address on the pod bridge (kubelet.go)
		"--kubelet-certificate-authority=" + p("ca.crt"), // the kubelet serves pki's kubelet.crt
		"--profiling=false", "--cert-dir=" + filepath.Join(opt.Dir, "pki", "generated"), "--v=1",
		// The aggregation layer (metrics.k8s.io by metrics-server): the
		// front proxy's client certificate and the request headers an
		// extension API server trusts from it, as kubeadm sets them; an
		// APIService's requests go to its Service's endpoints (there is no
		// kube-proxy for a cluster IP).
		"--requestheader-client-ca-file=" + p("front-proxy-ca.crt"), "--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p("front-proxy-client.crt"), "--proxy-client-key-file=" + p("front-proxy-client.key"),
		"--enable-aggregator-routing=true",
	}}, func(ctx context.Context) error { return httpOK(ctx, c.caPool(), c.Server+"/readyz", c.Token) }); err != nil {
		return c, err
	}
	c.Kubeconfig = filepath.Join(opt.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, []byte(c.kubeconfig()), 0o600); err != nil {
		return c, err
	}
	env := []string{"KUBECONFIG=" + c.Kubeconfig}
	// Node lifecycle only with a node: it lifts the not-ready taint the
	// kubelet registers with once the node is Ready.
	controllers := "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle"
	if opt.Kubelet {
		controllers = "*,-nodeipam,-cloud-node-lifecycle"
	}
	if err := c.run(ctx, "kube-controller-manager", procSpec{bin: filepath.Join(bin, "kube-controller-manager"), env: env, args: []string{
		"--kubeconfig=" + c.Kubeconfig, "--authentication-kubeconfig=" + c.Kubeconfig, "--authorization-kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false", "--secure-port=0", "--bind-address=127.0.0.1",
		"--service-account-private-key-file=" + p("sa.key"), "--root-ca-file=" + p("ca.crt"),
		"--use-service-account-credentials=false", "--controllers=" + controllers, "--v=1",
		// The HorizontalPodAutoscaler controller's loop, 15 s by default:
		// every 5 s, so that a load step is answered within a test's minute.
		"--horizontal-pod-autoscaler-sync-period=5s",
	}}, nil); err != nil {
		return c, err
	}
	if err := c.run(ctx, "kube-scheduler", procSpec{bin: filepath.Join(bin, "kube-scheduler"), env: env, args: []string{
		"--kubeconfig=" + c.Kubeconfig, "--authentication-kubeconfig=" + c.Kubeconfig, "--authorization-kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false", "--secure-port=0", "--bind-address=127.0.0.1", "--v=1",
	}}, nil); err != nil {
		return c, err
	}
	if opt.Kubelet {
		if _, err := needNode(); err != nil { // before the CSI driver is told where the kubelet is
			return c, err
		}
		if c.nodeLock, err = lockNode(ctx, opt.Progress); err != nil {
			return c, err
		}
		if err := c.makeKubeletRoot(); err != nil {
			return c, err
		}
	}
	if !opt.NoStorage {
		if err := c.startStorage(ctx, src, env); err != nil {
			return c, err
		}
	}
	if opt.Kubelet {
		if err := c.startKubelet(ctx, env); err != nil {
			return c, err
		}
	}
	if opt.Metrics {
		if !opt.Kubelet {
			return c, errors.New("cluster: Options.Metrics needs Options.Kubelet (metrics-server reads the kubelet's resource metrics)")
		}
		if err := c.startMetrics(ctx, env); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (c *Cluster) startStorage(ctx context.Context, src string, env []string) error {
	if err := c.applyStorageManifests(ctx, src); err != nil {
		return err
	}
	c.HostPathDir = filepath.Join(c.Dir, "hostpath")
	sockDir, err := os.MkdirTemp("", tempPrefix("bml-csi-")) // short: unix socket paths have a 107-byte limit
	if err != nil {
		return err
	}
	c.Socket = filepath.Join(sockDir, "csi.sock")
	sock := "unix://" + c.Socket
	args := []string{"--endpoint=" + sock, "--drivername=" + Driver, "--nodeid=" + NodeName, "--datadir=" + c.HostPathDir}
	if c.opt.Kubelet { // the node's kubelet mounts the volumes of pods through the driver
		args = append(args, "--kubelet-registration-dir="+c.registrationDir())
	}
	if err := c.run(ctx, "csi-hostpath", procSpec{bin: filepath.Join(c.BinDir, "csi-hostpath"), args: args}, func(ctx context.Context) error {
		return poll(ctx, func() error { _, err := os.Stat(c.Socket); return err })
	}); err != nil {
		return err
	}
	retry := []string{"--retry-interval-start=500ms", "--retry-interval-max=5s"}
	if err := c.run(ctx, "csi-provisioner", procSpec{bin: filepath.Join(c.BinDir, "csi-provisioner"), env: env, args: append([]string{
		"--kubeconfig=" + c.Kubeconfig, "--csi-address=" + c.Socket, "--leader-election=false",
		"--extra-create-metadata", "--timeout=30s", "--v=2",
	}, retry...)}, nil); err != nil {
		return err
	}
	if err := c.run(ctx, "csi-snapshotter", procSpec{bin: filepath.Join(c.BinDir, "csi-snapshotter"), env: env, args: append([]string{
		"--kubeconfig=" + c.Kubeconfig, "--csi-address=" + c.Socket, "--leader-election=false",
		"--extra-create-metadata", "--timeout=30s", "--v=2",
	}, retry...)}, nil); err != nil {
		return err
	}
	return c.run(ctx, "snapshot-controller", procSpec{bin: filepath.Join(c.BinDir, "snapshot-controller"), env: env, args: append([]string{
		"--kubeconfig=" + c.Kubeconfig, "--leader-election=false", "--v=2",
	}, retry...)}, nil)
}

// run starts component name from spec and waits until ready (nil: only
// that it did not exit within the first half second).
func (c *Cluster) run(ctx context.Context, name string, spec procSpec, ready func(context.Context) error) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return errors.New("cluster stopped")
	}
	c.specs[name] = spec
	if !slices.Contains(c.order, name) {
		c.order = append(c.order, name)
	}
	c.mu.Unlock()
	t0 := time.Now()
	pr, err := startProc(name, c.LogFile(name), spec)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.procs[name] = pr
	c.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if ready == nil {
		ready = func(ctx context.Context) error {
			select {
			case <-time.After(500 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- ready(rctx) }()
	select {
	case err = <-errc:
	case <-pr.done:
		err = pr.exitErr()
	}
	if err != nil {
		return fmt.Errorf("%s did not become ready: %w (log: %s)\n%s", name, err, c.LogFile(name), tail(c.LogFile(name), 20))
	}
	fmt.Fprintf(c.opt.Progress, "%-24s ready in %s (pid %d)\n", name, time.Since(t0).Round(10*time.Millisecond), pr.cmd.Process.Pid)
	return nil
}

// LogFile is where component name's stdout and stderr go.
func (c *Cluster) LogFile(name string) string { return filepath.Join(c.Dir, "logs", name+".log") }

// RunController starts an extra supervised process (a controller under
// test, a sidecar) like the built-in components: own process group, killed
// with this process, KUBECONFIG set to the admin kubeconfig, output in
// LogFile(name), stopped by Stop (first, in reverse start order).
func (c *Cluster) RunController(ctx context.Context, name, bin string, args ...string) error {
	return c.run(ctx, name, procSpec{bin: bin, args: args, env: []string{"KUBECONFIG=" + c.Kubeconfig}}, nil)
}

// StopComponent stops one component (e.g. "snapshot-controller") and
// leaves the others running; StartComponent starts it again with the same
// flags.
func (c *Cluster) StopComponent(name string) error {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no component %q", name)
	}
	p.stop(10 * time.Second)
	return nil
}

// StartComponent restarts a component stopped by StopComponent.
func (c *Cluster) StartComponent(ctx context.Context, name string) error {
	c.mu.Lock()
	spec, ok := c.specs[name]
	p := c.procs[name]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("no component %q", name)
	}
	if p != nil && !p.exited() {
		return fmt.Errorf("%s is running", name)
	}
	return c.run(ctx, name, spec, nil)
}

// PIDs returns the process ID (= process group ID) of every running component.
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for n, p := range c.procs {
		if !p.exited() {
			out[n] = p.cmd.Process.Pid
		}
	}
	return out
}

// Exited returns the components that ended on their own (crashed), with
// how they ended.
func (c *Cluster) Exited() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []error
	for _, n := range c.order {
		if p := c.procs[n]; p != nil && p.exited() {
			out = append(out, p.exitErr())
		}
	}
	return out
}

// Stop stops every component in reverse start order (SIGTERM to its
// process group, SIGKILL after 10 s) and removes etcd's data. It is safe
// to call more than once.
func (c *Cluster) Stop() {
	c.mu.Lock()
	c.stopped = true
	order := slices.Clone(c.order)
	c.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		c.mu.Lock()
		p := c.procs[order[i]]
		c.mu.Unlock()
		if p != nil {
			p.stop(10 * time.Second)
		}
	}
	c.stopNode()
	if c.etcdDir != "" {
		os.RemoveAll(c.etcdDir)
	}
	if c.Socket != "" {
		os.RemoveAll(filepath.Dir(c.Socket))
	}
}

// RESTConfig is the admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config {
	return &rest.Config{Host: c.Server, BearerToken: c.Token, TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile}, QPS: 50, Burst: 100}
}

// HTTPClient is an HTTP client of the API server with RESTConfig's
// credentials (the admin token, the cluster's CA), for paths client-go has
// no typed call for: services/proxy, or a plain GET of an object.
func (c *Cluster) HTTPClient() (*http.Client, error) { return rest.HTTPClientFor(c.RESTConfig()) }

func (c *Cluster) kubeconfig() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: branchml-testbed
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: branchml-testbed
  context:
    cluster: branchml-testbed
    user: admin
    namespace: default
current-context: branchml-testbed
`, c.Server, c.CAFile, c.Token)
}

func (c *Cluster) caPool() *x509.CertPool {
	pool := x509.NewCertPool()
	if raw, err := os.ReadFile(c.CAFile); err == nil {
		pool.AppendCertsFromPEM(raw)
	}
	return pool
}

// tempPrefix names temporary directories after this process, so that reap
// can tell those of a crashed process (whose components Pdeathsig killed).
func tempPrefix(p string) string { return p + strconv.Itoa(os.Getpid()) + "-" }

// reap removes the temporary directories prefix<pid>-* in dir ("" = the
// temp dir) of processes that no longer run.
func reap(dir, prefix string) { reapWith(dir, prefix, func(p string) { os.RemoveAll(p) }) }

// reapWith is reap with remove in place of os.RemoveAll.
func reapWith(dir, prefix string, remove func(string)) {
	if dir == "" {
		dir = os.TempDir()
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // alive (or not ours to judge)
		}
		remove(filepath.Join(dir, e.Name()))
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// poll calls f every 100 ms until it returns nil or ctx ends.
func poll(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func httpOK(ctx context.Context, pool *x509.CertPool, url, token string) error {
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer cl.CloseIdleConnections()
	return poll(ctx, func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	})
}

func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
