package local

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

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
	var stderr syncBuf
	cmd := exec.Command(bin, "--rest_api_port=0", "--model_name=djia30", "--model_base_path="+base)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	re := regexp.MustCompile(`listening on (\S+)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			return "http://" + m[1]
		}
	}
	b.Fatalf("fake-tfserving did not listen: %s", stderr.String())
	return ""
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
// against a model server process (fake-tfserving) on loopback: p50 and p99
// direct, through the gateway with its pool, and through the gateway with
// Go's default pool of 2 idle connections per server (what it had). The
// three are measured in interleaved rounds of 3,000 requests (so that the
// noise of a shared machine falls on all alike) and the median of the
// rounds' quantiles is reported. The goal: gateway p99 <= 2x direct
// ("p99-ratio").
//
//	go test -run '^$' -bench GatewayLatency -benchtime 1x ./agents/backends/serving/local
func BenchmarkGatewayLatency(b *testing.B) {
	server := startFakeServer(b)
	const rate, n, rounds = 1000, 3000, 7
	old := transport.Clone()
	old.MaxIdleConnsPerHost = 2 // http.DefaultMaxIdleConnsPerHost: the gateway's pool before
	modes := []struct {
		name string
		tr   *http.Transport
	}{{"direct", nil}, {"gateway (pool 256)", transport}, {"gateway (pool 2, before)", old}}
	targets := make([]string, len(modes))
	for i, m := range modes {
		targets[i] = server + "/v1/models/djia30:predict"
		if m.tr == nil {
			continue
		}
		gw := NewGateway()
		gw.transport = m.tr
		u, err := gw.Listen("127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer gw.Close(context.Background())
		gw.SetRoutes(Route{Variant: "stable", Version: 1, Upstream: NewUpstream(server), Weight: 100})
		targets[i] = u + "/v1/models/djia30:predict"
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	for b.Loop() {
		p50s, p99s := make([][]time.Duration, len(modes)), make([][]time.Duration, len(modes))
		for i := range modes {
			openLoop(targets[i], rate, 500) // warm up
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
		var p99 []time.Duration
		for i, m := range modes {
			m50, m99 := median(p50s[i]), median(p99s[i])
			p99 = append(p99, m99)
			b.Logf("%-26s p50 %8v  p99 %8v  (medians of %d rounds of %d at %d/s; p99 per round %v)", m.name, m50.Round(time.Microsecond), m99.Round(time.Microsecond), rounds, n, rate, p99s[i])
		}
		b.ReportMetric(float64(p99[1])/float64(p99[0]), "p99-ratio")
		b.ReportMetric(float64(p99[2])/float64(p99[0]), "p99-ratio-before")
		fmt.Fprintf(os.Stderr, "gateway p99 / direct p99 = %.2f (with the old pool of 2: %.2f)\n", float64(p99[1])/float64(p99[0]), float64(p99[2])/float64(p99[0]))
	}
}
