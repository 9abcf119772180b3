package pipelinesfactory

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp/mlmd"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp/objectstore"
	"github.com/branchml/branchml/agents/backends/pipelines/local"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/secrets"
	"github.com/branchml/branchml/agents/internal/statedir"
)

// Type names of backends.pipelines.type.
const (
	TypeKFP   = "kfp"
	TypeLocal = "local"
)

// TokenEnv is the environment variable (or TokenEnv+"_FILE") holding the
// KFP bearer token.
const TokenEnv = "KFP_TOKEN"

// Environment variables (each also as <NAME>_FILE) of the object store's
// credentials, as S3 clients name them.
const (
	AccessKeyEnv    = "AWS_ACCESS_KEY_ID"
	SecretKeyEnv    = "AWS_SECRET_ACCESS_KEY"
	SessionTokenEnv = "AWS_SESSION_TOKEN"
)

type options struct {
	getenv     func(string) string
	httpClient *http.Client
	log        logrus.FieldLogger
	runner     *runner.Runner
	kfpOpts    []kfp.Option
	localOpts  []local.Option
}

// Option configures New.
type Option func(*options)

// WithGetenv reads the environment (KFP_TOKEN, state directory) through
// getenv instead of os.Getenv (for tests).
func WithGetenv(getenv func(string) string) Option { return func(o *options) { o.getenv = getenv } }

// WithHTTPClient gives the KFP client its http.Client (then the TLS
// settings of the config must be on it: New rejects both).
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.httpClient = hc } }

// WithLogger logs the backend's retries and decisions.
func WithLogger(log logrus.FieldLogger) Option { return func(o *options) { o.log = log } }

// WithRunner is the runner of the local backend (required for "local").
func WithRunner(r *runner.Runner) Option { return func(o *options) { o.runner = r } }

// WithLocalOptions adds options of the local backend (local.WithAdoption,
// local.WithLogf).
func WithLocalOptions(opts ...local.Option) Option {
	return func(o *options) { o.localOpts = append(o.localOpts, opts...) }
}

// WithKFPOptions adds options of the KFP client (retry policy, timeouts).
func WithKFPOptions(opts ...kfp.Option) Option {
	return func(o *options) { o.kfpOpts = append(o.kfpOpts, opts...) }
}

// New returns the backend of cfg.Backends.Pipelines. For "kfp" it needs
// an endpoint and reads the token from KFP_TOKEN or KFP_TOKEN_FILE (none:
// no Authorization header), and reads task outputs through
// backends.pipelines.metadata and objectStore when set (see outputStores); for "local" a runner (WithRunner), and it
// keeps its data under the state directory's "pipelines" folder. An
// unknown type is an error naming the allowed ones.
func New(cfg *config.Config, opts ...Option) (pipelines.Backend, error) {
	o := options{getenv: os.Getenv}
	for _, opt := range opts {
		opt(&o)
	}
	pb := cfg.Backends.Pipelines
	switch pb.Type {
	case TypeKFP:
		if pb.Endpoint == "" {
			return nil, fmt.Errorf("backends.pipelines.endpoint: empty; set the KFP API server URL, e.g. https://kfp.example.com")
		}
		token, err := secrets.GetFrom(o.getenv, TokenEnv)
		if err != nil {
			return nil, err
		}
		kopts := []kfp.Option{kfp.WithNamespace(pb.Namespace), kfp.WithToken(token)}
		if o.httpClient != nil {
			kopts = append(kopts, kfp.WithHTTPClient(o.httpClient))
		}
		if pb.CAFile != "" || pb.InsecureSkipVerify {
			kopts = append(kopts, kfp.WithTLS(pb.CAFile, pb.InsecureSkipVerify))
		}
		if o.log != nil {
			kopts = append(kopts, kfp.WithLogger(o.log))
		}
		outputs, err := outputStores(pb, o.getenv)
		if err != nil {
			return nil, err
		}
		c, err := kfp.New(pb.Endpoint, append(append(kopts, outputs...), o.kfpOpts...)...)
		if err != nil {
			return nil, fmt.Errorf("backends.pipelines: %w", err)
		}
		return c, nil
	case TypeLocal:
		if o.runner == nil {
			return nil, fmt.Errorf("backends.pipelines type local: no runner given (backends.WithRunner)")
		}
		return local.New(statedir.DirFrom(o.getenv, cfg)+"/pipelines", o.runner, o.localOpts...)
	default:
		return nil, fmt.Errorf("backends.pipelines.type %q: unknown; use %q or %q", pb.Type, TypeKFP, TypeLocal)
	}
}

// outputStores are the KFP client options that read task outputs: ML
// Metadata at backends.pipelines.metadata.address and the object store at
// backends.pipelines.objectStore.endpoint (credentials from
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN or their _FILE
// variables). Either may be unset.
func outputStores(pb config.PipelinesBackend, getenv func(string) string) ([]kfp.Option, error) {
	var opts []kfp.Option
	if m := pb.Metadata; m.Address != "" {
		var tc *tls.Config
		if m.TLS || m.CAFile != "" {
			tc = &tls.Config{}
			if m.CAFile != "" {
				pem, err := os.ReadFile(m.CAFile)
				if err != nil {
					return nil, fmt.Errorf("backends.pipelines.metadata.caFile: %w", err)
				}
				tc.RootCAs = x509.NewCertPool()
				if !tc.RootCAs.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("backends.pipelines.metadata.caFile %s: no PEM certificates in it", m.CAFile)
				}
			}
		}
		c, err := mlmd.Dial(m.Address, tc)
		if err != nil {
			return nil, fmt.Errorf("backends.pipelines.metadata: %w", err)
		}
		opts = append(opts, kfp.WithMetadata(c))
	}
	if osc := pb.ObjectStore; osc.Endpoint != "" {
		cfg := objectstore.Config{Endpoint: osc.Endpoint, Region: osc.Region, Bucket: osc.Bucket, CAFile: osc.CAFile, InsecureSkipVerify: osc.InsecureSkipVerify}
		for _, v := range []struct {
			name string
			to   *string
		}{{AccessKeyEnv, &cfg.AccessKeyID}, {SecretKeyEnv, &cfg.SecretAccessKey}, {SessionTokenEnv, &cfg.SessionToken}} {
			val, err := secrets.GetFrom(getenv, v.name)
			if err != nil {
				return nil, err
			}
			*v.to = val
		}
		st, err := objectstore.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("backends.pipelines.objectStore: %w", err)
		}
		opts = append(opts, kfp.WithObjectStore(st))
	}
	return opts, nil
}

// NewRunner is the local runner of cfg: images from images,
// backends.pipelines.parallelism, the runner's isolation and runtime
// (backends.pipelines.runner), the local secrets directory (default
// <stateDir>/secrets) and the task cache at <stateDir>/pipelines/cache
// unless runner.cache is false. opts come last (volumes, logging, progress).
func NewRunner(cfg *config.Config, images runner.Images, opts ...runner.Option) *runner.Runner {
	pb := cfg.Backends.Pipelines
	sd := statedir.Dir(cfg)
	secrets := pb.Runner.SecretsDir
	if secrets == "" {
		secrets = filepath.Join(sd, "secrets")
	} else if !filepath.IsAbs(secrets) && cfg.Dir != "" {
		secrets = filepath.Join(cfg.Dir, secrets)
	}
	base := []runner.Option{runner.WithParallelism(pb.Parallelism), runner.WithIsolation(pb.Runner.Isolation), runner.WithRuntime(pb.Runner.Runtime), runner.WithSecretsDir(secrets)}
	if pb.Runner.Cache == nil || *pb.Runner.Cache {
		base = append(base, runner.WithCacheDir(filepath.Join(sd, "pipelines", "cache")))
	}
	return runner.New(images, append(base, opts...)...)
}
