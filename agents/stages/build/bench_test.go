package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/stages/build/changes"
	"github.com/branchml/branchml/agents/stages/build/imagebuild"
)

// exampleDir is the worked example, relative to this package.
const exampleDir = "../../../examples/djia30"

func exampleComponents(b *testing.B) (string, []config.Component) {
	b.Helper()
	root, _ := filepath.Abs(exampleDir)
	cfg, err := config.Load(filepath.Join(root, "branchml.yaml"), config.WithEnviron(nil))
	if err != nil {
		b.Skipf("examples/djia30 config: %v", err)
	}
	return root, cfg.Components
}

// BenchmarkStage compares, in one run on examples/djia30, the whole stage
// (`branchml-build run`: hash, push check, the tests of every package the
// components are built from, the builds, the images, the pushes to the
// embedded registry on loopback and the lock's write-back, from a fresh
// forge and registry) with a plain `go build` of the same three components
// (one go command each, the images' flags). Rounds alternate the two
// sides, so that both see the same load. "cold": each side gets an empty
// GOCACHE (both compile the standard library and gonum); "warm": the
// GOCACHE that a first run of each filled. It reports the median time of
// each side (s/round), the median ratio of the stage's time to go build's
// (ratio) and of their CPU times (cpu-ratio: what the stage costs on a
// machine whose cores are all busy).
//
//	go test -timeout 40m -run '^$' -bench BenchmarkStage -benchtime 3x ./agents/stages/build/
//
// (a cold round is about a minute a side on 2 busy cores: go test's default
// 10m timeout is too short for the probe round and three of each).
//
// BRANCHML_BENCH_PLATFORMS=linux/amd64,linux/arm64 measures the stage
// building a multi-platform index instead (the baseline stays one go build
// per component for the agent's platform).
func BenchmarkStage(b *testing.B) {
	root, comps := exampleComponents(b)
	var platforms []string
	if v := os.Getenv("BRANCHML_BENCH_PLATFORMS"); v != "" {
		platforms = strings.Split(v, ",")
	}
	ctx := context.Background()
	var pkgs []string
	for _, c := range comps {
		pkgs = append(pkgs, "./"+c.Path)
	}
	// Each side returns its wall time and its CPU time (user+system, of
	// this process and of the commands it ran), which the load of other
	// work on the machine does not inflate.
	goBuild := func(b *testing.B, cache string) (time.Duration, time.Duration) {
		out := b.TempDir()
		start := time.Now()
		var cpu time.Duration
		for i, p := range pkgs {
			cmd := exec.Command("go", append(append([]string{"build"}, imagebuild.GoFlags...), "-ldflags="+imagebuild.DefaultLdflags, "-o", filepath.Join(out, strconv.Itoa(i)), p)...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOCACHE="+cache)
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("go build %s: %v\n%s", p, err, o)
			}
			cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		return time.Since(start), cpu
	}
	stage := func(b *testing.B, cache string) (time.Duration, time.Duration) {
		cfg, err := config.Load(filepath.Join(root, "branchml.yaml"), config.WithEnviron(nil))
		if err != nil {
			b.Fatal(err)
		}
		f, err := gitremote.Init(ctx, filepath.Join(b.TempDir(), "ml.git"), map[string][]byte{"README.md": []byte("ml\n")}, []string{"main", "build-components"})
		if err != nil {
			b.Fatal(err)
		}
		regDir := b.TempDir()
		s, err := registry.Start(regDir, "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		reg, _ := registry.NewLocal(s.Addr, regDir, registry.WithKeychain(authn.NewMultiKeychain(), "none"))
		b.Setenv("GOCACHE", cache)
		o := Options{Config: cfg, Forge: f, Registry: reg, Workspace: root, Commit: "1111111111111111111111111111111111111111",
			JUnitPath: filepath.Join(b.TempDir(), "junit.xml"), Platforms: platforms}
		cpu0 := cpuTime()
		start := time.Now()
		res, err := Run(ctx, o)
		d := time.Since(start)
		cpu := cpuTime() - cpu0
		if err != nil {
			b.Fatal(err)
		}
		if built, _ := res.Counts(); built != len(comps) {
			b.Fatalf("built %d of %d components", built, len(comps))
		}
		return d, cpu
	}
	median := func(xs []float64) float64 {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	warmBase, warmStage := b.TempDir(), b.TempDir()
	goBuild(b, warmBase) // fill the warm caches, untimed
	stage(b, warmStage)
	for _, mode := range []string{"cold", "warm"} {
		b.Run(mode, func(b *testing.B) {
			var base, st, ratio, cpuRatio []float64
			for i := 0; i < b.N; i++ {
				bc, sc := warmBase, warmStage
				if mode == "cold" {
					bc, sc = b.TempDir(), b.TempDir()
				}
				// Alternate which side goes first.
				var db, ds, cb, cs time.Duration
				if i%2 == 0 {
					db, cb = goBuild(b, bc)
					ds, cs = stage(b, sc)
				} else {
					ds, cs = stage(b, sc)
					db, cb = goBuild(b, bc)
				}
				base, st = append(base, db.Seconds()), append(st, ds.Seconds())
				ratio, cpuRatio = append(ratio, ds.Seconds()/db.Seconds()), append(cpuRatio, cs.Seconds()/cb.Seconds())
				b.Logf("%s round %d: go build %.1f s (cpu %.1f s), stage %.1f s (cpu %.1f s): ratio %.2f, cpu ratio %.2f",
					mode, i+1, db.Seconds(), cb.Seconds(), ds.Seconds(), cs.Seconds(), ds.Seconds()/db.Seconds(), cs.Seconds()/cb.Seconds())
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(median(base), "go-build-s/round")
			b.ReportMetric(median(st), "stage-s/round")
			b.ReportMetric(median(ratio), "ratio")
			b.ReportMetric(median(cpuRatio), "cpu-ratio")
		})
	}
}

// cpuTime is the user and system time of this process and of its waited-for children.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}

// TestExampleComponents plans the build of examples/djia30 against a fresh
// forge and registry, then builds, pushes and pulls back the image of each
// of its components (skipped with -short: it compiles the example).
func TestExampleComponents(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles examples/djia30")
	}
	root, _ := filepath.Abs(exampleDir)
	cfg, err := config.Load(filepath.Join(root, "branchml.yaml"), config.WithEnviron(nil))
	if err != nil {
		t.Skipf("examples/djia30 config: %v", err)
	}
	ctx := context.Background()
	e := newEnv(t)
	o := Options{Config: cfg, Forge: e.forge, Registry: e.reg, Workspace: root, DryRun: true}
	res, err := Run(ctx, o)
	if err != nil {
		t.Skipf("examples/djia30 does not plan (being written?): %v", err)
	}
	if actions(res) != "prepare-data=would-build,train=would-build,serve=would-build" {
		t.Fatalf("plan %s", actions(res))
	}
	for _, c := range cfg.Components {
		src, err := changes.Hash(ctx, root, c)
		if err != nil {
			t.Fatal(err)
		}
		built, err := imagebuild.BuildGo(ctx, imagebuild.GoImage{Name: c.Name, ModuleDir: src.ModuleDir, Package: src.Package, Binary: c.Binary})
		if err != nil {
			t.Skipf("examples/djia30 %s does not build (being written?): %v", c.Name, err)
		}
		pushed, err := e.reg.Push(ctx, c.Image, "", built.Image)
		if err != nil {
			t.Fatal(err)
		}
		img, err := e.local.Pull(ctx, pushed.Ref)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := registry.Unpack(img, dir); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, "ko-app", c.Name))
		if err != nil || fi.Size() != built.BinarySize || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: unpacked binary %v, %v; want %d bytes, 0755", c.Name, fi, err, built.BinarySize)
		}
	}
}
