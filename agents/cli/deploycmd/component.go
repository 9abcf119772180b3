package deploycmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/forgefactory"
	"github.com/branchml/branchml/agents/backends/registry/localimages"
	"github.com/branchml/branchml/agents/backends/storage"
	slocal "github.com/branchml/branchml/agents/backends/storage/local"
	"github.com/branchml/branchml/agents/backends/storage/storagefactory"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/statedir"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/deploy"
)

func init() {
	NewForge = func(_ context.Context, cfg *config.Config, _ agent.BuildContext) (forge.Forge, error) {
		return forgefactory.New(cfg)
	}
}

// componentCommand resolves deploy.serving.component to a local argv: the
// component's image pinned in the components lock on the build branch,
// pulled and unpacked into the image cache, and its binary inside the
// unpacked root. It returns nil when the config names no component.
func componentCommand(e *cli.Env, f forge.Forge) ([]string, func(), error) {
	cfg := e.Config
	comp := cfg.Deploy.Serving.Component
	if comp == "" {
		return nil, func() {}, nil
	}
	lc, err := lockedComponent(e.Ctx, cfg, f, "deploy.serving.command")
	if err != nil {
		return nil, nil, err
	}
	cache, stop, err := localimages.Cache(e.Ctx, cfg, e.Log)
	if err != nil {
		return nil, nil, agent.Failed("open the image cache", err, "")
	}
	img, err := cache.Ensure(e.Ctx, lc.Image)
	if err != nil {
		stop()
		return nil, nil, agent.Failed("pull the serving image "+lc.Image, err, "check that the embedded registry (or backends.registry) serves it")
	}
	bin := lc.Binary
	if bin == "" {
		for _, c := range cfg.Components {
			if c.Name == comp {
				bin = c.Binary
			}
		}
	}
	e.Log.Infof("serving with component %s from %s", comp, lc.Image)
	return []string{filepath.Join(img.RootFS, filepath.FromSlash(bin))}, stop, nil
}

// lockedComponent reads deploy.serving.component's entry of the components
// lock on the build branch; instead names the setting that does without it.
func lockedComponent(ctx context.Context, cfg *config.Config, f forge.Forge, instead string) (records.LockedComponent, error) {
	comp := cfg.Deploy.Serving.Component
	branch := cfg.Branches[config.StageBuild]
	raw, err := f.ReadFile(ctx, branch, records.ComponentsLockPath)
	if err != nil {
		return records.LockedComponent{}, agent.Failed("read "+records.ComponentsLockPath+" on "+branch, err,
			"merge into "+branch+" and let branchml-build write the lock, or set "+instead)
	}
	var lock records.ComponentsLock
	if err := records.ParseJSON(branch+":"+records.ComponentsLockPath, raw, &lock); err != nil {
		return records.LockedComponent{}, agent.Failed("parse "+records.ComponentsLockPath, err, "")
	}
	lc, ok := lock.Components[comp]
	if !ok || lc.Image == "" {
		return records.LockedComponent{}, agent.Usage("serving component", fmt.Errorf("%q is not in the components lock of %s", comp, branch),
			"build the component first, or fix deploy.serving.component")
	}
	return lc, nil
}

// componentImage resolves deploy.serving.component to the image the
// Kubernetes backend's pods run: the one pinned in the components lock on
// the build branch (host/repo@sha256:…, pulled by the kubelet). "" when the
// config names no component.
func componentImage(ctx context.Context, cfg *config.Config, f forge.Forge) (string, error) {
	if cfg.Deploy.Serving.Component == "" {
		return "", nil
	}
	if f == nil {
		return "", agent.Usage("serving component", fmt.Errorf("deploy.serving.component %q needs the forge to read the components lock", cfg.Deploy.Serving.Component),
			"configure backends.forge, or set deploy.serving.image")
	}
	lc, err := lockedComponent(ctx, cfg, f, "deploy.serving.image")
	if err != nil {
		return "", err
	}
	return lc.Image, nil
}

// modelRoot is what a relative model.path of deploy.yaml is relative to on
// the local backends: the model volume's directory of the local storage
// backend when deploy.yaml names a volume that exists there, else the
// workspace.
func modelRoot(cfg *config.Config, ws string) string {
	spec, err := deploy.LoadSpec(filepath.Join(ws, records.DeploySpecPath))
	if err != nil || spec.Model.Volume == "" {
		return ws
	}
	if t := cfg.Backends.Storage.Type; t != "" && t != "local" {
		// A cluster's PVC is a directory here only on the test bed
		// (backends.storage.hostPathDir).
		if cfg.Backends.Storage.HostPathDir == "" {
			return ws
		}
		st, err := storagefactory.New(cfg)
		hp, ok := st.(storage.HostPather)
		if err != nil || !ok {
			return ws
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if dir, err := hp.HostPath(ctx, spec.Model.Volume); err == nil {
			return dir
		}
		return ws
	}
	st, err := slocal.New(statedir.Dir(cfg))
	if err != nil {
		return ws
	}
	dir := st.VolumePath(spec.Model.Volume)
	if _, err := os.Stat(dir); err != nil {
		return ws
	}
	return dir
}
