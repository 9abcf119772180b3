package ociimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The pause image: repository and tag on the test bed's registry, and the
// binary's path in it. The tag only has to match containerd's
// sandbox_image (kubeadm 1.34 would pull registry.k8s.io/pause:3.10.1).
const (
	PauseRepository = "pause"
	PauseTag        = "3.10"
	PauseBinary     = "/pause"
	// PauseUser is the pause image's user, as in Kubernetes' own image
	// (build/pause/Dockerfile: USER 65535:65535).
	PauseUser = "65535:65535"
)

// The model server image: repository on the test bed's registry and the
// binary's path in it (tensorflow/serving's entrypoint name, so a
// Deployment that gives only args runs it).
const (
	ServeRepository = "djia30-serve"
	ServeBinary     = "/usr/bin/tensorflow_model_server"
)

// PushPause builds test/k8s/cmd/pause of the Go module at goModuleRoot
// (the branchml repository) as a static binary, makes an image of it
// (Entrypoint ["/pause"], User PauseUser, Env DefaultPath) and pushes it
// to registryHost ("127.0.0.1:PORT") as PauseRepository:PauseTag.
// It returns the reference "<registryHost>/pause:3.10", for containerd's
// sandbox_image.
func PushPause(ctx context.Context, registryHost, goModuleRoot string) (string, error) {
	ref := registryHost + "/" + PauseRepository + ":" + PauseTag
	if err := CheckLoopbackHost(registryHost); err != nil {
		return "", fmt.Errorf("pause image: %w", err)
	}
	img, err := buildImage(ctx, goModuleRoot, "./test/k8s/cmd/pause", PauseBinary,
		Config{Entrypoint: []string{PauseBinary}, Env: []string{DefaultPath}, User: PauseUser})
	if err != nil {
		return "", fmt.Errorf("pause image: %w", err)
	}
	if _, err := Push(ctx, img, ref); err != nil {
		return "", err
	}
	return ref, nil
}

// PushServe builds examples/djia30/components/serve (its own Go module,
// examples/djia30 under repoRoot) as a static binary, makes an image of it
// at ServeBinary (Entrypoint [ServeBinary], no Cmd, Env DefaultPath, user
// root) and pushes it to registryHost as ServeRepository:<tag>, where tag
// is "sha256-" and the first 12 hex digits of the manifest digest: a new
// binary gets a new tag, so a node never runs a stale image of the same
// name. It returns "<registryHost>/djia30-serve:<tag>".
//
// The server binds --rest_api_host (default 0.0.0.0), so the kubelet's
// readiness probe reaches it on the pod IP.
func PushServe(ctx context.Context, registryHost, repoRoot string) (string, error) {
	return pushServe(ctx, registryHost, repoRoot)
}

// PushFaultyServe is PushServe of the fault-injecting build of the server
// (go build -tags faultinject: every predict request fails with HTTP 500,
// TF Serving's INTERNAL, counted in its metrics; status, metadata and
// metrics answer as usual), for a canary that fails on real pods. Its
// images have their own tags (another binary, another digest).
func PushFaultyServe(ctx context.Context, registryHost, repoRoot string) (string, error) {
	return pushServe(ctx, registryHost, repoRoot, "faultinject")
}

func pushServe(ctx context.Context, registryHost, repoRoot string, tags ...string) (string, error) {
	if err := CheckLoopbackHost(registryHost); err != nil {
		return "", fmt.Errorf("serve image: %w", err)
	}
	img, err := buildImage(ctx, filepath.Join(repoRoot, "examples", "djia30"), "./components/serve", ServeBinary,
		Config{Entrypoint: []string{ServeBinary}, Env: []string{DefaultPath}}, tags...)
	if err != nil {
		return "", fmt.Errorf("serve image: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	ref := registryHost + "/" + ServeRepository + ":sha256-" + strings.TrimPrefix(d.String(), "sha256:")[:12]
	if _, err := Push(ctx, img, ref); err != nil {
		return "", err
	}
	return ref, nil
}

// buildImage builds pkg of the module at moduleDir (BuildStatic, with the
// build tags) and returns the image of the binary at imagePath with cfg.
func buildImage(ctx context.Context, moduleDir, pkg, imagePath string, cfg Config, tags ...string) (v1.Image, error) {
	if _, err := os.Stat(filepath.Join(moduleDir, "go.mod")); err != nil {
		return nil, fmt.Errorf("no Go module at %s (%v): give the branchml repository's root", moduleDir, err)
	}
	tmp, err := os.MkdirTemp("", "branchml-ociimage-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, filepath.Base(imagePath))
	if err := BuildStatic(ctx, moduleDir, pkg, bin, tags...); err != nil {
		return nil, err
	}
	return FromFiles([]File{{Source: bin, Path: imagePath, Mode: 0o755}}, cfg)
}
