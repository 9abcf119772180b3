package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const version = "v0.0.0-imagetest"

func need(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("building an image needs root (buildah chroot isolation, chroot)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian: apt-get install buildah docker-registry skopeo umoci; .ci/run installs them)", tool)
		}
	}
}

func root(t *testing.T) string {
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeTar writes files (path -> content; a path ending in "/" is a
// directory) as a tar; gz: gzip-compressed, every file executable (an agents archive).
func writeTar(t *testing.T, path string, files map[string][]byte, gz bool) {
	t.Helper()
	var buf bytes.Buffer
	var w *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = tar.NewWriter(zw)
	} else {
		w = tar.NewWriter(&buf)
	}
	for _, name := range sortedKeys(files) {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if strings.HasSuffix(name, "/") {
			h = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)}
		} else if strings.Contains(name, "bin/") || gz {
			h.Mode = 0o755
		}
		if name == "home/branchml/" {
			h.Uid, h.Gid = 10001, 10001
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		w.Write(files[name])
	}
	w.Close()
	if zw != nil {
		zw.Close()
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// startRegistry runs Debian's docker-registry on a free 127.0.0.1 port and
// returns its host:port; it is stopped (its process group killed) at cleanup.
func startRegistry(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s/data\nhttp:\n  addr: %s\n", dir, addr)), 0o644)
	cmd := exec.Command("docker-registry", "serve", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	for i := 0; i < 100; i++ {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("docker-registry did not answer on %s:\n%s", addr, logs.String())
	return ""
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute) // a bound, not a goal: a cold go build of the agents takes minutes on 2 cores
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func TestImageOnAMinimalRootfsRunsTheAgents(t *testing.T) {
	need(t, "buildah", "docker-registry", "skopeo", "umoci", "chroot", "go")
	repo := root(t)
	work := t.TempDir()

	// The agents archive: one static binary is enough to prove the assembly.
	bin := filepath.Join(work, "bin")
	run(t, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}, "go", "build", "-C", repo, "-trimpath",
		"-ldflags", "-s -w -X github.com/branchml/branchml/agents/cli.Version="+version, "-o", bin+"/", "./agents/cmd/branchml")
	data, err := os.ReadFile(filepath.Join(bin, "branchml"))
	if err != nil {
		t.Fatal(err)
	}
	agents := filepath.Join(work, "agents.tar.gz")
	writeTar(t, agents, map[string][]byte{"branchml": data}, true)
	rootfs := filepath.Join(work, "rootfs.tar")
	writeTar(t, rootfs, map[string][]byte{
		"etc/":           nil,
		"etc/passwd":     []byte("root:x:0:0:root:/root:/bin/sh\nbranchml:x:10001:10001::/home/branchml:/bin/sh\n"),
		"etc/group":      []byte("root:x:0:\nbranchml:x:10001:\n"),
		"home/":          nil,
		"home/branchml/": nil,
		"tmp/":           nil,
		"usr/":           nil,
		"usr/local/":     nil,
		"usr/local/bin/": nil,
	}, false)

	reg := startRegistry(t)
	ref := reg + "/branchml/agents:" + version
	cache := filepath.Join(work, "cache")
	env := []string{"VERSION=" + version, "IMAGE=branchml/agents-test:" + version, "ROOTFS=" + rootfs, "AGENTS=" + agents,
		"GO_VERSION=none", "CACHE=" + cache, "SOURCE_DATE_EPOCH=1764547200", "PUSH=" + ref, "TLS_VERIFY=false"}
	out := strings.Fields(run(t, env, "sh", filepath.Join(repo, "scripts/image.sh")))
	if len(out) != 2 || !strings.HasPrefix(out[1], ref+"@sha256:") {
		t.Fatalf("image.sh printed %q, want the image ID and %s@sha256:…", out, ref)
	}
	id, pushed := out[0], out[1]

	// Reproducible: the same inputs give the same image.
	again := strings.Fields(run(t, env, "sh", filepath.Join(repo, "scripts/image.sh")))
	if len(again) != 2 || again[0] != id || again[1] != pushed {
		t.Fatalf("second build: %q, want %q %q", again, id, pushed)
	}

	// The image's configuration, as the registry serves it.
	var cfg struct {
		Created string `json:"created"`
		Config  struct {
			User       string
			Env        []string
			WorkingDir string
			Labels     map[string]string
			Cmd        []string
		} `json:"config"`
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	}
	if err := json.Unmarshal([]byte(run(t, nil, "skopeo", "inspect", "--tls-verify=false", "--config", "docker://"+ref)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "10001:10001" || cfg.Config.WorkingDir != "/home/branchml" || cfg.OS != "linux" || cfg.Architecture != "amd64" ||
		cfg.Created != "2025-12-01T00:00:00Z" || cfg.Config.Labels["org.opencontainers.image.version"] != version ||
		strings.Join(cfg.Config.Cmd, " ") != "branchml --help" {
		t.Errorf("config: %+v", cfg)
	}
	if !contains(cfg.Config.Env, "PATH=/usr/local/go/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") || !contains(cfg.Config.Env, "HOME=/home/branchml") {
		t.Errorf("env: %v", cfg.Config.Env)
	}

	// Pulled back and unpacked, the agents run from its root file system.
	layout := filepath.Join(work, "oci")
	run(t, nil, "skopeo", "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":test")
	fs := filepath.Join(work, "unpacked")
	// The user of the image (10001) must reach the root file system.
	os.Chmod(work, 0o755)
	os.Chmod(filepath.Dir(work), 0o755)
	run(t, nil, "umoci", "raw", "unpack", "--image", layout+":test", fs)
	got := run(t, nil, "chroot", "--userspec=10001:10001", fs, "/usr/local/bin/branchml", "version")
	if got != "branchml "+version+"\n" {
		t.Fatalf("branchml version in the image: %q", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
