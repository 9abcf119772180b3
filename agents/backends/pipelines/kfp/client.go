package kfp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-openapi/runtime"
	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/experiment_client/experiment_service"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/pipeline_client/pipeline_service"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/pipeline_upload_client/pipeline_upload_service"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/run_client/run_service"
	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp/mlmd"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp/objectstore"
	"github.com/branchml/branchml/agents/internal/retry"
)

// RetryPolicy says how often and how patiently a call is retried after a
// temporary failure (5xx, timeout, reset connection); calls run it with
// agents/internal/retry, without jitter.
type RetryPolicy struct {
	// Attempts is the total number of tries (at least 1).
	Attempts int
	// Initial is the first backoff; each next one doubles, up to Max.
	Initial, Max time.Duration
}

// DefaultRetry is 5 attempts with backoff 500ms, 1s, 2s, 4s.
var DefaultRetry = RetryPolicy{Attempts: 5, Initial: 500 * time.Millisecond, Max: 8 * time.Second}

// DefaultRequestTimeout bounds one attempt of one call.
var DefaultRequestTimeout = 60 * time.Second

type options struct {
	namespace      string
	token          string
	caFile         string
	insecure       bool
	tlsSet         bool
	httpClient     *http.Client
	retry          RetryPolicy
	requestTimeout time.Duration
	log            logrus.FieldLogger
	mlmd           *mlmd.Client
	store          *objectstore.Store
}

// Option configures a Client.
type Option func(*options)

// WithNamespace sets the profile namespace of a multi-user KFP install.
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithToken sends "Authorization: Bearer <token>" (read it with
// agents/internal/secrets from KFP_TOKEN or KFP_TOKEN_FILE; never from flags).
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS trusts the PEM CA bundle in caFile ("" = system roots) and,
// when insecureSkipVerify, skips server certificate verification.
// It conflicts with WithHTTPClient.
func WithTLS(caFile string, insecureSkipVerify bool) Option {
	return func(o *options) { o.caFile, o.insecure, o.tlsSet = caFile, insecureSkipVerify, true }
}

// WithHTTPClient uses hc (its Transport is wrapped; it is not modified).
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.httpClient = hc } }

// WithRetry sets the retry policy (default DefaultRetry).
func WithRetry(p RetryPolicy) Option { return func(o *options) { o.retry = p } }

// WithRequestTimeout bounds each attempt of each call (default DefaultRequestTimeout).
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.requestTimeout = d } }

// WithLogger logs retries and decisions to log (default: discarded).
func WithLogger(log logrus.FieldLogger) Option { return func(o *options) { o.log = log } }

// Client talks to one KFP API server. It implements pipelines.Backend.
type Client struct {
	endpoint    *url.URL
	o           options
	auth        runtime.ClientAuthInfoWriter
	pipelines   *pipeline_service.Client
	uploads     *pipeline_upload_service.Client
	runs        *run_service.Client
	experiments *experiment_service.Client
}

var _ pipelines.Backend = (*Client)(nil)

// New returns a client of the KFP API server at endpoint, an http(s) base
// URL such as "https://kfp.example.com" or "http://127.0.0.1:8888/pipeline"
// (the path is the prefix before /apis/v2beta1). It fails on a bad
// endpoint, an unreadable CA file, or WithTLS together with WithHTTPClient.
func New(endpoint string, opts ...Option) (*Client, error) {
	o := options{retry: DefaultRetry, requestTimeout: DefaultRequestTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		l := logrus.New()
		l.Out = discard{}
		o.log = l
	}
	if o.retry.Attempts < 1 {
		o.retry.Attempts = 1
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("KFP endpoint %q: want an http(s) URL such as https://kfp.example.com", endpoint)
	}
	if o.tlsSet && o.httpClient != nil {
		return nil, errors.New("KFP client: WithTLS and WithHTTPClient conflict: configure TLS on the given http.Client")
	}
	hc := o.httpClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if o.tlsSet {
			cfg := &tls.Config{InsecureSkipVerify: o.insecure} //nolint:gosec // explicit opt-in from config
			if o.caFile != "" {
				pem, err := os.ReadFile(o.caFile)
				if err != nil {
					return nil, fmt.Errorf("KFP CA file: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("KFP CA file %s: no PEM certificates in it", o.caFile)
				}
				cfg.RootCAs = pool
			}
			tr.TLSClientConfig = cfg
		}
		hc = &http.Client{Transport: tr}
	}
	wrapped := *hc
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	wrapped.Transport = statusTransport{next: next}
	base := strings.TrimSuffix(u.Path, "/")
	if base == "" {
		base = "/"
	}
	rt := httptransport.NewWithClient(u.Host, base, []string{u.Scheme}, &wrapped)
	c := &Client{
		endpoint:    u,
		o:           o,
		pipelines:   pipeline_service.New(rt, strfmt.Default),
		uploads:     pipeline_upload_service.New(rt, strfmt.Default),
		runs:        run_service.New(rt, strfmt.Default),
		experiments: experiment_service.New(rt, strfmt.Default),
	}
	if o.token != "" {
		// The experiment service's generated calls take no auth writer:
		// the runtime's default authentication covers them.
		c.auth = httptransport.BearerToken(o.token)
		rt.DefaultAuthentication = c.auth
	}
	return c, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Endpoint is the API server base URL.
func (c *Client) Endpoint() string { return c.endpoint.String() }

// call runs fn with retries: each attempt gets its own deadline; temporary
// failures (see APIError.Temporary) are retried with exponential backoff;
// anything else returns at once. A malformed 2xx body is a *ResponseError.
func (c *Client) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	p := retry.Policy{Attempts: c.o.retry.Attempts, Initial: c.o.retry.Initial, Max: c.o.retry.Max,
		Retriable: func(err error) bool { return temporary(ctx, err) },
		OnRetry: func(attempt int, wait time.Duration, err error) {
			c.o.log.WithField("attempt", attempt).Warnf("KFP %s: %v; retrying in %s", op, err, wait)
		}}
	err := retry.Do(ctx, p, func(ctx context.Context, _ int) error {
		actx, cancel := context.WithTimeout(ctx, c.o.requestTimeout)
		err := fn(actx)
		cancel()
		var ae *APIError
		if err != nil && !errors.As(err, &ae) && !temporary(ctx, err) && ctx.Err() == nil && isDecodeError(err) {
			return &ResponseError{Op: op, Err: err} // not temporary: ends the retries
		}
		return err
	})
	var re *retry.Error
	if !errors.As(err, &re) {
		return err
	}
	if re.Context != nil {
		return fmt.Errorf("KFP %s: %w (after %v)", op, re.Context, re.Err)
	}
	if rsp, ok := re.Err.(*ResponseError); ok {
		return rsp
	}
	var ae *APIError
	if errors.As(re.Err, &ae) {
		return ae
	}
	return fmt.Errorf("KFP %s: %w", op, re.Err)
}

// isDecodeError reports an error that is neither from the network nor
// from the server's status: the body did not decode.
func isDecodeError(err error) bool {
	var ue *url.Error
	return !errors.As(err, &ue) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// eqFilter is a v2beta1 Filter (backend/api/v2beta1/filter.proto) of one
// EQUALS predicate on a string field, JSON-serialized as the list calls take it.
func eqFilter(key, value string) string {
	js, _ := jsonMarshal(map[string]any{"predicates": []any{map[string]any{"key": key, "operation": "EQUALS", "string_value": value}}})
	return string(js)
}
