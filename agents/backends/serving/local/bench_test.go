package local

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a gateway process for the benchmark (as the
// serving plane is a process of its own, with PlaneGCPercent as 'branchml
// serve' sets it): with LOCAL_BENCH_GATEWAY_UPSTREAM
// set it serves a gateway routing everything to that server, with
// LOCAL_BENCH_GATEWAY_POOL idle connections, prints "listening on ADDR" and
// runs until killed. With LOCAL_BENCH_STDLIB_PROXY=1 it serves instead the
// plainest proxy of the standard library (httputil.NewSingleHostReverseProxy
// on the same transport): the cost of any proxy hop, as a second baseline.
func init() {
	up := os.Getenv("LOCAL_BENCH_GATEWAY_UPSTREAM")
	if up == "" {
		return
	}
	pool, _ := strconv.Atoi(os.Getenv("LOCAL_BENCH_GATEWAY_POOL"))
	debug.SetGCPercent(PlaneGCPercent) // as 'branchml serve' runs the plane
	gw := NewGateway()
	tr := transport.Clone()
	tr.MaxIdleConnsPerHost = pool
	var dials atomic.Int64
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	go func() { // the connections it opened to the server, for the benchmark
		for range time.Tick(100 * time.Millisecond) {
			fmt.Fprintf(os.Stderr, "dials %d\n", dials.Load())
		}
	}()
	if os.Getenv("LOCAL_BENCH_STDLIB_PROXY") == "1" {
		target, _ := url.Parse(up)
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.Transport = tr
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "listening on "+ln.Addr().String())
		_ = (&http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
		os.Exit(1)
	}
	gw.transport = tr
	u, err := gw.Listen("127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gw.SetRoutes(Route{Variant: "stable", Version: 1, Upstream: NewUpstream(up), Weight: 100})
	fmt.Fprintln(os.Stderr, "listening on "+strings.TrimPrefix(u, "http://"))
	select {}
}

// startProcess starts argv (env added) and returns the address it prints
// in "listening on ADDR".
func startProcess(b *testing.B, env []string, argv ...string) string {
	u, _ := startProcessOut(b, env, argv...)
	return u
}

// dialsRE reads the gateway helper's count of connections to the server.
var dialsRE = regexp.MustCompile(`dials (\d+)\n`)

// lastDials is the last count the helper printed.
func lastDials(out *syncBuf) int {
	m := dialsRE.FindAllStringSubmatch(out.String(), -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

func startProcessOut(b *testing.B, env []string, argv ...string) (string, *syncBuf) {
	b.Helper()
	stderr := &syncBuf{}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	re := regexp.MustCompile(`listening on (\S+)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			return "http://" + m[1], stderr
		}
	}
	b.Fatalf("%s did not listen: %s", argv[0], stderr.String())
	return "", nil
}

// startFakeServer builds and starts fake-tfserving serving model djia30
// v1 on loopback, as the plane's servers run; it returns its base URL.
func startFakeServer(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "fake-tfserving")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/branchml/branchml/agents/internal/fake/tfserving/cmd/fake-tfserving").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	base := filepath.Join(dir, "models", "djia30")
	if err := os.MkdirAll(filepath.Join(base, "1"), 0o755); err != nil {
		b.Fatal(err)
	}
	return startProcess(b, nil, bin, "--rest_api_port=0", "--model_name=djia30", "--model_base_path="+base)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// openLoop sends n predicts to url at rate per second (open loop: the send
// times do not wait for answers; up to 256 in flight) and returns each
// latency, sorted, and the number of failures.
func openLoop(url string, rate, n int) ([]time.Duration, int) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256}}
	body := []byte(`{"instances":[[1.0,2.0,3.0]]}`)
	lat := make([]time.Duration, n)
	fails := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; i < n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
			ok := err == nil
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok = resp.StatusCode == 200
			}
			mu.Lock()
			lat[i] = time.Since(t0)
			if !ok {
				fails++
			}
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	hc.CloseIdleConnections()
	slices.Sort(lat)
	return lat, fails
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// BenchmarkGatewayLatency measures the gateway's cost at 1,000 predicts/s
// against a model server process (fake-tfserving) on loopback, the gateway
// in a process of its own as the serving plane is. Five ways to the same
// server: direct; direct again (the noise floor: the ratio of two
// measurements of the same thing on this machine); through the gateway with
// its pool; through a gateway with Go's default pool of 2 idle connections
// per server (what it had); and through the standard library's plainest
// reverse proxy in the same kind of process (the cost of any proxy hop here:
// the load generator, the server and the proxy share the cores). They are
// measured in interleaved rounds of 2,000 requests, each round in another
// order, so that the noise of a shared machine falls on all alike.
//
// Reported: each way's median over rounds of its p50 and p99, and for each
// its p99 over direct's as the median over rounds of the ratio of two
// neighbouring measurements (same round: the same load of the machine):
// "p99-ratio" (the goal: gateway p99 <= 2x direct), "p99-ratio-noise"
// (direct again), "p99-ratio-stdlib", "p99-ratio-before", and
// "p99-gateway/stdlib" (the gateway over the standard library's proxy: what
// the gateway's own code adds to a proxy hop).
//
//	go test -run '^$' -bench GatewayLatency -benchtime 1x ./agents/backends/serving/local
func BenchmarkGatewayLatency(b *testing.B) {
	server := startFakeServer(b)
	const rate, n, rounds = 1000, 2000, 15
	const direct, again, gateway, before, stdlib = 0, 1, 2, 3, 4
	modes := []struct {
		name   string
		pool   int
		stdlib bool
	}{
		direct:  {"direct", 0, false},
		again:   {"direct (again)", 0, false},
		gateway: {"gateway (pool 256)", MaxIdleConnsPerUpstream, false},
		before:  {"gateway (pool 2, before)", 2, false},
		stdlib:  {"stdlib proxy (pool 256)", MaxIdleConnsPerUpstream, true},
	}
	targets := make([]string, len(modes))
	outs := make([]*syncBuf, len(modes))
	for i, m := range modes {
		targets[i] = server + "/v1/models/djia30:predict"
		if m.pool > 0 {
			env := []string{"LOCAL_BENCH_GATEWAY_UPSTREAM=" + server, "LOCAL_BENCH_GATEWAY_POOL=" + strconv.Itoa(m.pool)}
			if m.stdlib {
				env = append(env, "LOCAL_BENCH_STDLIB_PROXY=1")
			}
			gw, out := startProcessOut(b, env, os.Args[0], "-test.run=^$")
			targets[i], outs[i] = gw+"/v1/models/djia30:predict", out
		}
	}
	median := func(d []time.Duration) time.Duration { d = slices.Clone(d); slices.Sort(d); return d[len(d)/2] }
	for b.Loop() {
		p50s, p99s := make([][]time.Duration, len(modes)), make([][]time.Duration, len(modes))
		for i := range modes {
			openLoop(targets[i], rate, 500) // warm up
		}
		time.Sleep(200 * time.Millisecond)
		dials0 := make([]int, len(modes))
		for i := range modes {
			if outs[i] != nil {
				dials0[i] = lastDials(outs[i])
			}
		}
		for r := 0; r < rounds; r++ {
			for k := range modes { // each round in another order: no way always follows the same one
				i := (k + r) % len(modes)
				lat, fails := openLoop(targets[i], rate, n)
				if fails > 0 {
					b.Fatalf("%s: %d of %d failed", modes[i].name, fails, n)
				}
				p50s[i] = append(p50s[i], quantile(lat, 0.5))
				p99s[i] = append(p99s[i], quantile(lat, 0.99))
			}
		}
		time.Sleep(200 * time.Millisecond)
		// ratio is the median over rounds of way i's p99 over way j's of
		// the same round.
		ratio := func(i, j int) float64 {
			rs := make([]float64, rounds)
			for r := range rs {
				rs[r] = float64(p99s[i][r]) / float64(p99s[j][r])
			}
			slices.Sort(rs)
			return rs[rounds/2]
		}
		for i, m := range modes {
			conns := ""
			if outs[i] != nil {
				conns = fmt.Sprintf(", %d new connections to the server per %d requests", (lastDials(outs[i])-dials0[i])/rounds, n)
			}
			b.Logf("%-26s p50 %8v  p99 %8v  p99/direct %.2f  (medians of %d rounds of %d at %d/s%s; p99 per round %v)", m.name,
				median(p50s[i]).Round(time.Microsecond), median(p99s[i]).Round(time.Microsecond), ratio(i, direct), rounds, n, rate, conns, p99s[i])
		}
		b.ReportMetric(ratio(gateway, direct), "p99-ratio")
		b.ReportMetric(ratio(again, direct), "p99-ratio-noise")
		b.ReportMetric(ratio(stdlib, direct), "p99-ratio-stdlib")
		b.ReportMetric(ratio(before, direct), "p99-ratio-before")
		b.ReportMetric(ratio(gateway, stdlib), "p99-gateway/stdlib")
		fmt.Fprintf(os.Stderr, "p99 over direct's p99 (medians over %d rounds): gateway %.2f, direct again (noise) %.2f, standard library's proxy %.2f, old pool of 2 %.2f; gateway over the standard library's proxy %.2f\n",
			rounds, ratio(gateway, direct), ratio(again, direct), ratio(stdlib, direct), ratio(before, direct), ratio(gateway, stdlib))
	}
}

// BenchmarkGatewayServeHTTP is the gateway's own cost per predict, in one
// process and closed loop (no load generator competing for the cores):
// CPU time and allocations of a request through Gateway.ServeHTTP, against
// the standard library's plainest proxy (httputil.NewSingleHostReverseProxy)
// on the same transport, both to an in-process server on loopback.
//
//	go test -run '^$' -bench GatewayServeHTTP -benchmem ./agents/backends/serving/local
func BenchmarkGatewayServeHTTP(b *testing.B) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"predictions":[[0.5]]}`))
	}))
	defer server.Close()
	gw := NewGateway()
	gw.SetRoutes(Route{Variant: "stable", Version: 1, Upstream: NewUpstream(server.URL), Weight: 100})
	target, _ := url.Parse(server.URL)
	std := httputil.NewSingleHostReverseProxy(target)
	std.Transport = transport
	body := []byte(`{"instances":[[1.0,2.0,3.0]]}`)
	for _, h := range []struct {
		name string
		h    http.Handler
	}{{"gateway", gw}, {"stdlib", std}} {
		predict := func(b *testing.B) {
			req := httptest.NewRequest(http.MethodPost, "/v1/models/djia30:predict", bytes.NewReader(body))
			rec := httptest.NewRecorder()
			h.h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("%s: %d %s", h.name, rec.Code, rec.Body)
			}
		}
		b.Run(h.name, func(b *testing.B) {
			predict(b) // the connection to the server is open before the clock starts
			b.ReportAllocs()
			for b.Loop() {
				predict(b)
			}
		})
	}
}
