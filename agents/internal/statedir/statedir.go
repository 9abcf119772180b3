package statedir

import (
	"os"
	"path/filepath"

	"github.com/branchml/branchml/agents/config"
)

// Dir returns the state directory: cfg.Backends.StateDir when set (relative
// paths are taken relative to cfg.Dir, the directory of branchml.yaml), else
// $XDG_STATE_HOME/branchml, else ~/.local/state/branchml, else
// <temp dir>/branchml-state when there is no home directory. cfg may be nil.
func Dir(cfg *config.Config) string {
	return DirFrom(os.Getenv, cfg)
}

// DirFrom is Dir with an injected environment lookup (for tests).
func DirFrom(getenv func(string) string, cfg *config.Config) string {
	if cfg != nil && cfg.Backends.StateDir != "" {
		d := cfg.Backends.StateDir
		if !filepath.IsAbs(d) && cfg.Dir != "" {
			d = filepath.Join(cfg.Dir, d)
		}
		return filepath.Clean(d)
	}
	if x := getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "branchml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "branchml")
	}
	return filepath.Join(os.TempDir(), "branchml-state")
}

// Path joins elem below the state directory of cfg, e.g.
// Path(cfg, "registry", "addr").
func Path(cfg *config.Config, elem ...string) string {
	return filepath.Join(append([]string{Dir(cfg)}, elem...)...)
}
