package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/retry"
	"github.com/branchml/branchml/agents/internal/secrets"
)

// Pushed is an image in a registry.
type Pushed struct {
	// Ref is the pinned reference "host/repository@sha256:<hex>".
	Ref string
	// Digest is the manifest digest "sha256:<hex>".
	Digest string
}

// Registry is where component images are pushed and pulled. Repositories are
// given without the registry host ("djia30/train").
type Registry interface {
	// Host is the registry host[:port] (with a path prefix for a hosted
	// namespace, e.g. "ghcr.io/acme") that references start with.
	Host() string
	// Has reports whether repository holds the manifest digest ("sha256:<hex>").
	Has(ctx context.Context, repository, digest string) (bool, error)
	// CheckPush verifies that the credentials may push to repository,
	// without writing anything (an upload is started and cancelled, as ko
	// and crane do). A 401 or 403 is an *Error with Unauthorized true.
	CheckPush(ctx context.Context, repository string) error
	// Push writes img to repository and tags it with tag ("" = by digest
	// only). Blobs already present are not uploaded again.
	Push(ctx context.Context, repository, tag string, img v1.Image) (Pushed, error)
	// PushIndex writes a multi-platform image (an image index and its
	// images) to repository, tagged with tag unless "".
	PushIndex(ctx context.Context, repository, tag string, idx v1.ImageIndex) (Pushed, error)
	// Config returns the config of the image at ref; for an index, that of
	// its first image.
	Config(ctx context.Context, ref string) (*v1.ConfigFile, error)
	// Pull returns the image at ref ("host/repo@sha256:…" or "host/repo:tag").
	Pull(ctx context.Context, ref string) (v1.Image, error)
	// PullPlatform returns the image for platform at ref, in any registry
	// (a base image); an index is resolved for platform.
	PullPlatform(ctx context.Context, ref string, platform v1.Platform) (v1.Image, error)
}

// Defaults of the retry policy: temporary failures are retried for up to a
// minute (DefaultWindow; backoff from 500 ms doubling to at most 8 s, or the
// wait a 429 or 503 asks for with Retry-After), at most 20 attempts, each
// attempt bounded by 2 minutes.
var (
	DefaultAttempts       = 20
	DefaultBackoff        = 500 * time.Millisecond
	DefaultMaxBackoff     = 8 * time.Second
	DefaultWindow         = time.Minute
	DefaultAttemptTimeout = 2 * time.Minute
)

type options struct {
	keychain       authn.Keychain
	credSource     string
	transport      http.RoundTripper
	attempts       int
	backoff        time.Duration
	attemptTimeout time.Duration
	log            logrus.FieldLogger
	getenv         func(string) string
	insecure       bool
	window         time.Duration
	caFile         string
	insecureHosts  []string
	rt             *recorder
	// now and sleep are the clock of the retry window and of Retry-After
	// dates, and the wait between attempts (nil: the retry package's);
	// tests replace them with a clock that moves only when told to.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// Option configures NewRemote, NewLocal and Open.
type Option func(*options)

// WithKeychain replaces the credential lookup (default: REGISTRY_USERNAME and
// REGISTRY_PASSWORD through agents/internal/secrets, else the Docker config).
func WithKeychain(k authn.Keychain, source string) Option {
	return func(o *options) { o.keychain, o.credSource = k, source }
}

// WithTransport sets the HTTP transport (tests wrap it to inject faults).
func WithTransport(t http.RoundTripper) Option { return func(o *options) { o.transport = t } }

// WithRetry sets how many attempts an operation gets and the first wait
// between them (doubled after each attempt). Only temporary errors (see
// Error.Temporary) are retried.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(o *options) { o.attempts, o.backoff = attempts, backoff }
}

// WithRetryWindow bounds how long an operation retries temporary failures
// (default DefaultWindow): no wait, a Retry-After included, is begun that
// would end later than d after the first attempt started.
func WithRetryWindow(d time.Duration) Option { return func(o *options) { o.window = d } }

// WithCAFile trusts the CA certificates of the PEM bundle at path, besides
// the system's, for TLS to every registry (a private CA).
func WithCAFile(path string) Option { return func(o *options) { o.caFile = path } }

// WithInsecureRegistries lists registry hosts ("host[:port]"; without a
// port, every port) reached without verifying their TLS certificate and
// allowed over plain HTTP, as Docker's insecure-registries: for test
// registries only.
func WithInsecureRegistries(hosts ...string) Option {
	return func(o *options) { o.insecureHosts = append(o.insecureHosts, hosts...) }
}

// WithAttemptTimeout bounds each attempt of an operation.
func WithAttemptTimeout(d time.Duration) Option { return func(o *options) { o.attemptTimeout = d } }

// WithLogger logs retries to l.
func WithLogger(l logrus.FieldLogger) Option { return func(o *options) { o.log = l } }

// WithGetenv replaces os.Getenv for the credential variables (for tests).
func WithGetenv(getenv func(string) string) Option { return func(o *options) { o.getenv = getenv } }

// WithInsecure makes the registry's own host insecure (see
// WithInsecureRegistries): plain HTTP allowed, TLS certificate not verified.
func WithInsecure(insecure bool) Option { return func(o *options) { o.insecure = insecure } }

func buildOptions(opts []Option) (*options, error) {
	o := &options{attempts: DefaultAttempts, backoff: DefaultBackoff, attemptTimeout: DefaultAttemptTimeout,
		window: DefaultWindow, transport: remote.DefaultTransport, getenv: os.Getenv, now: time.Now}
	for _, opt := range opts {
		opt(o)
	}
	if o.attempts < 1 {
		return nil, fmt.Errorf("registry retry: attempts must be at least 1, got %d", o.attempts)
	}
	if o.window < 0 {
		return nil, fmt.Errorf("backends.registry.retryWindow must not be negative, got %s", o.window)
	}
	if o.log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		o.log = l
	}
	if o.keychain == nil {
		k, src, err := DefaultKeychain(o.getenv)
		if err != nil {
			return nil, err
		}
		o.keychain, o.credSource = k, src
	}
	return o, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// DefaultKeychain returns the credential lookup of the agents and a name for
// where the credentials come from: REGISTRY_USERNAME and REGISTRY_PASSWORD
// (or their _FILE variants, read through agents/internal/secrets) for every registry
// when both are set, else go-containerregistry's default keychain (the Docker
// config in $DOCKER_CONFIG or ~/.docker/config.json, with credential helpers).
func DefaultKeychain(getenv func(string) string) (authn.Keychain, string, error) {
	user, err := secrets.GetFrom(getenv, "REGISTRY_USERNAME")
	if err != nil {
		return nil, "", err
	}
	pass, err := secrets.GetFrom(getenv, "REGISTRY_PASSWORD")
	if err != nil {
		return nil, "", err
	}
	switch {
	case user != "" && pass != "":
		return staticKeychain{a: authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}, "REGISTRY_USERNAME/REGISTRY_PASSWORD", nil
	case user != "" || pass != "":
		return nil, "", fmt.Errorf("registry credentials: only one of REGISTRY_USERNAME and REGISTRY_PASSWORD is set; set both (or their _FILE variants) or neither")
	}
	src := "Docker config ~/.docker/config.json (none found: anonymous)"
	if d := getenv("DOCKER_CONFIG"); d != "" {
		src = "Docker config in DOCKER_CONFIG=" + d
	} else if home := getenv("HOME"); home != "" {
		if _, err := os.Stat(home + "/.docker/config.json"); err == nil {
			src = "Docker config ~/.docker/config.json"
		}
	}
	return authn.DefaultKeychain, src, nil
}

// staticKeychain answers a for host (every host until NewRemote sets it)
// and the Docker config's credentials for the others.
type staticKeychain struct {
	a    authn.Authenticator
	host string
}

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if k.host == "" || r.RegistryStr() == k.host {
		return k.a, nil
	}
	return authn.DefaultKeychain.Resolve(r)
}

// Remote is any OCI registry reached over HTTP(S).
type Remote struct {
	host string
	o    *options
}

var _ Registry = (*Remote)(nil)

// NewRemote returns the registry at host ("ghcr.io/acme", "127.0.0.1:5000").
func NewRemote(host string, opts ...Option) (*Remote, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://"), "/")
	if host == "" {
		return nil, errors.New("registry host is empty: set backends.registry.host, e.g. ghcr.io/acme")
	}
	if _, err := name.NewRepository(host+"/x", name.StrictValidation); err != nil {
		return nil, fmt.Errorf("registry host %q: %w", host, err)
	}
	r := &Remote{host: host, o: o}
	insecure := append([]string(nil), o.insecureHosts...)
	if o.insecure {
		insecure = append(insecure, r.registryHost())
	}
	if o.rt, err = newRecorder(o.transport, o.caFile, insecure); err != nil {
		return nil, err
	}
	o.rt.now = o.now
	if sk, ok := o.keychain.(staticKeychain); ok {
		// REGISTRY_USERNAME/REGISTRY_PASSWORD are for this registry only,
		// never sent to another (a base image's).
		sk.host = r.registryHost()
		o.keychain = sk
	}
	return r, nil
}

// Host returns the host[:port][/prefix] images are pushed under.
func (r *Remote) Host() string { return r.host }

// Credentials names where the credentials come from.
func (r *Remote) Credentials() string { return r.o.credSource }

func (r *Remote) nameOpts() []name.Option {
	if r.o.insecure || hostListed(r.o.insecureHosts, r.registryHost()) {
		return []name.Option{name.Insecure}
	}
	return nil
}

// refOpts are the name options for a reference to any registry: insecure
// when its host is listed (or is this registry's and it is insecure).
func (r *Remote) refOpts(ref string) []name.Option {
	host, _, _ := strings.Cut(ref, "/")
	if hostListed(r.o.insecureHosts, host) || (r.o.insecure && host == r.registryHost()) {
		return []name.Option{name.Insecure}
	}
	return nil
}

func (r *Remote) remoteOpts(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(r.o.keychain),
		remote.WithTransport(r.o.rt),
		// branchml retries whole operations itself (see do); one try inside.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithJobs(4),
	}
}

// do runs op with the retry policy and wraps its failure in *Error. Each
// attempt's context records what the transport saw: a TLS failure ends the
// retries with a TLSError; a Retry-After on a 429 or 503 sets the wait.
func (r *Remote) do(ctx context.Context, opName, ref string, op func(ctx context.Context) error) error {
	var lastTLS *TLSError
	var lastAfter time.Duration
	p := retry.Policy{Attempts: r.o.attempts, Initial: r.o.backoff, Max: DefaultMaxBackoff, Window: r.o.window,
		Now: r.o.now, Sleep: r.o.sleep,
		Retriable: func(err error) bool { return temporary(statusOf(err), err) },
		OnRetry: func(attempt int, wait time.Duration, err error) {
			r.o.log.Warnf("%s %s: attempt %d failed (%v); retrying in %s", opName, ref, attempt, err, wait.Round(time.Millisecond))
		}}
	err := retry.Do(ctx, p, func(_ context.Context, _ int) error {
		actx, cancel := context.WithTimeout(ctx, r.o.attemptTimeout)
		actx, rec := withAttempt(actx)
		err := op(actx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			return nil
		}
		lastTLS, lastAfter = rec.get()
		if lastTLS != nil {
			return lastTLS // not temporary: the configuration must change
		}
		if lastAfter > 0 && temporary(statusOf(err), err) {
			return retry.After(err, lastAfter)
		}
		return err
	})
	var re *retry.Error
	if !errors.As(err, &re) {
		return err
	}
	e := &Error{Registry: r.registryHost(), Op: opName, Ref: ref, Credentials: r.o.credSource, Attempts: re.Attempts,
		RetryAfter: lastAfter, Window: re.Window}
	switch {
	case re.Context != nil:
		e.Err = re.Context
	case errors.As(re.Err, &e.TLS):
		e.Err = e.TLS
	default:
		e.Status, e.Err = statusOf(re.Err), unwrapAfter(re.Err)
	}
	return e
}

func unwrapAfter(err error) error {
	var ae *retry.AfterError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err
}

func (r *Remote) registryHost() string {
	h, _, _ := strings.Cut(r.host, "/")
	return h
}

func (r *Remote) repo(repository string) (name.Repository, error) {
	repo, err := name.NewRepository(r.host+"/"+repository, r.nameOpts()...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("image repository %q: %w", repository, err)
	}
	return repo, nil
}

// Has reports whether repository holds digest (a HEAD of the manifest).
func (r *Remote) Has(ctx context.Context, repository, digest string) (bool, error) {
	repo, err := r.repo(repository)
	if err != nil {
		return false, err
	}
	ref := repo.Digest(digest)
	found := false
	err = r.do(ctx, "check", ref.Name(), func(ctx context.Context) error {
		_, err := remote.Head(ref, r.remoteOpts(ctx)...)
		if statusOf(err) == http.StatusNotFound {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}

// Push writes img to repository (tagged with tag unless "") and returns its pinned reference.
func (r *Remote) Push(ctx context.Context, repository, tag string, img v1.Image) (Pushed, error) {
	return r.push(ctx, repository, tag, "image", img)
}

// pushable is what Push and PushIndex write: a v1.Image or a v1.ImageIndex
// (remote.Push writes either, with the blobs or images they reference).
type pushable interface {
	remote.Taggable
	Digest() (v1.Hash, error)
}

// push writes t (what: "image" or "index", for errors) to repository,
// tagged with tag unless "", and returns its pinned reference.
func (r *Remote) push(ctx context.Context, repository, tag, what string, t pushable) (Pushed, error) {
	repo, err := r.repo(repository)
	if err != nil {
		return Pushed{}, err
	}
	d, err := t.Digest()
	if err != nil {
		return Pushed{}, fmt.Errorf("digest of %s for %s: %w", what, repository, err)
	}
	pinned := repo.Digest(d.String())
	var ref name.Reference = pinned
	if tag != "" {
		if ref, err = name.NewTag(repo.Name()+":"+tag, r.nameOpts()...); err != nil {
			return Pushed{}, fmt.Errorf("image tag %q: %w", tag, err)
		}
	}
	err = r.do(ctx, "push", ref.Name(), func(ctx context.Context) error {
		return remote.Push(ref, t, r.remoteOpts(ctx)...)
	})
	if err != nil {
		return Pushed{}, err
	}
	return Pushed{Ref: pinned.Name(), Digest: d.String()}, nil
}

// CheckPush starts a blob upload to repository with push scope and
// cancels it: the registry answers 401/403 when the credentials may not push.
func (r *Remote) CheckPush(ctx context.Context, repository string) error {
	repo, err := r.repo(repository)
	if err != nil {
		return err
	}
	return r.do(ctx, "check push access to", repo.Name(), func(ctx context.Context) error {
		auth, err := authn.Resolve(ctx, r.o.keychain, repo)
		if err != nil {
			return err
		}
		tr, err := transport.NewWithContext(ctx, repo.Registry, auth, r.o.rt, []string{repo.Scope(transport.PushScope)})
		if err != nil {
			return err
		}
		client := &http.Client{Transport: tr}
		u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/blobs/uploads/"}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := transport.CheckError(resp, http.StatusAccepted, http.StatusCreated); err != nil {
			return err
		}
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode == http.StatusAccepted {
			if lu, err := resp.Request.URL.Parse(loc); err == nil {
				if del, err := http.NewRequestWithContext(ctx, http.MethodDelete, lu.String(), nil); err == nil {
					if dresp, err := client.Do(del); err == nil {
						dresp.Body.Close()
					}
				}
			}
		}
		return nil
	})
}

// PushIndex writes idx and its images to repository (tagged with tag unless "").
func (r *Remote) PushIndex(ctx context.Context, repository, tag string, idx v1.ImageIndex) (Pushed, error) {
	return r.push(ctx, repository, tag, "index", idx)
}

// Config returns the config of the image at ref (the first image of an index).
func (r *Remote) Config(ctx context.Context, ref string) (*v1.ConfigFile, error) {
	nref, err := name.ParseReference(ref, r.refOpts(ref)...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	var cf *v1.ConfigFile
	err = r.do(ctx, "read config of", nref.Name(), func(ctx context.Context) error {
		desc, err := remote.Get(nref, r.remoteOpts(ctx)...)
		if err != nil {
			return err
		}
		var img v1.Image
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err != nil {
				return err
			}
			im, err := idx.IndexManifest()
			if err != nil {
				return err
			}
			if len(im.Manifests) == 0 {
				return fmt.Errorf("index %s holds no image", ref)
			}
			if img, err = idx.Image(im.Manifests[0].Digest); err != nil {
				return err
			}
		} else if img, err = desc.Image(); err != nil {
			return err
		}
		cf, err = img.ConfigFile()
		return err
	})
	return cf, err
}

// PullPlatform returns the image for platform at ref, from any registry
// (a base image): an index is resolved for platform. The registry's CA
// bundle and insecure hosts apply; credentials come from the keychain
// (REGISTRY_USERNAME/REGISTRY_PASSWORD for this registry only).
func (r *Remote) PullPlatform(ctx context.Context, ref string, platform v1.Platform) (v1.Image, error) {
	nref, err := name.ParseReference(ref, r.refOpts(ref)...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	var img v1.Image
	err = r.do(ctx, "pull", nref.Name(), func(actx context.Context) error {
		i, err := remote.Image(nref, append(r.remoteOpts(ctx), remote.WithPlatform(platform))...)
		if err != nil {
			return err
		}
		if _, err := i.ConfigFile(); err != nil {
			return err
		}
		img = i
		return nil
	})
	return img, err
}

// Pull returns the image at ref; its layers are read lazily with ctx. A ref
// that names an index is resolved for linux/amd64 (go-containerregistry's
// default platform). The attempt timeout does not bound a pull.
func (r *Remote) Pull(ctx context.Context, ref string) (v1.Image, error) {
	nref, err := name.ParseReference(ref, r.refOpts(ref)...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	var img v1.Image
	err = r.do(ctx, "pull", nref.Name(), func(actx context.Context) error {
		// The image reads its layers lazily, after this attempt: it keeps
		// the caller's context, not the attempt's.
		i, err := remote.Image(nref, r.remoteOpts(ctx)...)
		if err != nil {
			return err
		}
		// Fetch the config and layers' descriptors now, inside the retry.
		if _, err := i.ConfigFile(); err != nil {
			return err
		}
		img = i
		return nil
	})
	return img, err
}

// Local is the embedded registry at its current loopback address. Pull
// rewrites the host of any reference to that address, so references recorded
// while the registry had another port still resolve.
type Local struct {
	*Remote
	// Dir is the registry's data directory.
	Dir string
}

var _ Registry = (*Local)(nil)

// NewLocal returns the embedded registry listening at addr with data in dir.
func NewLocal(addr, dir string, opts ...Option) (*Local, error) {
	r, err := NewRemote(addr, append([]Option{WithInsecure(true)}, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Local{Remote: r, Dir: dir}, nil
}

// Pull returns the image at ref, read from this registry whatever host ref names.
func (l *Local) Pull(ctx context.Context, ref string) (v1.Image, error) {
	local, err := Rewrite(ref, l.Host())
	if err != nil {
		return nil, err
	}
	return l.Remote.Pull(ctx, local)
}

// Config returns the config of the image at ref, read from this registry
// whatever host ref names (see Pull).
func (l *Local) Config(ctx context.Context, ref string) (*v1.ConfigFile, error) {
	local, err := Rewrite(ref, l.Host())
	if err != nil {
		return nil, err
	}
	return l.Remote.Config(ctx, local)
}

// Registry backend types of config.RegistryBackend.Type.
const (
	TypeLocal = "local"
	TypeOCI   = "oci"
)

// Open returns the registry backend b names: "local" (the embedded registry
// of stateDir, started in this process when none answers, see EnsureLocal;
// its address is b.Addr when set) or "oci" (the registry at b.Host). b's
// CAFile (give it absolute, or resolved with config.Config.Path),
// InsecureRegistries, Insecure and RetryWindow apply, before opts. close
// releases it (stops an in-process registry). An unknown type is an error.
func Open(ctx context.Context, b config.RegistryBackend, stateDir string, opts ...Option) (reg Registry, close func(), err error) {
	base := []Option{WithCAFile(b.CAFile), WithInsecureRegistries(b.InsecureRegistries...)}
	if b.RetryWindow.Duration > 0 {
		base = append(base, WithRetryWindow(b.RetryWindow.Duration))
	}
	opts = append(base, opts...)
	switch b.Type {
	case TypeLocal, "":
		addr, stop, err := EnsureLocal(ctx, stateDir, b.Addr)
		if err != nil {
			return nil, nil, fmt.Errorf("start the local registry in %s: %w", LocalDir(stateDir), err)
		}
		l, err := NewLocal(addr, LocalDir(stateDir), opts...)
		if err != nil {
			stop()
			return nil, nil, err
		}
		return l, stop, nil
	case TypeOCI:
		r, err := NewRemote(b.Host, append(opts, WithInsecure(b.Insecure))...)
		if err != nil {
			return nil, nil, err
		}
		return r, func() {}, nil
	default:
		return nil, nil, fmt.Errorf("backends.registry.type %q is unknown: use %q or %q", b.Type, TypeLocal, TypeOCI)
	}
}
