package registry

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/branchml/branchml/agents/backends/registry/registrytest"
)

// TestDistributionTLSAndAuth drives Remote against a real Distribution
// registry with htpasswd authentication and TLS from a CA of the test's.
func TestDistributionTLSAndAuth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := registrytest.Start(t, registrytest.Options{TLS: true, Auth: true})
	img := testImage(t, map[string]string{"hello.txt": "hello"})

	// Not trusting its CA: a TLS error at once, naming the fix.
	reg, err := NewRemote(d.Host, fast(), WithGetenv(d.Env()))
	if err != nil {
		t.Fatal(err)
	}
	err = reg.CheckPush(ctx, "ml/hello")
	var re *Error
	if !errors.As(err, &re) || re.TLS == nil || re.Attempts != 1 || !strings.Contains(err.Error(), "TLS handshake with "+d.Host+" failed") ||
		!strings.Contains(err.Error(), "certificate signed by unknown authority") || strings.Contains(err.Error(), "400 Bad Request") {
		t.Fatalf("without the CA: %v", err)
	}

	// With the CA bundle: check, push an image and an index, read them back.
	reg, err = NewRemote(d.Host, fast(), WithGetenv(d.Env()), WithCAFile(d.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.CheckPush(ctx, "ml/hello"); err != nil {
		t.Fatalf("check push: %v", err)
	}
	pushed, err := reg.Push(ctx, "ml/hello", "v1", img)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := reg.Has(ctx, "ml/hello", pushed.Digest); err != nil || !ok {
		t.Fatalf("has = %v, %v", ok, err)
	}
	arm, _ := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "arm64", Config: v1.Config{Labels: map[string]string{"k": "v"}}})
	amd, _ := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64", Config: v1.Config{Labels: map[string]string{"k": "v"}}})
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	ipushed, err := reg.PushIndex(ctx, "ml/multi", "v1", idx)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := reg.Config(ctx, ipushed.Ref)
	if err != nil || cf.Architecture != "amd64" || cf.Config.Labels["k"] != "v" {
		t.Fatalf("config of the index: %+v, %v", cf, err)
	}
	got, err := reg.PullPlatform(ctx, ipushed.Ref, v1.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); func() bool { ad, _ := arm.Digest(); return gd != ad }() {
		t.Fatal("PullPlatform did not pick the arm64 image")
	}

	// Another client (skopeo) sees the same digest with the same CA and credentials.
	if skopeo, err := exec.LookPath("skopeo"); err == nil {
		certs := t.TempDir()
		raw, _ := os.ReadFile(d.CAFile)
		os.WriteFile(filepath.Join(certs, "ca.crt"), raw, 0o644)
		out, err := exec.Command(skopeo, "inspect", "--raw", "--cert-dir", certs, "--creds", d.User+":"+d.Password, "docker://"+pushed.Ref).Output()
		if err != nil {
			t.Fatalf("skopeo inspect: %v", err)
		}
		var m struct{ Config struct{ Digest string } }
		cfgDigest, _ := img.ConfigName()
		if json.Unmarshal(out, &m) != nil || m.Config.Digest != cfgDigest.String() {
			t.Fatalf("skopeo saw %s", out)
		}
	}

	// A wrong password: 401 at the push check, not retried.
	bad := func(k string) string {
		if k == "REGISTRY_PASSWORD" {
			return "wrong"
		}
		return d.Env()(k)
	}
	reg, _ = NewRemote(d.Host, fast(), WithGetenv(bad), WithCAFile(d.CAFile))
	if err := reg.CheckPush(ctx, "ml/hello"); !errors.As(err, &re) || !re.Unauthorized() || re.Attempts != 1 {
		t.Fatalf("wrong password: %v", err)
	}

	// Listed as insecure: no verification (no CA needed).
	reg, _ = NewRemote(d.Host, fast(), WithGetenv(d.Env()), WithInsecureRegistries(d.Host))
	if _, err := reg.Push(ctx, "ml/hello", "v2", img); err != nil {
		t.Fatalf("insecure registry: %v", err)
	}
}

// TestDistributionPlainHTTP: a plain-HTTP Distribution registry on loopback
// with htpasswd: the credentials go through and nothing speaks of TLS.
func TestDistributionPlainHTTP(t *testing.T) {
	t.Parallel()
	d := registrytest.Start(t, registrytest.Options{Auth: true})
	reg, err := NewRemote(d.Host, fast(), WithGetenv(d.Env()))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.CheckPush(context.Background(), "ml/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push(context.Background(), "ml/x", "t", testImage(t, map[string]string{"a": "b"})); err != nil {
		t.Fatal(err)
	}
}
