package build

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/config"
)

func TestZZProfile(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	root, _ := filepath.Abs(exampleDir)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		cfg, _ := config.Load(filepath.Join(root, "branchml.yaml"), config.WithEnviron(nil))
		f, _ := gitremote.Init(ctx, filepath.Join(t.TempDir(), "ml.git"), map[string][]byte{"README.md": []byte("ml\n")}, []string{"main", "build-components"})
		regDir := t.TempDir()
		s, _ := registry.Start(regDir, "127.0.0.1:0")
		defer s.Close()
		reg, _ := registry.NewLocal(s.Addr, regDir, registry.WithKeychain(authn.NewMultiKeychain(), "none"))
		l := logrus.New()
		l.SetLevel(logrus.DebugLevel)
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "05.000"})
		o := Options{Config: cfg, Forge: f, Registry: reg, Workspace: root, Commit: "1111111111111111111111111111111111111111",
			JUnitPath: filepath.Join(t.TempDir(), "junit.xml"), Log: l}
		l.Info("start")
		if _, err := Run(ctx, o); err != nil {
			t.Fatal(err)
		}
		l.Info("end")
	}
}
