package storagefactory

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/backends/storage/local"
	"github.com/branchml/branchml/agents/backends/storage/trident"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/statedir"
)

type options struct {
	log     logrus.FieldLogger
	trident []trident.Option
	local   []local.Option
}

// Option configures New.
type Option func(*options)

// WithLogger sets the logger of the backend's waits.
func WithLogger(l logrus.FieldLogger) Option { return func(o *options) { o.log = l } }

// WithTridentOptions adds options to the trident backend (after the config's).
func WithTridentOptions(opts ...trident.Option) Option {
	return func(o *options) { o.trident = append(o.trident, opts...) }
}

// WithLocalOptions adds options to the local backend.
func WithLocalOptions(opts ...local.Option) Option {
	return func(o *options) { o.local = append(o.local, opts...) }
}

// New returns the storage backend of cfg.Backends.Storage.Type: "local" or
// "" (the embedded backend rooted at statedir.Dir(cfg), the directory
// branchml-train provisions volumes in), or "trident" (the cluster
// of backends.storage.kubeconfig). Any other type is an error naming it.
func New(cfg *config.Config, opts ...Option) (storage.Backend, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	switch t := cfg.Backends.Storage.Type; t {
	case "", "local":
		return local.New(statedir.Dir(cfg), o.local...)
	case "trident":
		topts := o.trident
		if o.log != nil {
			topts = append([]trident.Option{trident.WithLogger(o.log)}, topts...)
		}
		return trident.NewFromConfig(cfg, topts...)
	default:
		return nil, fmt.Errorf("backends.storage.type %q is not a storage backend: use \"local\" or \"trident\"", t)
	}
}
