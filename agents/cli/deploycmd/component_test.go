package deploycmd

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
)

// lockForge serves one components lock on the build branch.
type lockForge struct {
	forge.Forge
	files map[string]string // "ref:path" → content
}

func (f lockForge) ReadFile(_ context.Context, ref, path string) ([]byte, error) {
	if s, ok := f.files[ref+":"+path]; ok {
		return []byte(s), nil
	}
	return nil, forge.ErrNotFound
}

func TestComponentImageForKubernetes(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Config{Branches: map[string]string{config.StageBuild: "build-components"}}
	cfg.Deploy.Serving.Component = "serve"
	cfg.Backends.Serving.Type = "kubernetes"
	lock := `{"apiVersion":"branchml.dev/v1","kind":"ComponentsLock","sourceCommit":"abc","registry":"127.0.0.1:5000",
"components":{"serve":{"image":"127.0.0.1:5000/djia30/serve@sha256:` + strings.Repeat("a", 64) + `","binary":"/ko-app/serve"}}}`
	f := lockForge{files: map[string]string{"build-components:" + records.ComponentsLockPath: lock}}
	img, err := componentImage(ctx, cfg, f)
	if err != nil || img != "127.0.0.1:5000/djia30/serve@sha256:"+strings.Repeat("a", 64) {
		t.Fatalf("componentImage = %q, %v", img, err)
	}

	cfg.Deploy.Serving.Component = "train"
	_, err = componentImage(ctx, cfg, f)
	var ae *agent.Error
	if !errors.As(err, &ae) || ae.Code != agent.ExitUsage || !strings.Contains(err.Error(), `"train" is not in the components lock of build-components`) {
		t.Fatalf("unknown component: %v", err)
	}
	cfg.Deploy.Serving.Component = "serve"
	_, err = componentImage(ctx, cfg, lockForge{})
	if !errors.As(err, &ae) || !strings.Contains(ae.Fix, "or set deploy.serving.image") {
		t.Fatalf("no lock: %v", err)
	}
	cfg.Deploy.Serving.Component = ""
	if img, err := componentImage(ctx, cfg, f); img != "" || err != nil {
		t.Fatalf("no component = %q, %v", img, err)
	}
}
