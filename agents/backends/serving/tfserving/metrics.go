package tfserving

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Metric names TF Serving exports on its Prometheus endpoint (the
// "/tensorflow/serving/..." monitoring names with "/" replaced by ":").
const (
	MetricRequestCount   = ":tensorflow:serving:request_count"
	MetricRequestLatency = ":tensorflow:serving:request_latency"
)

// LatencyBounds are the upper bounds, in microseconds, of TF Serving's
// request_latency histogram buckets: exponential from 10 µs by a factor of
// 1.8, 33 buckets (plus +Inf).
var LatencyBounds = func() []float64 {
	b := make([]float64, 33)
	v := 10.0
	for i := range b {
		b[i] = v
		v *= 1.8
	}
	return b
}()

// Histogram is a cumulative latency histogram in microseconds: Counts[i] is
// the number of observations <= Bounds[i]; Count includes those above the
// last bound (+Inf).
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// NewHistogram returns an empty histogram with bounds (µs, ascending).
func NewHistogram(bounds []float64) Histogram {
	return Histogram{Bounds: append([]float64(nil), bounds...), Counts: make([]uint64, len(bounds))}
}

// Observe adds one observation of d.
func (h *Histogram) Observe(d time.Duration) {
	us := float64(d) / float64(time.Microsecond)
	for i, b := range h.Bounds {
		if us <= b {
			h.Counts[i]++
		}
	}
	h.Count++
	h.Sum += us
}

// Sub returns h minus prev (the observations made after prev was taken).
// Bounds must match; when they do not, or counts went down (a restart),
// h is returned whole.
func (h Histogram) Sub(prev Histogram) Histogram {
	if len(prev.Bounds) != len(h.Bounds) || prev.Count > h.Count {
		return h.clone()
	}
	out := h.clone()
	for i := range out.Counts {
		if prev.Counts[i] > out.Counts[i] {
			return h.clone()
		}
		out.Counts[i] -= prev.Counts[i]
	}
	out.Count -= prev.Count
	out.Sum -= prev.Sum
	return out
}

// Add returns h plus o (the observations of two servers together, e.g. two
// pods of one variant). An empty side (no bounds) gives the other; when
// both have bounds that differ, the result has h's bounds and o's buckets
// are left out (Count and Sum still add).
func (h Histogram) Add(o Histogram) Histogram {
	if len(h.Bounds) == 0 {
		return o.clone()
	}
	out := h.clone()
	if len(o.Bounds) == len(h.Bounds) {
		for i := range out.Counts {
			out.Counts[i] += o.Counts[i]
		}
	}
	out.Count += o.Count
	out.Sum += o.Sum
	return out
}

func (h Histogram) clone() Histogram {
	h.Bounds = append([]float64(nil), h.Bounds...)
	h.Counts = append([]uint64(nil), h.Counts...)
	return h
}

// Quantile returns the q-quantile (0..1) by linear interpolation inside the
// bucket, as Prometheus' histogram_quantile does; 0 with no observations.
// When the quantile falls above the last bound the last bound is returned.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return 0
	}
	rank := q * float64(h.Count)
	prevCount, prevBound := 0.0, 0.0
	for i, b := range h.Bounds {
		c := float64(h.Counts[i])
		if c >= rank {
			if c == prevCount {
				return usToDuration(b)
			}
			return usToDuration(prevBound + (b-prevBound)*(rank-prevCount)/(c-prevCount))
		}
		prevCount, prevBound = c, b
	}
	return usToDuration(h.Bounds[len(h.Bounds)-1])
}

func usToDuration(us float64) time.Duration { return time.Duration(us * float64(time.Microsecond)) }

// Counters are one model's cumulative request counters: all requests, the
// requests by the HTTP status of their answer, and the latency histogram.
// Which statuses count as errors is not decided here: the rollout's
// analysis (agents/stages/deploy/rollout) decides, the same for every
// serving backend.
type Counters struct {
	Requests uint64
	// Codes counts the requests by HTTP status code. Counters read from
	// TF Serving's metrics map its status label (a canonical error code
	// name) to the HTTP status its REST API answers with (HTTPStatus).
	Codes   map[int]uint64
	Latency Histogram
}

// Count adds one request answered with HTTP status code.
func (c *Counters) Count(code int) {
	if c.Codes == nil {
		c.Codes = map[int]uint64{}
	}
	c.Requests++
	c.Codes[code]++
}

// Clone returns a deep copy of c.
func (c Counters) Clone() Counters {
	out := Counters{Requests: c.Requests, Latency: c.Latency.clone()}
	if c.Codes != nil {
		out.Codes = make(map[int]uint64, len(c.Codes))
		for k, v := range c.Codes {
			out.Codes[k] = v
		}
	}
	return out
}

// Add returns c plus o: the counters of two servers summed (requests,
// each status code, the latency histogram).
func (c Counters) Add(o Counters) Counters {
	out := c.Clone()
	out.Requests += o.Requests
	for k, v := range o.Codes {
		if out.Codes == nil {
			out.Codes = map[int]uint64{}
		}
		out.Codes[k] += v
	}
	out.Latency = out.Latency.Add(o.Latency)
	return out
}

// Sub returns c minus prev (what happened between the two samples); a
// restart (any counter going down) returns c whole.
func (c Counters) Sub(prev Counters) Counters {
	if prev.Requests > c.Requests {
		return c.Clone()
	}
	for k, v := range prev.Codes {
		if v > c.Codes[k] {
			return c.Clone()
		}
	}
	out := Counters{Requests: c.Requests - prev.Requests, Codes: map[int]uint64{}, Latency: c.Latency.Sub(prev.Latency)}
	for k, v := range c.Codes {
		if d := v - prev.Codes[k]; d > 0 {
			out.Codes[k] = d
		}
	}
	return out
}

// HTTPStatus is the HTTP status TF Serving's REST API answers a request
// with when it ended with the canonical status code name (the "status"
// label of :tensorflow:serving:request_count), as ToHTTPStatusCode in
// tensorflow_serving/model_servers/http_server.cc maps them; an unknown
// name is 500.
func HTTPStatus(code string) int {
	switch code {
	case "OK":
		return 200
	case "CANCELLED":
		return 499
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return 400
	case "DEADLINE_EXCEEDED":
		return 504
	case "NOT_FOUND":
		return 404
	case "ALREADY_EXISTS", "ABORTED":
		return 409
	case "PERMISSION_DENIED":
		return 403
	case "RESOURCE_EXHAUSTED":
		return 429
	case "UNIMPLEMENTED":
		return 501
	case "UNAVAILABLE":
		return 503
	case "UNAUTHENTICATED":
		return 401
	}
	return 500 // UNKNOWN, INTERNAL, DATA_LOSS and anything else
}

// StatusName is a canonical status code name that HTTPStatus maps to the
// HTTP status code (the first in TF Serving's table), for writing metrics.
func StatusName(code int) string {
	switch code {
	case 200:
		return "OK"
	case 499:
		return "CANCELLED"
	case 400:
		return "INVALID_ARGUMENT"
	case 504:
		return "DEADLINE_EXCEEDED"
	case 404:
		return "NOT_FOUND"
	case 409:
		return "ABORTED"
	case 403:
		return "PERMISSION_DENIED"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 501:
		return "UNIMPLEMENTED"
	case 503:
		return "UNAVAILABLE"
	case 401:
		return "UNAUTHENTICATED"
	}
	return "INTERNAL"
}

// ParseMetrics reads Prometheus text exposition format (version 0.0.4) as
// TF Serving writes it and returns the counters of model: request_count
// by status (Codes: the status label mapped by HTTPStatus), request_latency buckets
// summed over API and entrypoint. Lines of other metrics are skipped;
// a malformed line of one of these metrics is an error naming the line.
func ParseMetrics(r io.Reader, model string) (Counters, error) {
	var c Counters
	buckets := map[float64]uint64{}
	var sawLatency bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, ":tensorflow:serving:request_") {
			continue
		}
		name, labels, value, err := parseSample(line)
		if err != nil {
			return Counters{}, fmt.Errorf("metrics line %d: %w", n, err)
		}
		if labels["model_name"] != model {
			continue
		}
		switch name {
		case MetricRequestCount:
			if c.Codes == nil {
				c.Codes = map[int]uint64{}
			}
			c.Requests += uint64(value)
			c.Codes[HTTPStatus(labels["status"])] += uint64(value)
		case MetricRequestLatency + "_bucket":
			le := labels["le"]
			if le == "+Inf" {
				continue
			}
			b, err := strconv.ParseFloat(le, 64)
			if err != nil {
				return Counters{}, fmt.Errorf("metrics line %d: le %q: %w", n, le, err)
			}
			buckets[b] += uint64(value)
			sawLatency = true
		case MetricRequestLatency + "_count":
			c.Latency.Count += uint64(value)
			sawLatency = true
		case MetricRequestLatency + "_sum":
			c.Latency.Sum += value
		}
	}
	if err := sc.Err(); err != nil {
		return Counters{}, err
	}
	if sawLatency {
		bounds := make([]float64, 0, len(buckets))
		for b := range buckets {
			bounds = append(bounds, b)
		}
		sort.Float64s(bounds)
		c.Latency.Bounds = bounds
		c.Latency.Counts = make([]uint64, len(bounds))
		for i, b := range bounds {
			c.Latency.Counts[i] = buckets[b]
		}
	} else {
		c.Latency = NewHistogram(LatencyBounds)
	}
	return c, nil
}

// parseSample splits `name{k="v",…} value [timestamp]`.
func parseSample(line string) (string, map[string]string, float64, error) {
	labels := map[string]string{}
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return "", nil, 0, fmt.Errorf("no value in %.60q", line)
	}
	name, rest := line[:i], line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if rest == "" {
				return "", nil, 0, fmt.Errorf("unterminated labels in %.60q", line)
			}
			if rest[0] == '}' {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq <= 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
				return "", nil, 0, fmt.Errorf("bad label in %.60q", line)
			}
			key := strings.TrimSpace(rest[:eq])
			rest = rest[eq+2:]
			var sb strings.Builder
			closed := false
			for j := 0; j < len(rest); j++ {
				ch := rest[j]
				if ch == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						sb.WriteByte('\n')
					default:
						sb.WriteByte(rest[j])
					}
					continue
				}
				if ch == '"' {
					rest = rest[j+1:]
					closed = true
					break
				}
				sb.WriteByte(ch)
			}
			if !closed {
				return "", nil, 0, fmt.Errorf("unterminated label value in %.60q", line)
			}
			labels[key] = sb.String()
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 {
		return "", nil, 0, fmt.Errorf("want a value (and an optional timestamp) in %.60q", line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || math.IsNaN(v) || v < 0 || math.IsInf(v, 0) {
		return "", nil, 0, fmt.Errorf("bad value %q in %.60q", fields[0], line)
	}
	return name, labels, v, nil
}

// WriteMetrics writes c in TF Serving's Prometheus format for model: one
// request_count sample per status (StatusName of each HTTP code, sorted)
// and the histogram under API "predict", entrypoint "REST". Fakes use it
// so that one parser reads them all.
func WriteMetrics(w io.Writer, model string, c Counters) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# TYPE %s counter\n", MetricRequestCount)
	byName := map[string]uint64{}
	for code, n := range c.Codes {
		byName[StatusName(code)] += n
	}
	if len(byName) == 0 {
		byName["OK"] = 0
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(bw, "%s{model_name=%q,status=%q} %d\n", MetricRequestCount, model, n, byName[n])
	}
	fmt.Fprintf(bw, "# TYPE %s histogram\n", MetricRequestLatency)
	for i, b := range c.Latency.Bounds {
		fmt.Fprintf(bw, "%s_bucket{model_name=%q,API=\"predict\",entrypoint=\"REST\",le=\"%s\"} %d\n", MetricRequestLatency, model, strconv.FormatFloat(b, 'g', -1, 64), c.Latency.Counts[i])
	}
	fmt.Fprintf(bw, "%s_bucket{model_name=%q,API=\"predict\",entrypoint=\"REST\",le=\"+Inf\"} %d\n", MetricRequestLatency, model, c.Latency.Count)
	fmt.Fprintf(bw, "%s_sum{model_name=%q,API=\"predict\",entrypoint=\"REST\"} %s\n", MetricRequestLatency, model, strconv.FormatFloat(c.Latency.Sum, 'g', -1, 64))
	fmt.Fprintf(bw, "%s_count{model_name=%q,API=\"predict\",entrypoint=\"REST\"} %d\n", MetricRequestLatency, model, c.Latency.Count)
	return bw.Flush()
}
