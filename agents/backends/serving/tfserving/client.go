package tfserving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Model version states of TF Serving's GetModelStatus (ModelVersionStatus.State).
const (
	StateUnknown   = "UNKNOWN"
	StateStart     = "START"
	StateLoading   = "LOADING"
	StateAvailable = "AVAILABLE"
	StateUnloading = "UNLOADING"
	StateEnd       = "END"
)

// MetricsPath is TF Serving's default Prometheus endpoint.
const MetricsPath = "/monitoring/prometheus/metrics"

// Selector picks a model version: by number, by label, or (zero) the default
// version TF Serving chooses (the highest loaded one).
type Selector struct {
	Version int64
	Label   string
}

// Path returns the REST path of the model with the selector:
// /v1/models/{name}[/versions/{v}|/labels/{l}].
func (s Selector) Path(model string) string {
	p := "/v1/models/" + url.PathEscape(model)
	switch {
	case s.Version > 0:
		p += "/versions/" + strconv.FormatInt(s.Version, 10)
	case s.Label != "":
		p += "/labels/" + url.PathEscape(s.Label)
	}
	return p
}

// VersionStatus is one entry of GET /v1/models/{name}: the JSON form of
// tensorflow.serving.ModelVersionStatus (version is an int64 written as a string).
type VersionStatus struct {
	Version int64  `json:"version,string"`
	State   string `json:"state"`
	Status  struct {
		ErrorCode    string `json:"error_code"`
		ErrorMessage string `json:"error_message"`
	} `json:"status"`
}

// Available reports whether the version is AVAILABLE with error_code OK.
func (v VersionStatus) Available() bool {
	return v.State == StateAvailable && (v.Status.ErrorCode == "OK" || v.Status.ErrorCode == "")
}

type statusResponse struct {
	ModelVersionStatus []VersionStatus `json:"model_version_status"`
}

// PredictResponse is the body of a REST predict: "predictions" (row format)
// or "outputs" (columnar format), kept raw.
type PredictResponse struct {
	Predictions json.RawMessage `json:"predictions,omitempty"`
	Outputs     json.RawMessage `json:"outputs,omitempty"`
}

// Error is a failed call to TF Serving: the method and URL, the HTTP status
// (0 when no response came) and TF Serving's {"error": "..."} message.
type Error struct {
	Method     string
	URL        string
	StatusCode int
	Message    string
	Err        error
}

func (e *Error) Error() string {
	if e.StatusCode == 0 {
		return fmt.Sprintf("%s %s: %v", e.Method, e.URL, e.Err)
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.StatusCode, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether a retry may succeed: no response at all, 408,
// 429 and 5xx.
func (e *Error) Temporary() bool {
	switch {
	case e.StatusCode == 0, e.StatusCode == http.StatusTooManyRequests, e.StatusCode == http.StatusRequestTimeout:
		return true
	}
	return e.StatusCode >= 500
}

// IsNotFound reports whether err is a 404 from TF Serving (unknown model,
// version or label).
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// Client talks to one TF Serving REST endpoint.
type Client struct {
	base string
	hc   *http.Client
}

type options struct {
	hc      *http.Client
	timeout time.Duration
}

// Option configures a Client.
type Option func(*options)

// DefaultTimeout bounds each call unless WithTimeout says otherwise.
var DefaultTimeout = 10 * time.Second

// WithHTTPClient uses hc (its Timeout is kept unless WithTimeout is given).
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithTimeout bounds each call to d (0: no bound beyond the context).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// New returns a client for baseURL ("http://host:8501"); an error when it is
// not an absolute http(s) URL.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tfserving: base URL %q must be http(s)://host:port", baseURL)
	}
	o := options{timeout: -1}
	for _, opt := range opts {
		opt(&o)
	}
	hc := o.hc
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	if o.timeout >= 0 {
		c := *hc
		c.Timeout = o.timeout
		hc = &c
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: hc}, nil
}

// BaseURL is the endpoint the client talks to.
func (c *Client) BaseURL() string { return c.base }

func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	u := c.base + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, &Error{Method: method, URL: u, Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &Error{Method: method, URL: u, Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &Error{Method: method, URL: u, StatusCode: 0, Err: err}
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return nil, &Error{Method: method, URL: u, StatusCode: resp.StatusCode, Message: e.Error}
	}
	return raw, nil
}

// Status returns GET /v1/models/{name}[/versions/{v}|/labels/{l}]: the
// status of every version (or of the selected one).
func (c *Client) Status(ctx context.Context, model string, sel Selector) ([]VersionStatus, error) {
	raw, err := c.do(ctx, http.MethodGet, sel.Path(model), nil)
	if err != nil {
		return nil, err
	}
	var st statusResponse
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, &Error{Method: http.MethodGet, URL: c.base + sel.Path(model), StatusCode: 200, Err: fmt.Errorf("malformed model status: %w", err)}
	}
	return st.ModelVersionStatus, nil
}

// LoadError is a model version TF Serving gave up loading: its status is
// state END with an error code other than OK (GetModelStatus reports a
// failed load so; see get_model_status_impl.cc and ServableState).
type LoadError struct {
	Model   string
	Version int64
	// Code is the error_code (e.g. "INVALID_ARGUMENT"), Message its error_message.
	Code, Message string
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("model %s version %d failed to load: %s: %s", e.Model, e.Version, e.Code, e.Message)
}

// Available reports whether exactly version of model is AVAILABLE with
// error_code OK. A 404 (not loaded yet) is false with no error; a version
// whose load failed (state END, error_code not OK) is false with a
// *LoadError.
func (c *Client) Available(ctx context.Context, model string, version int64) (bool, error) {
	st, err := c.Status(ctx, model, Selector{Version: version})
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, v := range st {
		if v.Version != version {
			continue
		}
		if v.Available() {
			return true, nil
		}
		if v.State == StateEnd && v.Status.ErrorCode != "" && v.Status.ErrorCode != "OK" {
			return false, &LoadError{Model: model, Version: version, Code: v.Status.ErrorCode, Message: v.Status.ErrorMessage}
		}
	}
	return false, nil
}

// WaitAvailable polls Available every poll until true or ctx ends; the
// last error or state is in the returned error. A failed load ends the
// wait at once with the *LoadError.
func (c *Client) WaitAvailable(ctx context.Context, model string, version int64, poll time.Duration) error {
	var last error
	for {
		ok, err := c.Available(ctx, model, version)
		if ok {
			return nil
		}
		var le *LoadError
		if errors.As(err, &le) {
			return err
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("model %s version %d not AVAILABLE: %w (last: %v)", model, version, ctx.Err(), last)
			}
			return fmt.Errorf("model %s version %d not AVAILABLE: %w", model, version, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// Metadata returns GET .../metadata as raw JSON (model_spec and signature_def).
func (c *Client) Metadata(ctx context.Context, model string, sel Selector) (json.RawMessage, error) {
	raw, err := c.do(ctx, http.MethodGet, sel.Path(model)+"/metadata", nil)
	if err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		return nil, &Error{Method: http.MethodGet, URL: c.base + sel.Path(model) + "/metadata", StatusCode: 200, Err: errors.New("malformed metadata JSON")}
	}
	return raw, nil
}

// Predict POSTs body (a TF Serving predict request: {"instances": …} or
// {"inputs": …}) to .../{model}[...]:predict.
func (c *Client) Predict(ctx context.Context, model string, sel Selector, body []byte) (*PredictResponse, error) {
	p := sel.Path(model) + ":predict"
	raw, err := c.do(ctx, http.MethodPost, p, body)
	if err != nil {
		return nil, err
	}
	var r PredictResponse
	if err := json.Unmarshal(raw, &r); err != nil || (r.Predictions == nil && r.Outputs == nil) {
		return nil, &Error{Method: http.MethodPost, URL: c.base + p, StatusCode: 200, Err: fmt.Errorf("malformed predict response %.80q", raw)}
	}
	return &r, nil
}

// Metrics scrapes MetricsPath and returns model's counters.
func (c *Client) Metrics(ctx context.Context, model string) (Counters, error) {
	raw, err := c.do(ctx, http.MethodGet, MetricsPath, nil)
	if err != nil {
		return Counters{}, err
	}
	m, err := ParseMetrics(bytes.NewReader(raw), model)
	if err != nil {
		return Counters{}, &Error{Method: http.MethodGet, URL: c.base + MetricsPath, StatusCode: 200, Err: err}
	}
	return m, nil
}
