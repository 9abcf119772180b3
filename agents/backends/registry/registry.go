package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
	// Push writes img to repository and tags it with tag ("" = by digest
	// only). Blobs already present are not uploaded again.
	Push(ctx context.Context, repository, tag string, img v1.Image) (Pushed, error)
	// Pull returns the image at ref ("host/repo@sha256:…" or "host/repo:tag").
	Pull(ctx context.Context, ref string) (v1.Image, error)
}

// Defaults of the retry policy: 4 attempts, waiting 500 ms, 1 s, 2 s between
// them; each attempt bounded by 2 minutes.
var (
	DefaultAttempts       = 4
	DefaultBackoff        = 500 * time.Millisecond
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

// WithAttemptTimeout bounds each attempt of an operation.
func WithAttemptTimeout(d time.Duration) Option { return func(o *options) { o.attemptTimeout = d } }

// WithLogger logs retries to l.
func WithLogger(l logrus.FieldLogger) Option { return func(o *options) { o.log = l } }

// WithGetenv replaces os.Getenv for the credential variables (for tests).
func WithGetenv(getenv func(string) string) Option { return func(o *options) { o.getenv = getenv } }

// WithInsecure allows plain HTTP to the registry.
func WithInsecure(insecure bool) Option { return func(o *options) { o.insecure = insecure } }

func buildOptions(opts []Option) (*options, error) {
	o := &options{attempts: DefaultAttempts, backoff: DefaultBackoff, attemptTimeout: DefaultAttemptTimeout,
		transport: remote.DefaultTransport, getenv: os.Getenv}
	for _, opt := range opts {
		opt(o)
	}
	if o.attempts < 1 {
		return nil, fmt.Errorf("registry retry: attempts must be at least 1, got %d", o.attempts)
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
		return staticKeychain{authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}, "REGISTRY_USERNAME/REGISTRY_PASSWORD", nil
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

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

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
	return &Remote{host: host, o: o}, nil
}

// Host returns the host[:port][/prefix] images are pushed under.
func (r *Remote) Host() string { return r.host }

// Credentials names where the credentials come from.
func (r *Remote) Credentials() string { return r.o.credSource }

func (r *Remote) nameOpts() []name.Option {
	if r.o.insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

func (r *Remote) remoteOpts(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(r.o.keychain),
		remote.WithTransport(r.o.transport),
		// branchml retries whole operations itself (see do); one try inside.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithJobs(4),
	}
}

// do runs op with the retry policy and wraps its failure in *Error.
func (r *Remote) do(ctx context.Context, opName, ref string, op func(ctx context.Context) error) error {
	p := retry.Policy{Attempts: r.o.attempts, Initial: r.o.backoff,
		Retriable: func(err error) bool { return temporary(statusOf(err), err) },
		OnRetry: func(attempt int, wait time.Duration, err error) {
			r.o.log.Warnf("%s %s: attempt %d of %d failed (%v); retrying in %s", opName, ref, attempt, r.o.attempts, err, wait)
		}}
	err := retry.Do(ctx, p, func(_ context.Context, _ int) error {
		actx, cancel := context.WithTimeout(ctx, r.o.attemptTimeout)
		err := op(actx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	})
	var re *retry.Error
	if !errors.As(err, &re) {
		return err
	}
	if re.Context != nil {
		return &Error{Registry: r.registryHost(), Op: opName, Ref: ref, Credentials: r.o.credSource, Attempts: re.Attempts, Err: re.Context}
	}
	return &Error{Registry: r.registryHost(), Op: opName, Ref: ref, Status: statusOf(re.Err),
		Credentials: r.o.credSource, Attempts: re.Attempts, Err: re.Err}
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
	repo, err := r.repo(repository)
	if err != nil {
		return Pushed{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return Pushed{}, fmt.Errorf("digest of image for %s: %w", repository, err)
	}
	var ref name.Reference = repo.Digest(d.String())
	if tag != "" {
		if ref, err = name.NewTag(repo.Name()+":"+tag, r.nameOpts()...); err != nil {
			return Pushed{}, fmt.Errorf("image tag %q: %w", tag, err)
		}
	}
	err = r.do(ctx, "push", ref.Name(), func(ctx context.Context) error {
		return remote.Write(ref, img, r.remoteOpts(ctx)...)
	})
	if err != nil {
		return Pushed{}, err
	}
	return Pushed{Ref: repo.Digest(d.String()).Name(), Digest: d.String()}, nil
}

// Pull returns the image at ref; its layers are read lazily with ctx. A ref
// that names an index is resolved for linux/amd64 (go-containerregistry's
// default platform). The attempt timeout does not bound a pull.
func (r *Remote) Pull(ctx context.Context, ref string) (v1.Image, error) {
	nref, err := name.ParseReference(ref, r.nameOpts()...)
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

// Registry backend types of config.RegistryBackend.Type.
const (
	TypeLocal = "local"
	TypeOCI   = "oci"
)

// Open returns the registry backend b names: "local" (the embedded registry
// of stateDir, started in this process when none answers, see EnsureLocal;
// its address is b.Addr when set) or "oci" (the registry at b.Host). close
// releases it (stops an in-process registry). An unknown type is an error.
func Open(ctx context.Context, b config.RegistryBackend, stateDir string, opts ...Option) (reg Registry, close func(), err error) {
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
