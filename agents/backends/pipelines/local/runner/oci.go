package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ociLauncher runs each task attempt as a container of an OCI runtime
// (runc or crun, from Debian): the image's unpacked file system under a
// per-task overlay (the cached image stays untouched), its own mount, PID,
// UTS and IPC namespaces, the host's network, the image's env, user and
// working directory, the task's bind mounts, and cgroup limits from the
// task's CPU and memory.
type ociLauncher struct {
	bin, root string
	logf      func(string, ...any)
	mu        sync.Mutex
	noOverlay bool
	cleanups  sync.WaitGroup
}

// drain waits for the bundle clean-ups still running in the background.
func (o *ociLauncher) drain() { o.cleanups.Wait() }

// defaultCaps is the capability set of Docker and containerd containers.
var defaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// RuntimeStateDir is where the runtime keeps its container state.
const RuntimeStateDir = "/run/branchml"

func newOCILauncher(name string, logf func(string, ...any)) (*ociLauncher, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("tasks in containers need root (the OCI runtime mounts each image's file system); run as root, or set backends.pipelines.runner.isolation: process to run tasks as host processes")
	}
	bin, err := pickRuntime(name)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(RuntimeStateDir, filepath.Base(bin))
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("container runtime state %s: %w", root, err)
	}
	return &ociLauncher{bin: bin, root: root, logf: logf}, nil
}

// pickRuntime finds the runtime: name when given, else crun (fast) unless
// this machine's cgroups are in the hybrid layout crun refuses (v1
// controllers with controllers on the v2 hierarchy too), else runc.
func pickRuntime(name string) (string, error) {
	if name != "" {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("container runtime %s: %w (install it: apt-get install %s)", name, err, filepath.Base(name))
		}
		return p, nil
	}
	if p, err := exec.LookPath("crun"); err == nil && !hybridCgroups() {
		return p, nil
	}
	if p, err := exec.LookPath("runc"); err == nil {
		return p, nil
	}
	return "", errors.New("no OCI runtime found: install runc (apt-get install runc) or crun, or set backends.pipelines.runner.isolation: process")
}

// ContainersUnavailable says why tasks cannot run in containers on this
// machine with the default runtime (IsolationContainer; a runtime named
// by backends.pipelines.runner.runtime is not consulted): not root, or no
// runtime it would pick on PATH (crun only where cgroups are not hybrid);
// "" when they can. fix is what makes them available.
func ContainersUnavailable() (why, fix string) {
	if os.Geteuid() != 0 {
		return "not root (the OCI runtime mounts each image's file system)", "run as root"
	}
	if _, err := pickRuntime(""); err != nil {
		if _, crun := exec.LookPath("crun"); crun == nil {
			return "no usable OCI runtime (crun refuses this machine's hybrid cgroups, and there is no runc on PATH)", "apt-get install runc"
		}
		return "no OCI runtime (runc or crun) on PATH", "apt-get install runc"
	}
	return "", ""
}

func hybridCgroups() bool {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return false // pure v2
	}
	b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	return err == nil && strings.TrimSpace(string(b)) != ""
}

func (o *ociLauncher) rt(args ...string) *exec.Cmd {
	return exec.Command(o.bin, append([]string{"--root", o.root}, args...)...)
}

func (o *ociLauncher) launch(ctx context.Context, s *launchSpec) (int, error) {
	bundle := filepath.Join(s.taskDir, ".bundle-"+s.id)
	rootfs := filepath.Join(bundle, "rootfs")
	// Bundles of earlier attempts or of a runner that died (its container
	// is gone: killed by its reaper or cleanupDead) are detached and removed.
	if old, _ := filepath.Glob(filepath.Join(s.taskDir, ".bundle-*")); len(old) > 0 {
		for _, b := range old {
			if b != bundle {
				_ = unmountAll(filepath.Join(b, "rootfs"))
				_ = os.RemoveAll(b)
			}
		}
	}
	for _, d := range []string{rootfs, filepath.Join(bundle, "upper"), filepath.Join(bundle, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return -1, err
		}
	}
	readonly := false
	o.mu.Lock()
	noOverlay := o.noOverlay
	o.mu.Unlock()
	if !noOverlay {
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", s.img.RootFS, filepath.Join(bundle, "upper"), filepath.Join(bundle, "work"))
		if err := syscall.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
			o.mu.Lock()
			o.noOverlay = true
			o.mu.Unlock()
			o.logf("overlay mounts fail here (%v): task containers get their image read-only, with a writable /tmp", err)
			noOverlay = true
		}
	}
	if noOverlay {
		if err := syscall.Mount(s.img.RootFS, rootfs, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return -1, fmt.Errorf("bind image %s: %w", s.img.Ref, err)
		}
		readonly = true
	}
	reap.track("m", rootfs)
	defer func() { // off the task's critical path; Exec drains it
		o.cleanups.Add(1)
		go func() {
			defer o.cleanups.Done()
			_ = unmountAll(rootfs)
			reap.untrack("m", rootfs)
			_ = os.RemoveAll(bundle)
		}()
	}()
	if s.uid != 0 {
		for _, d := range s.fixOwner {
			chownTree(d, int(s.uid), int(s.gid))
		}
		for _, d := range s.fixGroup {
			fsGroup(d, int(s.gid))
		}
	}
	cfg := o.config(s, readonly)
	b, err := json.Marshal(cfg)
	if err != nil {
		return -1, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return -1, err
	}
	cmd := o.rt("run", "--bundle", bundle, s.id)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	reap.track("c", o.bin+"\x00"+o.root+"\x00"+s.id)
	defer reap.untrack("c", o.bin+"\x00"+o.root+"\x00"+s.id)
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start %s: %w", o.bin, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		_ = o.rt("kill", s.id, "KILL").Run()
		select {
		case werr = <-waited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			werr = <-waited
		}
		_ = o.rt("delete", "--force", s.id).Run()
		return -1, ctx.Err()
	}
	// 'run' in the foreground deletes the container when it exits.
	if werr == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal()), &ExitError{Code: 128 + int(st.Signal())}
		}
		return ee.ExitCode(), &ExitError{Code: ee.ExitCode()}
	}
	return -1, werr
}

func (o *ociLauncher) config(s *launchSpec, readonly bool) *specs.Spec {
	cwd := s.img.Config.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	caps := append([]string(nil), defaultCaps...)
	proc := &specs.Process{
		Args: s.argv, Env: s.env, Cwd: cwd,
		User:         specs.User{UID: s.uid, GID: s.gid, AdditionalGids: s.groups},
		Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
	}
	if s.uid != 0 { // a non-root user starts with no capabilities, as in Kubernetes
		proc.Capabilities = &specs.LinuxCapabilities{Bounding: caps}
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}},
	}
	for _, f := range []string{"/etc/resolv.conf", "/etc/hosts"} {
		if _, err := os.Stat(f); err == nil {
			mounts = append(mounts, specs.Mount{Destination: f, Type: "bind", Source: f, Options: []string{"bind", "ro"}})
		}
	}
	ms := append([]mount(nil), s.mounts...)
	sort.SliceStable(ms, func(i, j int) bool { // parents before children
		return strings.Count(path.Clean(ms[i].dst), "/") < strings.Count(path.Clean(ms[j].dst), "/")
	})
	for _, m := range ms {
		opt := "rw"
		if m.ro {
			opt = "ro"
		}
		mounts = append(mounts, specs.Mount{Destination: m.dst, Type: "bind", Source: m.src, Options: []string{"rbind", opt}})
	}
	res := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if s.memory > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &s.memory}
	}
	if s.cpu > 0 {
		period := uint64(100000)
		quota := int64(s.cpu * float64(period))
		if quota < 1000 {
			quota = 1000
		}
		shares := uint64(s.cpu * 1024)
		res.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota, Shares: &shares}
	}
	return &specs.Spec{
		Version:  specs.Version,
		Process:  proc,
		Root:     &specs.Root{Path: "rootfs", Readonly: readonly},
		Hostname: s.hostname,
		Mounts:   mounts,
		Linux: &specs.Linux{
			Namespaces:    []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}},
			Resources:     res,
			CgroupsPath:   "branchml/" + s.id,
			MaskedPaths:   []string{"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

func unmountAll(p string) error {
	var last error
	for i := 0; i < 8; i++ {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
				return nil
			}
			last = err
			break
		}
	}
	return last
}

// chownTree gives a task's own directory to its user.
func chownTree(dir string, uid, gid int) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || (d.IsDir() && strings.HasPrefix(d.Name(), ".bundle")) {
			return filepath.SkipDir
		}
		_ = os.Lchown(p, uid, gid)
		return nil
	})
}

// fsGroup makes a volume writable for group gid as Kubernetes' fsGroup
// does (fsGroupChangePolicy OnRootMismatch): when the root's group differs,
// every file gets group gid and g+rw (directories g+rwxs).
func fsGroup(dir string, gid int) {
	fi, err := os.Stat(dir)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) == gid && fi.Mode()&0o020 != 0 {
		return
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		_ = os.Lchown(p, -1, gid)
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if info, err := d.Info(); err == nil {
			m := info.Mode()
			add := fs.FileMode(0o060)
			if d.IsDir() {
				add = 0o070 | fs.ModeSetgid
			}
			_ = os.Chmod(p, m&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky)|add)
		}
		return nil
	})
}

// processLauncher runs a task as a host process (runner.isolation:
// process): the command is looked up in the image's files, but runs with the
// host's loader and file system, in its own process group.
type processLauncher struct{}

func (processLauncher) launch(ctx context.Context, s *launchSpec) (int, error) {
	bin, err := resolveBinary(s.img.RootFS, s.img.Ref, s.env, s.argv[0])
	if err != nil {
		return -1, err
	}
	work := filepath.Join(s.taskDir, "work")
	if err := os.RemoveAll(work); err != nil {
		return -1, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return -1, err
	}
	env := append(append([]string{}, s.env...), "HOME="+work, "TMPDIR="+work, "BRANCHML_ROOTFS="+s.img.RootFS)
	cmd := exec.Command(bin, s.argv[1:]...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = dedupEnv(env), work, s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return -1, err
	}
	pg := fmt.Sprint(cmd.Process.Pid)
	reap.track("p", pg)
	defer reap.untrack("p", pg)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what the task left behind
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
		return -1, ctx.Err()
	}
	if werr == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		return ee.ExitCode(), &ExitError{Code: ee.ExitCode()}
	}
	return -1, werr
}

// resolveBinary maps a container command to a file in the image: an
// absolute path is taken below the root file system; a bare name is looked
// up in the image's PATH.
func resolveBinary(rootfs, ref string, env []string, name string) (string, error) {
	try := func(p string) (string, bool) {
		full := filepath.Join(rootfs, filepath.FromSlash(path.Clean("/"+p)))
		fi, err := os.Stat(full)
		return full, err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
	}
	if strings.Contains(name, "/") {
		if full, ok := try(name); ok {
			return full, nil
		}
		return "", fmt.Errorf("command %s is not an executable file in image %s", name, ref)
	}
	pathEnv := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, d := range strings.Split(pathEnv, ":") {
		if full, ok := try(path.Join(d, name)); ok {
			return full, nil
		}
	}
	return "", fmt.Errorf("command %s is not in image %s (PATH %s)", name, ref, pathEnv)
}
