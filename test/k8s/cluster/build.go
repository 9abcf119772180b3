package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// KubeVersion is the Kubernetes release the control plane and kubelet are
// built from (test/k8s/build/gen.sh pins it with the CSI components).
const KubeVersion = "v1.34.4"

// Binaries are the executables of the build module, in build order's
// place: what Start runs (kubelet only with Options.Kubelet).
var Binaries = []string{
	"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
	"snapshot-controller", "csi-snapshotter", "csi-provisioner", "csi-hostpath",
	"metrics-server",
}

// SourceDir returns the branchml checkout holding test/k8s/build: dir or,
// when dir is "", the nearest parent of the working directory that has it.
func SourceDir(dir string) (string, error) {
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "test", "k8s", "build", "go.mod")); err != nil {
			return "", fmt.Errorf("%s is not a branchml checkout (no test/k8s/build/go.mod)", dir)
		}
		return dir, nil
	}
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "test", "k8s", "build", "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("test/k8s/build not found above the working directory: run from the branchml checkout")
		}
		d = p
	}
}

// CacheRoot is where built binaries are kept: $BRANCHML_K8S_CACHE, else
// $XDG_CACHE_HOME/branchml/k8s, else ~/.cache/branchml/k8s.
func CacheRoot() string {
	if d := os.Getenv("BRANCHML_K8S_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "branchml", "k8s")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "branchml", "k8s")
}

// Version is the cache key of the build module in source: KubeVersion and
// the first 12 hex digits of the SHA-256 of its go.mod, go.sum and the
// driver's sources, so any change of a pin or of the driver rebuilds.
func Version(source string) (string, error) {
	dir := filepath.Join(source, "test", "k8s", "build")
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n := d.Name(); !d.IsDir() && (n == "go.mod" || n == "go.sum" || strings.HasSuffix(n, ".go")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(dir, f)
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(raw))
		h.Write(raw)
	}
	return KubeVersion + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// BinDir returns the directory holding every binary of Binaries for the
// build module in source, building them first when any is missing: one
// `go build -trimpath -ldflags=-s -w` of all of them (they share most
// packages), into a temporary directory renamed into place, so a build
// interrupted half-way leaves nothing that looks complete; one build per
// version at a time (a flock on <cache>/<version>/build.lock: another
// process waits, then takes its result). progress gets one line before and
// after a build (nil: discarded).
func BinDir(ctx context.Context, source string, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	v, err := Version(source)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(CacheRoot(), v, "bin")
	if complete(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	// One build per version at a time on this machine (a build started in
	// the background by CI, a test binary, `make k8s-build`): the others
	// wait for it and use what it built.
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(bin), "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(progress, "waiting for another build of the test bed's binaries into %s\n", bin)
		if err := flockCtx(ctx, lock); err != nil {
			return "", fmt.Errorf("wait for the build of %s by another process: %w", bin, err)
		}
	}
	if complete(bin) {
		return bin, nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(bin), "bin.tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(progress, "building Kubernetes %s and the CSI components into %s (once per machine; about 10-20 minutes on 2 cores)\n", KubeVersion, bin)
	t0 := time.Now()
	// One go build per build module: the Kubernetes one (with the
	// snapshotter and the driver), external-provisioner's, metrics-server's.
	for _, b := range []struct{ dir, what string }{{".", "tool ./csi-hostpath"}, {"provisioner", "tool"}, {"metrics-server", "tool"}} {
		args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", tmp + "/"}, strings.Fields(b.what)...)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = filepath.Join(source, "test", "k8s", "build", b.dir)
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "CGO_ENABLED=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("build the test bed's binaries (cd test/k8s/build/%s && go %s): %w\n%s", b.dir, strings.Join(args, " "), err, out.String())
		}
	}
	if !complete(tmp) {
		return "", fmt.Errorf("go build in test/k8s/build did not produce all of %s", strings.Join(Binaries, ", "))
	}
	os.RemoveAll(bin)
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "built in %s\n", time.Since(t0).Round(time.Second))
	return bin, nil
}

// flockCtx takes an exclusive flock on f, polling until ctx ends.
func flockCtx(ctx context.Context, f *os.File) error {
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func complete(dir string) bool {
	for _, b := range Binaries {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}
