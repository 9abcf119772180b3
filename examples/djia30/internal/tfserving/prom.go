package tfserving

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
)

// Metric names, as TF Serving exports them at /monitoring/prometheus/metrics.
const (
	MetricRequestCount   = ":tensorflow:serving:request_count"
	MetricRequestLatency = ":tensorflow:serving:request_latency"
)

// LatencyBuckets are the upper bounds of the request latency histogram in
// microseconds: TF Serving's exponential buckets 10·1.8^i for i = 0..32.
var LatencyBuckets = func() []float64 {
	b := make([]float64, 33)
	for i := range b {
		b[i] = 10 * math.Pow(1.8, float64(i))
	}
	return b
}()

type countKey struct{ model, version, status string }
type latKey struct{ model, version, api, entrypoint string }

type histogram struct {
	counts []uint64 // per bucket (not cumulative)
	sum    float64
	count  uint64
}

// Metrics collects the server's Prometheus metrics. It is safe for
// concurrent use.
type Metrics struct {
	mu      sync.Mutex
	counts  map[countKey]uint64
	latency map[latKey]*histogram
}

// NewMetrics returns empty metrics.
func NewMetrics() *Metrics {
	return &Metrics{counts: map[countKey]uint64{}, latency: map[latKey]*histogram{}}
}

// Observe records one request: model name, served version ("" when none was
// resolved), status ("OK" or a TF Serving error code such as
// "INVALID_ARGUMENT", "NOT_FOUND"), API ("predict") and latency in microseconds.
func (m *Metrics) Observe(model, version, status, api string, micros float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts[countKey{model, version, status}]++
	k := latKey{model, version, api, "REST"}
	h := m.latency[k]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(LatencyBuckets)+1)}
		m.latency[k] = h
	}
	i := sort.SearchFloat64s(LatencyBuckets, micros) // first bucket with bound >= micros
	h.counts[i]++
	h.sum += micros
	h.count++
}

// WriteText writes the metrics in the Prometheus text exposition format
// (version 0.0.4), sorted by labels so the output is deterministic.
func (m *Metrics) WriteText(w io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, "# HELP %s The total number of requests.\n# TYPE %s counter\n", MetricRequestCount, MetricRequestCount)
	ck := make([]countKey, 0, len(m.counts))
	for k := range m.counts {
		ck = append(ck, k)
	}
	slices.SortFunc(ck, func(a, c countKey) int {
		return cmp.Or(cmp.Compare(a.model, c.model), cmp.Compare(a.version, c.version), cmp.Compare(a.status, c.status))
	})
	for _, k := range ck {
		fmt.Fprintf(&b, "%s{model_name=%s,model_version=%s,status=%s} %d\n", MetricRequestCount, q(k.model), q(k.version), q(k.status), m.counts[k])
	}
	fmt.Fprintf(&b, "# HELP %s Distribution of wall time (in microseconds) for Tensorflow Serving request.\n# TYPE %s histogram\n", MetricRequestLatency, MetricRequestLatency)
	lk := make([]latKey, 0, len(m.latency))
	for k := range m.latency {
		lk = append(lk, k)
	}
	slices.SortFunc(lk, func(a, c latKey) int {
		return cmp.Or(cmp.Compare(a.model, c.model), cmp.Compare(a.version, c.version), cmp.Compare(a.api, c.api))
	})
	for _, k := range lk {
		h := m.latency[k]
		labels := fmt.Sprintf("model_name=%s,API=%s,entrypoint=%s,model_version=%s", q(k.model), q(k.api), q(k.entrypoint), q(k.version))
		var cum uint64
		for i, ub := range LatencyBuckets {
			cum += h.counts[i]
			fmt.Fprintf(&b, "%s_bucket{%s,le=\"%s\"} %d\n", MetricRequestLatency, labels, strconv.FormatFloat(ub, 'g', -1, 64), cum)
		}
		fmt.Fprintf(&b, "%s_bucket{%s,le=\"+Inf\"} %d\n", MetricRequestLatency, labels, h.count)
		fmt.Fprintf(&b, "%s_sum{%s} %s\n", MetricRequestLatency, labels, strconv.FormatFloat(h.sum, 'g', -1, 64))
		fmt.Fprintf(&b, "%s_count{%s} %d\n", MetricRequestLatency, labels, h.count)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// q quotes a label value per the exposition format (backslash, quote, newline escaped).
func q(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
