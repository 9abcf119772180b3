package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/branchml/branchml/agents/backends/serving/tfserving"
)

// MaxConcurrency bounds Options.Concurrency.
const MaxConcurrency = 64

// Options describe a load.
type Options struct {
	// URL is the full predict URL, e.g. "http://127.0.0.1:8501/v1/models/djia30:predict".
	URL string
	// Body is the predict request body.
	Body []byte
	// Concurrency is the number of workers (default 4, at most MaxConcurrency).
	Concurrency int
	// Requests is the total to send; 0 means until ctx ends.
	Requests int
	// Rate is the total requests per second; 0 means as fast as answered.
	Rate float64
	// Timeout bounds each request (default 5s), with a given Client too.
	Timeout time.Duration
	// VariantHeader is the response header whose value is counted in
	// Report.ByVariant ("" = none).
	VariantHeader string
	// Client is the HTTP client (default: a client with Timeout).
	Client *http.Client
}

// Report is what a load run saw. A request failed when no response came
// or the status was not 2xx.
type Report struct {
	Sent   int `json:"sent"`
	OK     int `json:"ok"`
	Failed int `json:"failed"`
	// ByVariant counts answered requests by VariantHeader value.
	ByVariant map[string]int `json:"byVariant,omitempty"`
	// Errors are the first few failures, for the log.
	Errors  []string            `json:"errors,omitempty"`
	Latency tfserving.Histogram `json:"-"`
	Elapsed time.Duration       `json:"elapsedNanos"`
}

// Run sends the load and returns the report; it returns early (with what
// was seen) when ctx ends, which is not an error when Requests is 0.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.URL == "" {
		return Report{}, errors.New("loadgen: no URL")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Concurrency > MaxConcurrency {
		return Report{}, fmt.Errorf("loadgen: concurrency %d above %d", o.Concurrency, MaxConcurrency)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	hc := o.Client
	if hc == nil {
		hc = &http.Client{Timeout: o.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency}}
	}
	rep := Report{ByVariant: map[string]int{}, Latency: tfserving.NewHistogram(tfserving.LatencyBounds)}
	var mu sync.Mutex
	tickets := make(chan struct{})
	go func() {
		defer close(tickets)
		var tick *time.Ticker
		if o.Rate > 0 {
			tick = time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
			defer tick.Stop()
		}
		for i := 0; o.Requests == 0 || i < o.Requests; i++ {
			if tick != nil {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
			// An ended ctx wins over a waiting worker (select would pick
			// either): no request is sent once it has ended.
			if ctx.Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case tickets <- struct{}{}:
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < o.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tickets {
				t0 := time.Now()
				variant, err := one(hc, o)
				d := time.Since(t0)
				mu.Lock()
				rep.Sent++
				rep.Latency.Observe(d)
				if err != nil {
					rep.Failed++
					if len(rep.Errors) < 10 {
						rep.Errors = append(rep.Errors, err.Error())
					}
				} else {
					rep.OK++
					if variant != "" {
						rep.ByVariant[variant]++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	if o.Requests > 0 && rep.Sent < o.Requests && ctx.Err() != nil {
		return rep, ctx.Err()
	}
	return rep, nil
}

// one sends one request with a context of its own, so that stopping the
// load never cuts a request short (which would look like a failure).
func one(hc *http.Client, o Options) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout) // a given Client may have none
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.URL, bytes.NewReader(o.Body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("%d: %.120s", resp.StatusCode, body)
	}
	if o.VariantHeader != "" {
		return resp.Header.Get(o.VariantHeader), nil
	}
	return "", nil
}

// Main is a load generator process for tests of whole systems (a process
// of its own, independent of the agents under test): args are URL RATE
// MAX_SECONDS STOP_FILE [BODY]. It sends predicts (BODY, default
// {"instances":[[1.0]]}) to URL at RATE per second with 16 workers until
// STOP_FILE exists or MAX_SECONDS passed, then writes its Report as JSON
// to stdout. It returns the exit code (2 for bad arguments).
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) < 4 || len(args) > 5 {
		fmt.Fprintln(stderr, "loadgen: URL RATE MAX_SECONDS STOP_FILE [BODY]")
		return 2
	}
	rate, err1 := strconv.ParseFloat(args[1], 64)
	secs, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil || rate <= 0 || secs <= 0 || secs > 3600 {
		fmt.Fprintln(stderr, "loadgen: RATE and MAX_SECONDS must be positive numbers (MAX_SECONDS at most 3600)")
		return 2
	}
	body := []byte(`{"instances":[[1.0]]}`)
	if len(args) == 5 {
		body = []byte(args[4])
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(args[3]); err == nil {
				cancel()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	rep, _ := Run(ctx, Options{URL: args[0], Body: body, Rate: rate, Concurrency: 16, Timeout: 10 * time.Second, VariantHeader: "X-Branchml-Variant"})
	_ = json.NewEncoder(stdout).Encode(rep)
	return 0
}
