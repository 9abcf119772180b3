package factory_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/serving/factory"
	"github.com/branchml/branchml/agents/serving/kubernetes"
	"github.com/branchml/branchml/agents/serving/local"
)

func TestNew(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Config{}
	cfg.Deploy.Model = "djia30"
	cfg.Training.Model.Volume = "djia30-model"
	cfg.Backends.Serving.Type = "nope"
	if _, _, err := factory.New(ctx, cfg, factory.Options{}); err == nil || !strings.Contains(err.Error(), `backends.serving.type "nope": use local or kubernetes`) {
		t.Fatalf("unknown type: %v", err)
	}
	cfg.Backends.Serving.Type = "local"
	if _, _, err := factory.New(ctx, cfg, factory.Options{StateDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "deploy.serving.command") {
		t.Fatalf("local without command: %v", err)
	}
	b, closeFn, err := factory.New(ctx, cfg, factory.Options{StateDir: t.TempDir(), ServeCommand: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*local.Backend); !ok {
		t.Fatalf("local: got %T", b)
	}
	_ = closeFn(ctx)
	cfg.Backends.Serving.Type = "kubernetes"
	cfg.Deploy.Serving.Image = "tensorflow/serving:2.14.1"
	b, _, err = factory.New(ctx, cfg, factory.Options{Kube: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*kubernetes.Backend); !ok {
		t.Fatalf("kubernetes: got %T", b)
	}
}
