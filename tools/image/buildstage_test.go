package image

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dryRunResult is the part of `branchml-build run --dry-run -o json` the
// test reads (agents/internal/agent.Result with buildcmd.Outputs).
type dryRunResult struct {
	Summary string `json:"summary"`
	DryRun  bool   `json:"dryRun"`
	Outputs struct {
		Components map[string]struct {
			Name       string   `json:"name"`
			SourceHash string   `json:"sourceHash"`
			Action     string   `json:"action"`
			Reason     string   `json:"reason"`
			Platforms  []string `json:"platforms"`
			Repository string   `json:"repository"`
			Image      string   `json:"image"`
		} `json:"components"`
		Registry    string `json:"registry"`
		LockChanged bool   `json:"lockChanged"`
	} `json:"outputs"`
}

// TestImageRunsTheBuildStageOnTheExample builds the agents image as `make
// image` does (scripts/image.sh: mmdebstrap's Debian root file system, the
// pinned Go toolchain module, the agents built here for linux/amd64) and
// runs `branchml-build run --dry-run` on a copy of examples/djia30 from its
// root file system: chroot as the image's user, with the image's
// environment and working directory, /proc mounted, no network but
// loopback. The example's modules come from a file:// GOPROXY (a pod
// reaches the Go module proxy instead). The plan must be the same as the
// one the same agents make on this host.
//
// The root file system and the toolchain are read from scripts/image.sh's
// cache ($XDG_CACHE_HOME or ~/.cache, /branchml/image; or BRANCHML_IMAGE_CACHE), which `make
// image-cache` fills before the tests; the test downloads nothing and is
// skipped (failed under BRANCHML_REQUIRE_INTEGRATION) when they are missing.
func TestImageRunsTheBuildStageOnTheExample(t *testing.T) {
	need(t, "buildah", "mmdebstrap", "unshare", "ip", "chroot", "git", "go")
	repo := root(t)
	work := t.TempDir()
	os.Chmod(work, 0o755)

	// Where the time goes.
	start := time.Now()
	phase := func(what string) { t.Logf("%s: %s", what, time.Since(start).Round(time.Second)); start = time.Now() }

	// The agents, every binary of ./agents/cmd, as the release builds them.
	bin := filepath.Join(work, "bin")
	run(t, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS="}, "go", "build", "-C", repo, "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X github.com/branchml/branchml/agents/cli.Version="+version, "-o", bin+"/", "./agents/cmd/...")
	binaries := map[string][]byte{}
	entries, err := os.ReadDir(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(bin, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		binaries[e.Name()] = data
	}
	if names := sortedKeys(binaries); strings.Join(names, " ") != "branchml branchml-build branchml-deploy branchml-pipeline branchml-snapshot branchml-train" {
		t.Fatalf("agents built: %v", names)
	}
	agents := filepath.Join(work, "agents.tar.gz")
	writeTar(t, agents, binaries, true)
	phase("agents built")

	// The root file system and the toolchain come from the cache that `make
	// image-cache` fills (make test runs it first): the test itself
	// downloads nothing (image.sh runs with OFFLINE=1).
	cache := os.Getenv("BRANCHML_IMAGE_CACHE")
	if cache == "" {
		dir, err := os.UserCacheDir() // $XDG_CACHE_HOME, else ~/.cache: scripts/image.sh's default
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(dir, "branchml", "image")
	}
	for _, f := range []string{"rootfs-bookworm-amd64.tar", goVersion(t, repo) + ".linux-amd64.tar"} {
		if _, err := os.Stat(filepath.Join(cache, f)); err != nil {
			if os.Getenv("BRANCHML_REQUIRE_INTEGRATION") != "" {
				t.Fatalf("%s is not in %s: run 'make image-cache' first (make test does)", f, cache)
			}
			t.Skipf("%s is not in %s: 'make image-cache' downloads it (make test runs it)", f, cache)
		}
	}
	img := "branchml/agents-buildtest:" + version
	env := []string{"VERSION=" + version, "IMAGE=" + img, "AGENTS=" + agents, "CACHE=" + cache, "SOURCE_DATE_EPOCH=1764547200",
		"ROOTFS=", "GO_VERSION=", "PUSH=", "OFFLINE=1", "FETCH_ONLY="}
	run(t, env, "sh", filepath.Join(repo, "scripts/image.sh"))
	phase("image built (scripts/image.sh)")
	b := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(run(t, nil, "buildah", append([]string{"--root", cache + "/storage", "--runroot", cache + "/run", "--storage-driver", "vfs"}, args...)...))
	}
	t.Cleanup(func() {
		exec.Command("buildah", "--root", cache+"/storage", "--runroot", cache+"/run", "--storage-driver", "vfs", "rmi", "-f", img).Run()
	})

	var inspect struct {
		OCIv1 struct {
			Config struct {
				User       string
				Env        []string
				WorkingDir string
			} `json:"config"`
		}
	}
	if err := json.Unmarshal([]byte(b("inspect", "--type", "image", img)), &inspect); err != nil {
		t.Fatal(err)
	}
	cfg := inspect.OCIv1.Config
	if cfg.User != "10001:10001" || cfg.WorkingDir != "/home/branchml" {
		t.Fatalf("image config: %+v", cfg)
	}
	ctr := b("from", "--quiet", "--pull=never", img)
	t.Cleanup(func() {
		exec.Command("buildah", "--root", cache+"/storage", "--runroot", cache+"/run", "--storage-driver", "vfs", "rm", ctr).Run()
	})
	fs := b("mount", ctr)

	// The workspace: the example's files as a git checkout, the local
	// forge's remote in the default state dir with the stage branches, and
	// the modules the example needs as a file:// module proxy.
	const home = "/home/branchml"
	ws := filepath.Join(fs, home, "djia30")
	copyExample(t, repo, ws)
	git := func(dir string, args ...string) {
		t.Helper()
		run(t, []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@localhost", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@localhost",
			"GIT_AUTHOR_DATE=2025-12-01T00:00:00Z", "GIT_COMMITTER_DATE=2025-12-01T00:00:00Z", "GIT_CONFIG_GLOBAL=/dev/null"}, "git", append([]string{"-C", dir}, args...)...)
	}
	git(ws, "init", "-q", "--initial-branch=main")
	git(ws, "add", "-A")
	git(ws, "commit", "-q", "-m", "djia30")
	remote := filepath.Join(fs, home, ".local/state/branchml/forge/djia30.git")
	os.MkdirAll(filepath.Dir(remote), 0o755)
	git(ws, "init", "-q", "--bare", "--initial-branch=main", remote)
	for _, br := range []string{"main", "build-components", "kf-pipeline", "training", "deploy-model"} {
		git(ws, "push", "-q", remote, "HEAD:refs/heads/"+br)
	}
	proxy := filepath.Join(fs, "tmp/goproxy")
	modcache := filepath.Join(work, "modcache")
	hostCache := strings.TrimSpace(run(t, nil, "go", "env", "GOMODCACHE"))
	hostProxy := strings.TrimSpace(run(t, nil, "go", "env", "GOPROXY"))
	list := exec.Command("go", "list", "-deps", "-test", "./...")
	list.Dir = ws
	list.Env = append(os.Environ(), "GOMODCACHE="+modcache, "GOFLAGS=-modcacherw", "GOPROXY=file://"+hostCache+"/cache/download,"+hostProxy)
	if out, err := list.CombinedOutput(); err != nil {
		t.Fatalf("go list of the example on the host: %v\n%s", err, out)
	}
	run(t, nil, "cp", "-a", modcache+"/cache/download", proxy)
	run(t, nil, "chown", "-R", "10001:10001", filepath.Join(fs, home), proxy)

	// The same agents on this host plan the same: a reference for the hashes.
	hostWS := filepath.Join(work, "host")
	run(t, nil, "cp", "-a", ws, hostWS)
	hostHome := filepath.Join(work, "hosthome")
	os.MkdirAll(filepath.Join(hostHome, ".local/state/branchml/forge"), 0o755)
	run(t, nil, "cp", "-a", remote, filepath.Join(hostHome, ".local/state/branchml/forge/djia30.git"))
	hostRun := exec.Command(filepath.Join(work, "hostbin", "branchml-build"), "run", "--workspace", hostWS, "--dry-run", "-o", "json")
	run(t, []string{"GOFLAGS="}, "go", "build", "-C", repo, "-o", filepath.Join(work, "hostbin")+"/", "./agents/cmd/branchml-build")
	hostRun.Dir = hostWS
	hostRun.Env = append(os.Environ(), "HOME="+hostHome, "XDG_STATE_HOME=", "GOMODCACHE="+modcache, "GOFLAGS=-mod=mod", "GOPROXY=off")
	hostOut, err := hostRun.Output()
	if err != nil {
		t.Fatalf("host dry run: %v\n%s", err, hostOut)
	}
	phase("root file system and workspace ready")

	// In the image: its user, environment and working directory; a new
	// network namespace (only loopback, brought up), pid and mount
	// namespace with /proc; everything in it is killed when the test dies
	// (Pdeathsig on unshare, --kill-child).
	inImage := func(args ...string) (string, string, error) {
		t.Helper()
		envs := append(append([]string{}, cfg.Env...), "GOPROXY=file:///tmp/goproxy")
		script := `ip link set lo up && exec chroot --userspec="$USERSPEC" "$ROOT" /usr/bin/env -i ` + shellQuote(envs) + ` /bin/sh -c 'cd "$0" && exec "$@"' ` + shellQuote(append([]string{cfg.WorkingDir}, args...))
		cmd := exec.Command("unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc="+filepath.Join(fs, "proc"), "sh", "-c", script)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "USERSPEC=" + cfg.User, "ROOT=" + fs}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	for args, want := range map[string]string{
		"branchml version": "branchml " + version + "\n",
		"go version":       "go version go1.26.8 linux/amd64\n",
		"id":               "uid=10001(branchml) gid=10001(branchml) groups=10001(branchml)\n",
	} {
		if out, logs, err := inImage(strings.Fields(args)...); err != nil || out != want {
			t.Errorf("%s in the image: %q, %v, want %q\n%s", args, out, err, want, logs)
		}
	}
	out, logs, err := inImage("branchml-build", "run", "--workspace", home+"/djia30", "--dry-run", "-o", "json")
	if err != nil {
		t.Fatalf("branchml-build run --dry-run in the image: %v\n%s\n%s", err, out, logs)
	}
	phase("dry run in the image")
	t.Logf("in the image:\n%s\n%s", out, logs)
	var got, want dryRunResult
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := json.Unmarshal(hostOut, &want); err != nil {
		t.Fatalf("%v: %s", err, hostOut)
	}
	if got.Summary != "would build 3 of 3 components, 0 unchanged" || !got.DryRun || !got.Outputs.LockChanged ||
		!strings.HasPrefix(got.Outputs.Registry, "127.0.0.1:") {
		t.Errorf("plan in the image: %s", out)
	}
	var names []string
	for n, c := range got.Outputs.Components {
		names = append(names, n)
		if c.Action != "would-build" || c.Reason != "new component: not in the lock" || !reflect.DeepEqual(c.Platforms, []string{"linux/amd64"}) ||
			c.Repository != got.Outputs.Registry+"/djia30/"+n || c.Image != "" ||
			!strings.HasPrefix(c.SourceHash, "sha256:") || c.SourceHash != want.Outputs.Components[n].SourceHash {
			t.Errorf("%s in the image: %+v, on the host: %+v", n, c, want.Outputs.Components[n])
		}
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "prepare-data serve train" {
		t.Errorf("components planned: %v", names)
	}
	reg := got.Outputs.Registry
	for _, line := range []string{`msg="no components lock on build-components yet: every component is new"`,
		`msg="prepare-data: would build: new component: not in the lock (image ` + reg + `/djia30/prepare-data)"`,
		`msg="train: would build: new component: not in the lock (image ` + reg + `/djia30/train)"`,
		`msg="serve: would build: new component: not in the lock (image ` + reg + `/djia30/serve)"`} {
		if !strings.Contains(logs, line) {
			t.Errorf("log lacks %q:\n%s", line, logs)
		}
	}
}

// copyExample copies the files git knows of examples/djia30 (tracked or
// untracked but not ignored) to dir.
func copyExample(t *testing.T, repo, dir string) {
	t.Helper()
	files := strings.Split(strings.TrimSpace(run(t, nil, "git", "-C", filepath.Join(repo, "examples/djia30"), "ls-files", "-co", "--exclude-standard")), "\n")
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repo, "examples/djia30", f))
		if err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the work tree
			}
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// shellQuote quotes each word for sh.
func shellQuote(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// goVersion is the Go toolchain pinned in resources/branchml/agents.sha256
// ("go1.26.8"), the one scripts/image.sh puts in the image.
func goVersion(t *testing.T, repo string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, "resources", "branchml", "agents.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "# go: "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("resources/branchml/agents.sha256 names no go version")
	return ""
}
