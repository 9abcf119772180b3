package runner

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/branchml/branchml/agents/internal/imagecache"
)

// mount is a bind mount into a task's container.
type mount struct {
	src, dst string
	ro       bool
}

// launchSpec is everything a launcher needs to start one attempt.
type launchSpec struct {
	id       string
	argv     []string
	env      []string
	img      *imagecache.Image
	taskDir  string
	hostname string
	mounts   []mount
	uid, gid uint32
	groups   []uint32
	cpu      float64
	memory   int64
	deadline time.Duration
	log      io.Writer
	ignored  []string
	// fixOwner are the task's own directories, given to its user;
	// fixGroup are volumes the user must be able to write (Kubernetes'
	// fsGroup: group and g+rwX, when the volume root's group differs).
	fixOwner, fixGroup []string
}

// launcher starts a task attempt and waits for it.
type launcher interface {
	launch(ctx context.Context, s *launchSpec) (int, error)
}

// ExitError is a task process that exited non-zero.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("exited with code %d", e.Code) }

func (r *Runner) getLauncher() (launcher, error) {
	r.launchOnce.Do(func() {
		switch r.isolation {
		case IsolationProcess:
			r.warnOnce("isolation", "runner.isolation is process: tasks run as host processes with the host's loader and file system: no image root, namespaces, limits, user or mounts (a pvcMount's mountPath does not exist; parameters must name host paths)")
			r.launcher = processLauncher{}
		case IsolationContainer, "":
			var o *ociLauncher
			o, r.launchErr = newOCILauncher(r.runtime, r.logf)
			r.launcher = o
		default:
			r.launchErr = fmt.Errorf("runner isolation %q: use %q or %q", r.isolation, IsolationContainer, IsolationProcess)
		}
	})
	return r.launcher, r.launchErr
}

// containerID is a task attempt's stable container name prefix.
func containerID(runID, taskPath string) string {
	sum := sha256.Sum256([]byte(runID + "\x00" + taskPath))
	return "bml-" + hex.EncodeToString(sum[:])[:16]
}

// launchSpec builds the command line, environment, mounts, user and limits
// of a container task.
func (e *execution) launchSpec(ctx context.Context, t *TaskNode, img *imagecache.Image, io *taskIO, p, tdir string, env *dagEnv) (*launchSpec, error) {
	comp := t.Comp
	ctr := comp.Container
	cmd, args := ctr.GetCommand(), ctr.GetArgs()
	if len(cmd) == 0 {
		cmd = img.Config.Entrypoint
		if len(args) == 0 {
			args = img.Config.Cmd
		}
	}
	argv, err := io.resolveArgs(append(append([]string{}, cmd...), args...))
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("image %s has no entrypoint and the executor no command", ctr.GetImage())
	}
	s := &launchSpec{argv: argv, img: img, taskDir: tdir, hostname: hostnameOf(p)}
	kube := comp.Kube
	if kube == nil {
		kube = &KubeConfig{}
	}
	s.ignored = append(s.ignored, kube.Ignored...)
	if comp.Resources.Accelerator != "" {
		s.ignored = append(s.ignored, "accelerator "+comp.Resources.Accelerator)
	}
	res := comp.Resources
	if res.CPU, err = io.substitute(res.CPU); err != nil {
		return nil, err
	}
	if res.Memory, err = io.substitute(res.Memory); err != nil {
		return nil, err
	}
	if s.cpu, s.memory, err = res.quantities(); err != nil {
		return nil, err
	}
	s.deadline = kube.Deadline
	// Environment: the image's, the runner's, the executor's, then the platform's.
	envs := append(append([]string{}, img.Config.Env...), e.r.env...)
	for _, ev := range ctr.GetEnv() {
		v, err := io.substitute(ev.GetValue())
		if err != nil {
			return nil, err
		}
		envs = append(envs, ev.GetName()+"="+v)
	}
	resolveName := func(ref NameRef) (string, error) {
		if ref.Param == nil {
			return ref.Constant, nil
		}
		v, ok, err := e.resolveParam(ref.Param, env.sc, env.results, false)
		if err != nil {
			return "", err
		}
		s, isStr := v.(string)
		if !ok || !isStr || s == "" {
			return "", fmt.Errorf("the name resolves to %s, not a non-empty string", describe(v))
		}
		return s, nil
	}
	for _, group := range []struct {
		kind string
		list []EnvFrom
	}{{"secret", kube.SecretEnv}, {"configmap", kube.ConfigMapEnv}} {
		for _, ef := range group.list {
			name, err := resolveName(ef.Name)
			if err != nil {
				return nil, fmt.Errorf("%s name: %w", group.kind, err)
			}
			for _, kv := range ef.Keys {
				v, err := e.r.localObject(group.kind, name, kv[0])
				if err != nil {
					if ef.Optional {
						continue
					}
					return nil, err
				}
				envs = append(envs, kv[1]+"="+v)
			}
		}
	}
	for _, f := range kube.FieldPathEnv {
		v := map[string]string{"metadata.name": s.hostname, "metadata.namespace": "local", "status.podIP": "127.0.0.1",
			"spec.nodeName": hostnameOrLocal(), "spec.serviceAccountName": "default", "status.hostIP": "127.0.0.1"}[f[1]]
		envs = append(envs, f[0]+"="+v)
	}
	// Mounts: the task's own directory (outputs, executor output, /tmp),
	// input artifacts read-only, volumes, secrets, empty dirs.
	tmp := filepath.Join(tdir, "tmp")
	if err := os.MkdirAll(tmp, 0o777); err != nil {
		return nil, err
	}
	_ = os.Chmod(tmp, 0o1777)
	s.mounts = append(s.mounts, mount{src: tdir, dst: tdir}, mount{src: tmp, dst: "/tmp"})
	s.fixOwner = append(s.fixOwner, tdir)
	seen := map[string]bool{}
	for _, list := range io.inArtifacts {
		for _, a := range list {
			if pth := a.Path(); !seen[pth] && filepath.IsAbs(pth) {
				seen[pth] = true
				if _, err := os.Stat(pth); err == nil {
					s.mounts = append(s.mounts, mount{src: pth, dst: pth, ro: true})
				}
			}
		}
	}
	for _, pv := range kube.PVCs {
		name, err := resolveName(pv.Name)
		if err != nil {
			return nil, fmt.Errorf("pvcMount %s: PVC name: %w", pv.MountPath, err)
		}
		if e.r.volumes == nil {
			return nil, fmt.Errorf("pvcMount %s of PVC %s: the runner has no storage backend for volumes", pv.MountPath, name)
		}
		dir, err := e.r.volumes.VolumePath(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("pvcMount %s of PVC %s: %w", pv.MountPath, name, err)
		}
		src := dir
		if pv.SubPath != "" {
			src = filepath.Join(dir, filepath.FromSlash(path.Clean("/"+pv.SubPath)))
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, err
			}
		}
		s.mounts = append(s.mounts, mount{src: src, dst: pv.MountPath})
		if dir != pv.MountPath {
			// Parameters computed for the host (the train stage's local
			// volume paths) keep naming the same files.
			s.mounts = append(s.mounts, mount{src: dir, dst: dir})
		}
		s.fixGroup = append(s.fixGroup, dir)
	}
	for _, group := range []struct {
		kind string
		list []VolumeFrom
	}{{"secret", kube.SecretVolumes}, {"configmap", kube.ConfigMapVolumes}} {
		for _, vf := range group.list {
			name, err := resolveName(vf.Name)
			if err != nil {
				return nil, err
			}
			dir := filepath.Join(e.r.secretsDir, group.kind+"s", name)
			if _, err := os.Stat(dir); err != nil || e.r.secretsDir == "" {
				if vf.Optional {
					continue
				}
				return nil, fmt.Errorf("%s %s for %s: no directory %s (put one file per key there)", group.kind, name, vf.MountPath, dir)
			}
			s.mounts = append(s.mounts, mount{src: dir, dst: vf.MountPath, ro: true})
		}
	}
	for i, mp := range kube.EmptyDirs {
		d := filepath.Join(tdir, "emptydir", strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o777); err != nil {
			return nil, err
		}
		s.mounts = append(s.mounts, mount{src: d, dst: mp})
		s.fixOwner = append(s.fixOwner, d)
	}
	// The user: the image's USER, or the platform's securityContext.
	if s.uid, s.gid, s.groups, err = imageUser(img); err != nil {
		return nil, err
	}
	if kube.RunAsUser != nil {
		s.uid = uint32(*kube.RunAsUser)
	}
	if kube.RunAsGroup != nil {
		s.gid = uint32(*kube.RunAsGroup)
	}
	s.env = dedupEnv(envs)
	s.argv = expandEnvRefs(s.argv, s.env)
	return s, nil
}

// expandEnvRefs expands $(NAME) in arguments with the container's
// environment as Kubernetes does for command and args ($$ is a literal $;
// an unknown $(NAME) stays as it is).
func expandEnvRefs(args, env []string) []string {
	vals := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vals[k] = v
	}
	out := make([]string, len(args))
	for i, a := range args {
		if !strings.Contains(a, "$") {
			out[i] = a
			continue
		}
		var b strings.Builder
		for j := 0; j < len(a); j++ {
			if a[j] != '$' || j+1 >= len(a) {
				b.WriteByte(a[j])
				continue
			}
			if a[j+1] == '$' {
				b.WriteByte('$')
				j++
				continue
			}
			if a[j+1] == '(' {
				if end := strings.IndexByte(a[j+2:], ')'); end >= 0 {
					name := a[j+2 : j+2+end]
					if v, ok := vals[name]; ok {
						b.WriteString(v)
						j += end + 2
						continue
					}
				}
			}
			b.WriteByte(a[j])
		}
		out[i] = b.String()
	}
	return out
}

func hostnameOf(p string) string {
	h := strings.NewReplacer("/", "-", "_", "-", ".", "-").Replace(p)
	if len(h) > 63 {
		h = h[:63]
	}
	return strings.Trim(h, "-")
}

func hostnameOrLocal() string {
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "localhost"
}

// dedupEnv keeps the last value of each NAME.
func dedupEnv(env []string) []string {
	idx := map[string]int{}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// localObject reads key of a secret or config map for the task: the file
// <secretsDir>/<kind>s/<name>/<key>, else the environment variable
// BRANCHML_<KIND>_<NAME>_<KEY> (upper case, - and . as _).
func (r *Runner) localObject(kind, name, key string) (string, error) {
	var where []string
	if r.secretsDir != "" {
		f := filepath.Join(r.secretsDir, kind+"s", name, key)
		if b, err := os.ReadFile(f); err == nil {
			return string(b), nil
		}
		where = append(where, f)
	}
	v := "BRANCHML_" + strings.ToUpper(kind) + "_" + envName(name) + "_" + envName(key)
	if s, ok := os.LookupEnv(v); ok {
		return s, nil
	}
	where = append(where, "$"+v)
	return "", fmt.Errorf("%s %s has no key %s locally (looked in %s)", kind, name, key, strings.Join(where, " and "))
}

func envName(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(s))
}

// imageUser resolves the image's USER ("", "uid", "uid:gid", "name",
// "name:group") against its /etc/passwd and /etc/group.
func imageUser(img *imagecache.Image) (uid, gid uint32, groups []uint32, err error) {
	u := img.Config.User
	if u == "" {
		return 0, 0, nil, nil
	}
	user, group, hasGroup := strings.Cut(u, ":")
	passwd := readColon(filepath.Join(img.RootFS, "etc", "passwd"))
	groupsFile := readColon(filepath.Join(img.RootFS, "etc", "group"))
	name := ""
	if n, perr := strconv.ParseUint(user, 10, 32); perr == nil {
		uid = uint32(n)
		for _, f := range passwd {
			if len(f) > 3 && f[2] == user {
				name = f[0]
				if g, e := strconv.ParseUint(f[3], 10, 32); e == nil {
					gid = uint32(g)
				}
			}
		}
	} else {
		found := false
		for _, f := range passwd {
			if len(f) > 3 && f[0] == user {
				n, _ := strconv.ParseUint(f[2], 10, 32)
				g, _ := strconv.ParseUint(f[3], 10, 32)
				uid, gid, name, found = uint32(n), uint32(g), user, true
			}
		}
		if !found {
			return 0, 0, nil, fmt.Errorf("image %s: USER %q is not in its /etc/passwd", img.Ref, user)
		}
	}
	if hasGroup {
		if n, perr := strconv.ParseUint(group, 10, 32); perr == nil {
			gid = uint32(n)
		} else {
			found := false
			for _, f := range groupsFile {
				if len(f) > 2 && f[0] == group {
					n, _ := strconv.ParseUint(f[2], 10, 32)
					gid, found = uint32(n), true
				}
			}
			if !found {
				return 0, 0, nil, fmt.Errorf("image %s: group %q of USER %q is not in its /etc/group", img.Ref, group, u)
			}
		}
	}
	if name != "" {
		for _, f := range groupsFile {
			if len(f) > 3 {
				for _, m := range strings.Split(f[3], ",") {
					if m == name {
						if n, e := strconv.ParseUint(f[2], 10, 32); e == nil && uint32(n) != gid {
							groups = append(groups, uint32(n))
						}
					}
				}
			}
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i] < groups[j] })
	return uid, gid, groups, nil
}

func readColon(p string) [][]string {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
