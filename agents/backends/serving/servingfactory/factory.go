package servingfactory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/kubernetes"
	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/config"
)

// ErrConfig is wrapped by New's errors that a setting causes (a value it
// refuses, a kubeconfig that cannot be loaded): the commands exit 2 for
// them, as for any bad configuration; other errors are failures (exit 1).
var ErrConfig = errors.New("serving configuration")

// configError is err, matching ErrConfig (errors.Is) without changing its text.
type configError struct{ error }

func (configError) Is(target error) bool { return target == ErrConfig }
func (e configError) Unwrap() error      { return e.error }

func configErrorf(format string, a ...any) error { return configError{fmt.Errorf(format, a...)} }

// Options are what the backends need beyond the configuration.
type Options struct {
	// ServeCommand is the local serving argv (default deploy.serving.command);
	// the lead resolves deploy.serving.component to a local binary and passes it here.
	ServeCommand []string
	// StateDir overrides backends.stateDir.
	StateDir string
	// Host makes the local backend host the serving plane in this process
	// when none runs (closing it stops the plane); Spawn is the argv of a
	// detached process to start instead (e.g. "branchml-deploy serve …"),
	// which keeps serving after this process ends. Neither: the plane must
	// run already. Owner names the hosting process.
	Host  bool
	Spawn []string
	Owner string
	// Image is the serving image for Kubernetes when deploy.serving.image is
	// empty (the component's pinned image from the components lock).
	Image string
	// Kube is the client; nil builds one from backends.serving.kubeconfig
	// (or in-cluster / $KUBECONFIG).
	Kube k8s.Interface
	// RESTConfig is Kube's configuration, for backends.serving.access
	// apiserver (nil builds it as for Kube).
	RESTConfig *rest.Config
	Log        logrus.FieldLogger
}

// StateDir returns the local state directory: backends.stateDir, else
// $XDG_STATE_HOME/branchml, else ~/.local/state/branchml.
func StateDir(cfg *config.Config) string {
	if cfg.Backends.StateDir != "" {
		return cfg.Path(cfg.Backends.StateDir)
	}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "branchml")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "branchml")
}

// New returns the configured backend, started, and a close function (the
// local backend gives its rollout leases back, and stops the serving plane
// only when it hosts it).
func New(ctx context.Context, cfg *config.Config, o Options) (serving.Backend, func(context.Context) error, error) {
	switch t := cfg.Backends.Serving.Type; t {
	case "", local.Name:
		cmd := o.ServeCommand
		if len(cmd) == 0 {
			cmd = cfg.Deploy.Serving.Command
		}
		dir := o.StateDir
		if dir == "" {
			dir = StateDir(cfg)
		}
		opts := []local.Option{local.WithStateDir(dir), local.WithAddr(cfg.Backends.Serving.Addr)}
		if o.Log != nil {
			opts = append(opts, local.WithLogger(o.Log))
		}
		if o.Host {
			opts = append(opts, local.WithHost())
		}
		if len(o.Spawn) > 0 {
			opts = append(opts, local.WithSpawn(o.Spawn...))
		}
		if o.Owner != "" {
			opts = append(opts, local.WithOwner(o.Owner))
		}
		b, err := local.New(cfg.Deploy.Model, cmd, opts...)
		if err != nil {
			return nil, nil, err
		}
		if _, err := b.Start(ctx); err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	case kubernetes.Name:
		access := cfg.Backends.Serving.Access
		if access != "" && access != "cluster" && access != "apiserver" {
			return nil, nil, configErrorf("backends.serving.access %q: use cluster (the agent runs in the cluster) or apiserver (through the API server's proxy, from outside)", access)
		}
		cs, rc := o.Kube, o.RESTConfig
		if rc == nil && (cs == nil || access == "apiserver") {
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			if kc := cfg.Backends.Serving.Kubeconfig; kc != "" {
				rules.ExplicitPath = cfg.Path(kc)
			}
			var err error
			rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				return nil, nil, configErrorf("kubernetes client config (backends.serving.kubeconfig, $KUBECONFIG or the in-cluster account): %w", err)
			}
		}
		if cs == nil {
			var err error
			if cs, err = k8s.NewForConfig(rc); err != nil {
				return nil, nil, fmt.Errorf("kubernetes client: %w", err)
			}
		}
		var kopts []kubernetes.Option
		if access == "apiserver" {
			hc, err := rest.HTTPClientFor(rc)
			if err != nil {
				return nil, nil, fmt.Errorf("kubernetes client for the API server's proxy: %w", err)
			}
			host, _, err := rest.DefaultServerUrlFor(rc) // a host without a scheme too, as client-go takes it
			if err != nil {
				return nil, nil, fmt.Errorf("kubernetes API server %q: %w", rc.Host, err)
			}
			kopts = append(kopts, kubernetes.WithAPIServerProxy(host.String(), hc))
		}
		image := cfg.Deploy.Serving.Image
		if image == "" {
			image = o.Image
		}
		replicas := cfg.Deploy.Serving.Replicas
		if replicas == 0 {
			replicas = 2
		}
		kopts = append(kopts, kubernetes.WithReplicas(replicas))
		res, err := containerResources(cfg.Deploy.Serving.Resources)
		if err != nil {
			return nil, nil, configError{err}
		}
		kopts = append(kopts, kubernetes.WithResources(res))
		if a := cfg.Deploy.Serving.Autoscale; a != nil {
			kopts = append(kopts, kubernetes.WithAutoscale(kubernetes.Autoscale{MinReplicas: int32(a.MinReplicas), MaxReplicas: int32(a.MaxReplicas),
				TargetCPUUtilization: int32(a.TargetCPUUtilizationPercentage)}))
		}
		b, err := kubernetes.New(cs, cfg.Backends.Serving.Namespace, cfg.Deploy.Model, image, cfg.Training.Model.Volume, kopts...)
		if err != nil {
			return nil, nil, configError{err} // what New refuses is settings
		}
		return b, func(context.Context) error { return nil }, nil
	default:
		return nil, nil, configErrorf("backends.serving.type %q: use local or kubernetes", t)
	}
}

// containerResources parses deploy.serving.resources (Kubernetes quantities
// by resource name) into a container's requirements; a value that is no
// quantity is an error naming its field.
func containerResources(r config.ContainerResources) (corev1.ResourceRequirements, error) {
	var out corev1.ResourceRequirements
	for _, part := range []struct {
		field string
		in    map[string]string
		out   *corev1.ResourceList
	}{{"requests", r.Requests, &out.Requests}, {"limits", r.Limits, &out.Limits}} {
		for name, v := range part.in {
			q, err := resource.ParseQuantity(v)
			if err != nil {
				return out, fmt.Errorf("deploy.serving.resources.%s.%s %q is not a Kubernetes quantity (e.g. 100m, 0.5, 128Mi): %v", part.field, name, v, err)
			}
			if *part.out == nil {
				*part.out = corev1.ResourceList{}
			}
			(*part.out)[corev1.ResourceName(name)] = q
		}
	}
	return out, nil
}
