package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TLSError is a failed TLS handshake with a registry: an unknown
// authority, a certificate for another name or out of date, or a registry
// that speaks plain HTTP where HTTPS was expected.
type TLSError struct {
	// Host is the host[:port] the handshake was with.
	Host string
	Err  error
}

func (e *TLSError) Error() string {
	return fmt.Sprintf("TLS handshake with %s failed: %v", e.Host, e.Err)
}

func (e *TLSError) Unwrap() error { return e.Err }

// plainHTTP reports whether the server answered the handshake in plain HTTP.
func (e *TLSError) plainHTTP() bool {
	var rh tls.RecordHeaderError
	return errors.As(e.Err, &rh)
}

// Fix says what to change in the configuration.
func (e *TLSError) Fix() string {
	if e.plainHTTP() {
		return "the registry at " + e.Host + " speaks plain HTTP: list it in backends.registry.insecureRegistries (or set backends.registry.insecure for the backend's own host)"
	}
	return "set backends.registry.caFile to the PEM bundle of the CA that signed the certificate of " + e.Host +
		", or, for a test registry only, list it in backends.registry.insecureRegistries"
}

// tlsFailure reports whether err is a certificate or TLS handshake failure.
func tlsFailure(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		rh  tls.RecordHeaderError
		ae  tls.AlertError
		ech *tls.ECHRejectionError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) ||
		errors.As(err, &rh) || errors.As(err, &ae) || errors.As(err, &ech)
}

// attempt records, for one attempt of one operation, what the transport saw
// that go-containerregistry's errors do not carry: a TLS failure and a
// Retry-After header.
type attempt struct {
	mu         sync.Mutex
	tls        *TLSError
	retryAfter time.Duration
}

type attemptKey struct{}

func withAttempt(ctx context.Context) (context.Context, *attempt) {
	a := &attempt{}
	return context.WithValue(ctx, attemptKey{}, a), a
}

func (a *attempt) get() (*TLSError, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tls, a.retryAfter
}

// recorder is the transport of every registry request: it picks the TLS
// settings by host (verifying with the system roots plus the CA bundle, or
// not verifying for an insecure registry) and records TLS failures and
// Retry-After in the request's attempt.
type recorder struct {
	secure, insecure http.RoundTripper
	insecureHosts    []string
	now              func() time.Time
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := r.secure
	if hostListed(r.insecureHosts, req.URL.Host) {
		rt = r.insecure
	}
	resp, err := rt.RoundTrip(req)
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	if a == nil {
		return resp, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err != nil && req.URL.Scheme == "https" && tlsFailure(err):
		a.tls = &TLSError{Host: req.URL.Host, Err: err}
	case err == nil && a.tls != nil && a.tls.Host == req.URL.Host && a.tls.plainHTTP():
		// go-containerregistry tries HTTPS first and falls back to HTTP
		// for loopback and insecure hosts: a plain-HTTP registry that
		// answers is no TLS failure. (A certificate failure stays: the
		// answer over HTTP from a TLS server is only "400 Bad Request".)
		a.tls = nil
	}
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), r.now()); ok {
			a.retryAfter = d
		}
	}
	return resp, err
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date
// (RFC 9110, section 10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(24*time.Hour/time.Second) {
			n = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// hostListed reports whether host ("name[:port]") is in list: an entry with
// a port matches that port only, one without matches every port.
func hostListed(list []string, host string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	for _, e := range list {
		e = normalizeHost(e)
		if e == host {
			return true
		}
		if _, _, err := net.SplitHostPort(e); err != nil && strings.Trim(e, "[]") == name {
			return true // no port in the entry: every port of that host
		}
	}
	return false
}

// normalizeHost drops a scheme and a trailing slash from a configured host.
func normalizeHost(h string) string {
	h = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(h), "https://"), "http://")
	return strings.TrimSuffix(h, "/")
}

// newRecorder builds the transport: base's TLS settings are cloned when it
// is an *http.Transport (so a CA bundle and insecure hosts apply); another
// RoundTripper (a test's) is used as it is for both.
func newRecorder(base http.RoundTripper, caFile string, insecureHosts []string) (*recorder, error) {
	r := &recorder{secure: base, insecure: base, insecureHosts: insecureHosts, now: time.Now}
	ht, ok := base.(*http.Transport)
	if !ok {
		return r, nil
	}
	var roots *x509.CertPool
	if caFile != "" {
		pemData, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("backends.registry.caFile: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("backends.registry.caFile %s: no PEM certificate in it", caFile)
		}
	}
	secure := ht.Clone()
	if secure.TLSClientConfig == nil {
		secure.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if roots != nil {
		secure.TLSClientConfig.RootCAs = roots
	}
	insecure := ht.Clone()
	if insecure.TLSClientConfig == nil {
		insecure.TLSClientConfig = &tls.Config{}
	}
	insecure.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // only for hosts listed as insecure in the configuration
	r.secure, r.insecure = secure, insecure
	return r, nil
}
