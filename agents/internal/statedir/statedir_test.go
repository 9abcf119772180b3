package statedir

import (
	"path/filepath"
	"testing"

	"github.com/branchml/branchml/agents/config"
)

func TestDirFrom(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		name string
		env  map[string]string
		cfg  *config.Config
		want string
	}{
		{"config absolute", map[string]string{"HOME": "/home/u"}, &config.Config{Backends: config.Backends{StateDir: "/var/lib/bml"}}, "/var/lib/bml"},
		{"config relative to branchml.yaml", nil, &config.Config{Dir: "/repo", Backends: config.Backends{StateDir: ".state"}}, "/repo/.state"},
		{"xdg", map[string]string{"XDG_STATE_HOME": "/x/state", "HOME": "/home/u"}, nil, "/x/state/branchml"},
		{"xdg relative is ignored", map[string]string{"XDG_STATE_HOME": "rel", "HOME": "/home/u"}, &config.Config{}, "/home/u/.local/state/branchml"},
		{"home", map[string]string{"HOME": "/home/u"}, nil, "/home/u/.local/state/branchml"},
	}
	for _, c := range cases {
		if got := DirFrom(env(c.env), c.cfg); got != c.want {
			t.Errorf("%s: DirFrom = %q, want %q", c.name, got, c.want)
		}
	}
	if got := DirFrom(env(nil), nil); filepath.Base(got) != "branchml-state" {
		t.Errorf("no home: DirFrom = %q, want <tmp>/branchml-state", got)
	}
}
