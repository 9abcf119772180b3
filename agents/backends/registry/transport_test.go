package registry

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/config"
)

// tlsRegistry serves a registry over TLS with httptest's certificate for
// 127.0.0.1 and returns its host and the certificate as a PEM file.
func tlsRegistry(t *testing.T, h http.Handler) (host, caFile string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	raw := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.Listener.Addr().String(), caFile
}

// TestTLSUnknownAuthority: a TLS registry on loopback signed by a CA we do
// not trust fails at once with an error naming TLS and the fix, not with
// the "400 Bad Request" of go-containerregistry's plain-HTTP fallback.
func TestTLSUnknownAuthority(t *testing.T) {
	host, caFile := tlsRegistry(t, newHandler(t))
	img := testImage(t, map[string]string{"a": "b"})
	reg, err := NewRemote(host, fast(), anonymous())
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.Push(context.Background(), "x/y", "", img)
	var re *Error
	if !errors.As(err, &re) || re.TLS == nil || re.Attempts != 1 || re.Status != 0 || re.Temporary() {
		t.Fatalf("err = %v (%+v), want a TLS error after 1 attempt", err, re)
	}
	for _, want := range []string{"registry " + host + ": TLS handshake with " + host + " failed", "certificate signed by unknown authority"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "400 Bad Request") {
		t.Errorf("error %q still speaks of the plain-HTTP fallback's 400", err)
	}
	if fix := re.TLS.Fix(); !strings.Contains(fix, "backends.registry.caFile") || !strings.Contains(fix, "insecureRegistries") {
		t.Errorf("fix %q", fix)
	}

	// The CA bundle makes it work; so does listing the host as insecure.
	for _, opt := range []Option{WithCAFile(caFile), WithInsecureRegistries(host), WithInsecureRegistries("127.0.0.1"), WithInsecure(true)} {
		reg, err := NewRemote(host, fast(), anonymous(), opt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Push(context.Background(), "x/y", "t", img); err != nil {
			t.Fatalf("push: %v", err)
		}
		if err := reg.CheckPush(context.Background(), "x/y"); err != nil {
			t.Fatalf("check push: %v", err)
		}
	}
	// Another port of the host is not listed.
	reg, _ = NewRemote(host, fast(), anonymous(), WithInsecureRegistries("127.0.0.1:1"))
	if _, err := reg.Push(context.Background(), "x/y", "", img); !errors.As(err, &re) || re.TLS == nil {
		t.Fatalf("insecure entry for another port: %v", err)
	}
	if _, err := NewRemote(host, WithCAFile(filepath.Join(t.TempDir(), "none.pem"))); err == nil || !strings.Contains(err.Error(), "backends.registry.caFile") {
		t.Fatalf("missing CA file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("not pem\n"), 0o644)
	if _, err := NewRemote(host, WithCAFile(empty)); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("CA file without certificates: %v", err)
	}
}

func TestHostListed(t *testing.T) {
	for _, c := range []struct {
		list []string
		host string
		want bool
	}{
		{[]string{"reg.example:5000"}, "reg.example:5000", true},
		{[]string{"reg.example:5000"}, "reg.example:5001", false},
		{[]string{"reg.example"}, "reg.example:5001", true},
		{[]string{"https://reg.example/"}, "reg.example", true},
		{[]string{"[::1]"}, "[::1]:5000", true},
		{[]string{"[::1]:5000"}, "[::1]:5000", true},
		{[]string{"other"}, "reg.example", false},
	} {
		if got := hostListed(c.list, c.host); got != c.want {
			t.Errorf("hostListed(%q, %q) = %v", c.list, c.host, got)
		}
	}
}

// fakeClock is the retry clock of a test: it moves only when a wait is
// "slept" (recorded, at once) or when the test advances it, so what the
// retry window allows does not depend on how fast the machine is.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.t = c.t.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// withClock makes c the registry's retry clock.
func withClock(c *fakeClock) Option {
	return func(o *options) { o.now, o.sleep = c.now, c.sleep }
}

// TestRetryAfterHonoured: a 429 or 503 with Retry-After (seconds or an
// HTTP date) waits what it asks instead of the backoff; one past the retry
// window ends the retries at once, saying so.
func TestRetryAfterHonoured(t *testing.T) {
	inner := newHandler(t)
	for _, c := range []struct {
		name   string
		header func(now time.Time) string
		want   time.Duration
	}{
		{"seconds", func(time.Time) string { return "1" }, time.Second},
		{"HTTP date", func(now time.Time) string { return now.Add(3 * time.Second).Format(http.TimeFormat) }, 3 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock()
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/" && n.Add(1) == 1 {
					w.Header().Set("Retry-After", c.header(clock.now()))
					writeRegError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "slow down")
					return
				}
				inner.ServeHTTP(w, r)
			}))
			defer srv.Close()
			var logged bytes.Buffer
			logger := logrus.New()
			logger.SetOutput(&logged)
			reg, _ := NewRemote(srv.Listener.Addr().String(), WithRetry(3, time.Millisecond), anonymous(), WithLogger(logger), withClock(clock))
			if _, err := reg.Push(context.Background(), "x/y", "", testImage(t, map[string]string{"a": "b"})); err != nil {
				t.Fatal(err)
			}
			// The backoff is 1 ms: one wait of what the registry asked.
			if got := clock.slept(); len(got) != 1 || got[0] != c.want {
				t.Fatalf("waits %v, want [%s]", got, c.want)
			}
			if !strings.Contains(logged.String(), "retrying in "+c.want.String()) {
				t.Fatalf("log: %s", logged.String())
			}
		})
	}

	// A Retry-After beyond the retry window ends the retries at once, saying so.
	clock := newFakeClock()
	far := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			w.Header().Set("Retry-After", "120")
			writeRegError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "maintenance")
			return
		}
		inner.ServeHTTP(w, r)
	})
	srv2 := httptest.NewServer(far)
	defer srv2.Close()
	reg, _ := NewRemote(srv2.Listener.Addr().String(), WithRetry(5, time.Millisecond), WithRetryWindow(2*time.Second), anonymous(), withClock(clock))
	_, err := reg.Push(context.Background(), "x/y", "", testImage(t, map[string]string{"a": "b"}))
	var re *Error
	if !errors.As(err, &re) || re.Status != 503 || re.Attempts != 1 || re.RetryAfter != 2*time.Minute || len(clock.slept()) != 0 ||
		!strings.Contains(err.Error(), "answered 503 Service Unavailable (after 1 attempts; it asked to retry after 2m0s, past the retry window of 2s)") {
		t.Fatalf("err = %v (%+v), waits %v", err, re, clock.slept())
	}
}

// TestRetryWindowBoundsRetries: no wait is begun that would end past the
// retry window, counted from the first attempt's start, the attempts' own
// time included (the clock is the test's: exact on any machine).
func TestRetryWindowBoundsRetries(t *testing.T) {
	for _, c := range []struct {
		name     string
		attempt  time.Duration // how long each attempt takes
		attempts int
		waits    []time.Duration
	}{
		// Waits 50, 100, 200 ms fit in 400 ms; the next (400 ms) does not.
		{"instant attempts", 0, 4, []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}},
		// 30+50+30+100+30 = 240 ms when the third attempt fails: 200 more end past 400.
		{"30 ms attempts", 30 * time.Millisecond, 3, []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock()
			inner, count := faulty(newHandler(t), http.StatusServiceUnavailable, 1<<30)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					clock.advance(c.attempt) // one ping per attempt
				}
				inner.ServeHTTP(w, r)
			})
			srv := httptest.NewServer(h)
			defer srv.Close()
			reg, _ := NewRemote(srv.Listener.Addr().String(), WithRetry(1000, 50*time.Millisecond), WithRetryWindow(400*time.Millisecond), anonymous(), withClock(clock))
			_, err := reg.Push(context.Background(), "x/y", "", testImage(t, map[string]string{"a": "b"}))
			var re *Error
			if !errors.As(err, &re) || re.Attempts != c.attempts || re.Window != 400*time.Millisecond || !reflect.DeepEqual(clock.slept(), c.waits) {
				t.Fatalf("err = %v (%+v), waits %v, %d requests", err, re, clock.slept(), count.Load())
			}
			if want := fmt.Sprintf("(after %d attempts in the retry window of 400ms)", c.attempts); !strings.Contains(err.Error(), want) {
				t.Fatalf("message %q lacks %q", err, want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{"3": 3 * time.Second, "Tue, 01 Dec 2026 12:00:30 GMT": 30 * time.Second, "Tue, 01 Dec 2026 11:00:00 GMT": 0} {
		if d, ok := parseRetryAfter(v, now); !ok || d != want {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s", v, d, ok, want)
		}
	}
	for _, v := range []string{"", "-1", "soon"} {
		if _, ok := parseRetryAfter(v, now); ok {
			t.Errorf("parseRetryAfter(%q) accepted", v)
		}
	}
}

func TestCheckPush(t *testing.T) {
	var uploads, cancels atomic.Int32
	inner := basicAuth(newHandler(t), "robot", "s3cret-pw")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/uploads/") {
			if r.Method == http.MethodPost {
				uploads.Add(1)
			} else if r.Method == http.MethodDelete {
				cancels.Add(1)
			}
		}
		inner.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	host := srv.Listener.Addr().String()
	env := map[string]string{"REGISTRY_USERNAME": "robot", "REGISTRY_PASSWORD": "wrong"}
	reg, _ := NewRemote(host, fast(), WithGetenv(func(k string) string { return env[k] }))
	err := reg.CheckPush(context.Background(), "x/y")
	var re *Error
	if !errors.As(err, &re) || !re.Unauthorized() || re.Attempts != 1 || re.Op != "check push access to" ||
		!strings.Contains(err.Error(), "check push access to "+host+"/x/y: registry "+host+" answered 401 Unauthorized (credentials: REGISTRY_USERNAME/REGISTRY_PASSWORD)") {
		t.Fatalf("wrong password: %v", err)
	}
	env["REGISTRY_PASSWORD"] = "s3cret-pw"
	reg, _ = NewRemote(host, fast(), WithGetenv(func(k string) string { return env[k] }))
	if err := reg.CheckPush(context.Background(), "x/y"); err != nil {
		t.Fatal(err)
	}
	if uploads.Load() < 1 || cancels.Load() < 1 {
		t.Fatalf("uploads started %d, cancelled %d", uploads.Load(), cancels.Load())
	}
}

// TestStaticCredentialsStayWithTheirRegistry: REGISTRY_USERNAME/PASSWORD
// are not sent to another registry (a base image's).
func TestStaticCredentialsStayWithTheirRegistry(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	env := map[string]string{"REGISTRY_USERNAME": "robot", "REGISTRY_PASSWORD": "pw"}
	reg, err := NewRemote("reg.example:5000", WithGetenv(func(k string) string { return env[k] }))
	if err != nil {
		t.Fatal(err)
	}
	own, _ := reg.o.keychain.Resolve(mustRepo(t, "reg.example:5000/x"))
	other, _ := reg.o.keychain.Resolve(mustRepo(t, "docker.io/library/debian"))
	oc, _ := own.Authorization()
	xc, _ := other.Authorization()
	if oc.Username != "robot" || xc.Username != "" || other != authn.Anonymous {
		t.Fatalf("own %+v, other %+v", oc, xc)
	}
}

// TestOpenAppliesTLSAndRetrySettings: the backend's configuration
// (caFile, insecureRegistries, retryWindow) reaches the registry Open returns.
func TestOpenAppliesTLSAndRetrySettings(t *testing.T) {
	ctx := context.Background()
	host, caFile := tlsRegistry(t, newHandler(t))
	for _, c := range []struct {
		name   string
		b      config.RegistryBackend
		tlsErr bool
		window time.Duration
	}{
		{"caFile", config.RegistryBackend{Type: TypeOCI, Host: host, CAFile: caFile, RetryWindow: config.Duration{Duration: 30 * time.Second}}, false, 30 * time.Second},
		{"insecureRegistries", config.RegistryBackend{Type: TypeOCI, Host: host, InsecureRegistries: []string{host}}, false, DefaultWindow},
		{"insecure", config.RegistryBackend{Type: TypeOCI, Host: host, Insecure: true}, false, DefaultWindow},
		{"neither", config.RegistryBackend{Type: TypeOCI, Host: host}, true, DefaultWindow},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg, closeReg, err := Open(ctx, c.b, t.TempDir(), anonymous(), fast())
			if err != nil {
				t.Fatal(err)
			}
			defer closeReg()
			if w := reg.(*Remote).o.window; w != c.window {
				t.Errorf("retry window %s, want %s", w, c.window)
			}
			err = reg.CheckPush(ctx, "x/y")
			var re *Error
			if c.tlsErr != (errors.As(err, &re) && re.TLS != nil) || (!c.tlsErr && err != nil) {
				t.Fatalf("check push: %v", err)
			}
		})
	}
}
