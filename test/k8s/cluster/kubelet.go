package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/branchml/branchml/test/k8s/ociimage"
)

// The node and its pod network (Options.Kubelet).
const (
	// NodeName is the kubelet's node (the CSI driver's node ID too).
	NodeName = "node-1"
	// Bridge is the host-only Linux bridge the pods are attached to (CNI
	// bridge plugin): no uplink, no NAT, and forwarding off on the bridge
	// (net.ipv4.conf.branchml0.forwarding=0, whatever net.ipv4.ip_forward
	// says for the machine), so what a pod sends reaches the node's own
	// address and nothing beyond. The node's address is its gateway address.
	Bridge = "branchml0"
	// BridgeForwarding is the bridge's IPv4 forwarding flag, "0" while the
	// node runs.
	BridgeForwarding = "/proc/sys/net/ipv4/conf/" + Bridge + "/forwarding"
	// PodCIDR is the pods' subnet (CNI host-local IPAM); NodeIP is the
	// bridge's own address in it, which the kubelet registers and serves on.
	PodCIDR = "10.213.0.0/24"
	NodeIP  = "10.213.0.1"
	// PauseImage is the sandbox image's repository and tag in the node's
	// registry (Cluster.Registry): the test bed's own pause (test/k8s/cmd/pause).
	PauseImage = "pause:3.10"
)

// kubeletDir is the kubelet's --root-dir (pods' volumes, plugin sockets):
// a temporary directory named after this process (bml-kubelet-<pid>-*),
// so that the next test bed unmounts and removes what a crashed one left.
func (c *Cluster) kubeletDir() string { return c.kubeletRoot }

// registrationDir is where the kubelet's plugin watcher looks for plugin
// registration sockets (<root-dir>/plugins_registry).
func (c *Cluster) registrationDir() string { return filepath.Join(c.kubeletDir(), "plugins_registry") }

// needNode checks what a node needs on this machine before anything starts,
// naming the Debian package of what is missing.
func needNode() (map[string]string, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("cluster: Options.Kubelet needs root (containerd, runc, mounts and the pod bridge)")
	}
	bins := map[string]string{}
	var missing []string
	for cmd, pkg := range map[string]string{"containerd": "containerd", "containerd-shim-runc-v2": "containerd", "runc": "runc", "docker-registry": "docker-registry", "ip": "iproute2", "unshare": "util-linux"} {
		p, err := exec.LookPath(cmd)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", cmd, pkg))
			continue
		}
		bins[cmd] = p
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			missing = append(missing, fmt.Sprintf("CNI plugin %s in %s (Debian package containernetworking-plugins)", plugin, cniBinDir))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("cluster: Options.Kubelet needs %s: apt-get install containerd runc docker-registry containernetworking-plugins", strings.Join(missing, ", "))
	}
	return bins, nil
}

const cniBinDir = "/usr/lib/cni"

// makeKubeletRoot creates the kubelet's root dir (a temp dir: the CSI
// driver, started before the kubelet, needs its plugins_registry path).
// containerd runs in a mount namespace of its own (startContainerd); the
// volumes the kubelet and the CSI driver mount for pods must reach it: the
// root dir is a shared mount, of which containerd's copy is a slave.
func (c *Cluster) makeKubeletRoot() (err error) {
	reapMounted("", "bml-kubelet-")
	if c.kubeletRoot, err = os.MkdirTemp("", tempPrefix("bml-kubelet-")); err != nil {
		return err
	}
	if err := syscall.Mount(c.kubeletRoot, c.kubeletRoot, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("cluster: bind-mount the kubelet's root dir: %w", err)
	}
	if err := syscall.Mount("", c.kubeletRoot, "", syscall.MS_SHARED, ""); err != nil {
		return fmt.Errorf("cluster: make the kubelet's root dir a shared mount: %w", err)
	}
	return os.MkdirAll(c.registrationDir(), 0o750)
}

// startKubelet starts the node: a Distribution registry on 127.0.0.1 with
// the pause image, the pod bridge, containerd (in a PID namespace of its
// own, so that its shims and every container die with it) and the kubelet,
// and waits until the node is Ready.
func (c *Cluster) startKubelet(ctx context.Context, env []string) error {
	bins, err := needNode()
	if err != nil {
		return err
	}
	reap("", "bml-ctd-")
	if err := c.startRegistry(ctx, bins["docker-registry"]); err != nil {
		return err
	}
	src, err := SourceDir(c.opt.Source)
	if err != nil {
		return err
	}
	pause, err := ociimage.PushPause(ctx, c.Registry, src)
	if err != nil {
		return fmt.Errorf("push the pause image: %w", err)
	}
	if err := c.bridgeUp(); err != nil {
		return err
	}
	if err := c.startContainerd(ctx, bins, pause); err != nil {
		return err
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	cfg := filepath.Join(c.Dir, "kubelet.yaml")
	if err := os.WriteFile(cfg, []byte(c.kubeletConfig(ports[0], ports[1])), 0o644); err != nil {
		return err
	}
	for _, d := range []string{c.kubeletDir(), c.registrationDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return err
	}
	return c.run(ctx, "kubelet", procSpec{bin: filepath.Join(c.BinDir, "kubelet"), env: env, args: []string{
		"--config=" + cfg, "--kubeconfig=" + c.Kubeconfig, "--hostname-override=" + NodeName, "--node-ip=" + NodeIP,
		"--root-dir=" + c.kubeletDir(), "--cert-dir=" + filepath.Join(c.kubeletDir(), "pki"), "--v=2",
	}}, func(ctx context.Context) error {
		return poll(ctx, func() error {
			n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					if cond.Status == corev1.ConditionTrue {
						return nil
					}
					return fmt.Errorf("node %s not Ready: %s", NodeName, cond.Message)
				}
			}
			return fmt.Errorf("node %s has no Ready condition yet", NodeName)
		})
	})
}

// startRegistry runs Debian's Distribution registry on 127.0.0.1 (plain
// HTTP, storage in Dir/registry): the node pulls its images from it.
func (c *Cluster) startRegistry(ctx context.Context, bin string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	dir := filepath.Join(c.Dir, "registry")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	c.Registry = "127.0.0.1:" + strconv.Itoa(ports[0])
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), c.Registry)), 0o644); err != nil {
		return err
	}
	return c.run(ctx, "registry", procSpec{bin: bin, args: []string{"serve", cfg}}, func(ctx context.Context) error {
		return httpOK(ctx, nil, "http://"+c.Registry+"/v2/", "")
	})
}

// bridgeUp (re)creates Bridge with NodeIP. A bridge left by a test bed
// that crashed is replaced.
func (c *Cluster) bridgeUp() error {
	ipCmd := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	_ = ipCmd("link", "del", Bridge) // absent on a clean machine
	prefix := strings.SplitN(PodCIDR, "/", 2)[1]
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", NodeIP + "/" + prefix, "dev", Bridge},
		{"link", "set", Bridge, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return fmt.Errorf("cluster: the pod bridge: %w", err)
		}
	}
	// Packets the pods send are not forwarded to other interfaces (IPv4
	// checks the forwarding flag of the interface a packet came in on).
	if err := os.WriteFile(BridgeForwarding, []byte("0\n"), 0o644); err != nil {
		return fmt.Errorf("cluster: turn forwarding off on the pod bridge: %w", err)
	}
	os.WriteFile("/proc/sys/net/ipv6/conf/"+Bridge+"/disable_ipv6", []byte("1\n"), 0o644) // the pods get IPv4 only
	c.bridge = true
	return nil
}

// startContainerd writes containerd's configuration (CRI with the native
// snapshotter, runc, the CNI conflist, a hosts.toml that sends pulls of
// the node's registry over plain HTTP) and starts it as PID 1 of a new PID
// namespace.
func (c *Cluster) startContainerd(ctx context.Context, bins map[string]string, pause string) error {
	// Short: unix socket paths have a 107-byte limit (shims put theirs
	// beside containerd's state).
	state, err := os.MkdirTemp("", tempPrefix("bml-ctd-"))
	if err != nil {
		return err
	}
	c.ctdState = state
	root := filepath.Join(c.Dir, "containerd")
	cniConf := filepath.Join(c.Dir, "cni", "net.d")
	certsD := filepath.Join(c.Dir, "containerd-certs.d")
	for _, d := range []string{root, cniConf, filepath.Join(certsD, c.Registry)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "branchml-pods",
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": %q}]], "dataDir": %q}
  }]
}
`, Bridge, PodCIDR, NodeIP, filepath.Join(c.Dir, "cni", "ipam"))
	hosts := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", c.Registry, c.Registry)
	c.CRISocket = filepath.Join(state, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # The sandbox asks for oom_score_adj -998; lowering it needs
  # CAP_SYS_RESOURCE, which a container-like CI machine may lack: cap it at
  # containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %q
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, root, filepath.Join(state, "state"), c.CRISocket, c.CRISocket+".ttrpc", filepath.Join(root, "opt"), pause,
		bins["runc"], filepath.Join(state, "runc"), cniBinDir, cniConf, certsD)
	for path, body := range map[string]string{
		filepath.Join(cniConf, "10-branchml.conflist"):  conflist,
		filepath.Join(certsD, c.Registry, "hosts.toml"): hosts,
		filepath.Join(c.Dir, "containerd.toml"):         cfg,
	} {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return err
		}
	}
	// PID 1 of a new PID namespace (so that its shims and every container
	// die with it, also when this process is killed) with its own /proc
	// and mount namespace (its root file systems and the pods' network
	// namespaces vanish with it too).
	return c.run(ctx, "containerd", procSpec{bin: bins["unshare"], args: []string{
		"--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "slave",
		bins["containerd"], "--config=" + filepath.Join(c.Dir, "containerd.toml"), "--log-level=info"}},
		func(ctx context.Context) error {
			return poll(ctx, func() error { _, err := os.Stat(c.CRISocket); return err })
		})
}

func (c *Cluster) kubeletConfig(port, healthz int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
tlsCertFile: %s
tlsPrivateKeyFile: %s
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
resolvConf: ""
syncFrequency: 10s
nodeStatusUpdateFrequency: 4s
fileCheckFrequency: 10s
evictionHard: {memory.available: 100Mi, nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
localStorageCapacityIsolation: false
rotateCertificates: false
registerNode: true
volumePluginDir: %s
podLogsDir: %s
`, NodeIP, port, filepath.Join(c.Dir, "pki", "kubelet.crt"), filepath.Join(c.Dir, "pki", "kubelet.key"), healthz, c.CRISocket, filepath.Join(c.kubeletDir(), "volume-plugins"), filepath.Join(c.Dir, "pod-logs"))
}

// NodeLockFile is the machine-wide lock of the node: the bridge, its
// address range and the kubelet's node name are one per machine, so a
// second test bed with a node (another test binary of make test-k8s) waits
// until the first one stops. In /run, whatever TMPDIR each process has.
var NodeLockFile = "/run/branchml-k8s-node.lock"

// lockNode takes NodeLockFile (flock, released by the kernel when this
// process dies), waiting while another process holds it until ctx ends.
func lockNode(ctx context.Context, progress io.Writer) (*os.File, error) {
	f, err := os.OpenFile(NodeLockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("cluster: lock %s: %w", NodeLockFile, err)
		}
		holder, _ := os.ReadFile(NodeLockFile)
		fmt.Fprintf(progress, "waiting for the test bed node of pid %s to stop (one node per machine: %s)\n", strings.TrimSpace(string(holder)), NodeLockFile)
		if err := flockCtx(ctx, f); err != nil {
			f.Close()
			return nil, fmt.Errorf("cluster: another test bed runs a node on this machine (%s): %w", NodeLockFile, err)
		}
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

// stopNode cleans up after the node's processes were stopped: the
// mounts the kubelet made (ConfigMap and CSI volumes) and its root dir,
// the bridge and containerd's state directory (containerd's own mounts
// and the pods' network namespaces were in its mount namespace), and
// lets go of the node lock last.
func (c *Cluster) stopNode() {
	if !c.opt.Kubelet {
		return
	}
	if c.nodeLock != nil {
		defer c.nodeLock.Close() // last: the next node may start once all is gone
	}
	if c.kubeletRoot != "" {
		removeMounted(c.kubeletRoot)
	}
	if c.bridge {
		exec.Command("ip", "link", "del", Bridge).Run()
	}
	if c.ctdState != "" {
		os.RemoveAll(c.ctdState)
	}
}

// removeMounted unmounts everything at and below dir, then removes dir,
// unless something is still mounted there: RemoveAll through a volume's
// bind mount would delete the volume's data.
func removeMounted(dir string) {
	for range 3 {
		if len(mountsUnder(dir)) == 0 {
			break
		}
		for _, p := range mountsUnder(dir) {
			syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
	if len(mountsUnder(dir)) == 0 {
		os.RemoveAll(dir)
	}
}

// reapMounted is reap for directories that may hold mounts (removeMounted).
func reapMounted(dir, prefix string) { reapWith(dir, prefix, removeMounted) }

// mountsUnder lists the mount points at and below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if mp := unescapeMount(fields[4]); mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
