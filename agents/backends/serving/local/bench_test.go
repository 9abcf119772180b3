package local

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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
// runs until killed.
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
	gw.transport = tr
	go func() { // the connections it opened to the server, for the benchmark
		for range time.Tick(100 * time.Millisecond) {
			fmt.Fprintf(os.Stderr, "dials %d\n", dials.Load())
		}
	}()
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
// in a process of its own as the serving plane is: p50 and p99 direct,
// through the gateway with its pool, and through a gateway with Go's
// default pool of 2 idle connections per server (what it had). The three
// are measured in interleaved rounds of 3,000 requests (so that the noise
// of a shared machine falls on all alike) and the median of the rounds'
// quantiles is reported. The goal: gateway p99 <= 2x direct ("p99-ratio").
//
//	go test -run '^$' -bench GatewayLatency -benchtime 1x ./agents/backends/serving/local
func BenchmarkGatewayLatency(b *testing.B) {
	server := startFakeServer(b)
	const rate, n, rounds = 1000, 3000, 7
	modes := []struct {
		name string
		pool int
	}{{"direct", 0}, {"gateway (pool 256)", MaxIdleConnsPerUpstream}, {"gateway (pool 2, before)", 2}}
	targets := make([]string, len(modes))
	outs := make([]*syncBuf, len(modes))
	for i, m := range modes {
		targets[i] = server + "/v1/models/djia30:predict"
		if m.pool > 0 {
			gw, out := startProcessOut(b, []string{"LOCAL_BENCH_GATEWAY_UPSTREAM=" + server, "LOCAL_BENCH_GATEWAY_POOL=" + strconv.Itoa(m.pool)}, os.Args[0], "-test.run=^$")
			targets[i], outs[i] = gw+"/v1/models/djia30:predict", out
		}
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
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
			for i, m := range modes {
				lat, fails := openLoop(targets[i], rate, n)
				if fails > 0 {
					b.Fatalf("%s: %d of %d failed", m.name, fails, n)
				}
				p50s[i] = append(p50s[i], quantile(lat, 0.5))
				p99s[i] = append(p99s[i], quantile(lat, 0.99))
			}
		}
		time.Sleep(200 * time.Millisecond)
		var p99 []time.Duration
		for i, m := range modes {
			m50, m99 := median(p50s[i]), median(p99s[i])
			p99 = append(p99, m99)
			conns := ""
			if outs[i] != nil {
				conns = fmt.Sprintf(", %d new connections to the server per %d requests", (lastDials(outs[i])-dials0[i])/rounds, n)
			}
			b.Logf("%-26s p50 %8v  p99 %8v  (medians of %d rounds of %d at %d/s%s; p99 per round %v)", m.name, m50.Round(time.Microsecond), m99.Round(time.Microsecond), rounds, n, rate, conns, p99s[i])
		}
		b.ReportMetric(float64(p99[1])/float64(p99[0]), "p99-ratio")
		b.ReportMetric(float64(p99[2])/float64(p99[0]), "p99-ratio-before")
		fmt.Fprintf(os.Stderr, "gateway p99 / direct p99 = %.2f (with the old pool of 2: %.2f)\n", float64(p99[1])/float64(p99[0]), float64(p99[2])/float64(p99[0]))
	}
}
