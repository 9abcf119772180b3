package servingfactory_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/branchml/branchml/agents/backends/serving/kubernetes"
	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/backends/serving/servingfactory"
	"github.com/branchml/branchml/agents/config"
)

func TestNew(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Config{}
	cfg.Deploy.Model = "djia30"
	cfg.Training.Model.Volume = "djia30-model"
	cfg.Backends.Serving.Type = "nope"
	if _, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{}); err == nil || !strings.Contains(err.Error(), `backends.serving.type "nope": use local or kubernetes`) {
		t.Fatalf("unknown type: %v", err)
	}
	cfg.Backends.Serving.Type = "local"
	if _, _, err := servingfactory.New(ctx, cfg, servingfactory.Options{StateDir: t.TempDir()}); !errors.Is(err, local.ErrNoPlane) || !strings.Contains(err.Error(), "branchml serve --model djia30") {
		t.Fatalf("local with no plane running: %v", err)
	}
	b, closeFn, err := servingfactory.New(ctx, cfg, servingfactory.Options{StateDir: t.TempDir(), ServeCommand: []string{"/bin/true"}, Host: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*local.Backend); !ok {
		t.Fatalf("local: got %T", b)
	}
	_ = closeFn(ctx)
	cfg.Backends.Serving.Type = "kubernetes"
	cfg.Deploy.Serving.Image = "tensorflow/serving:2.14.1"
	b, _, err = servingfactory.New(ctx, cfg, servingfactory.Options{Kube: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*kubernetes.Backend); !ok {
		t.Fatalf("kubernetes: got %T", b)
	}
}
