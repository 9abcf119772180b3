package registrycmd

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/statedir"
)

// Command returns `branchml registry` with its subcommand `serve`, for the
// umbrella binary to register:
//
//	branchml registry serve [--addr 127.0.0.1:PORT] [--dir DIR]
//
// serve runs the embedded registry until interrupted. --dir defaults to
// <state dir>/registry (the state dir of --config when that file exists, see
// agents/internal/statedir); --addr defaults to the address recorded in <dir>/addr,
// else 127.0.0.1:0 (a free port). The address is written to <dir>/addr,
// where the stages (EnsureLocal) find it; while serve runs they reuse it.
func Command() *ucli.Command {
	serve := cli.Command(cli.Spec{
		Name:  "serve",
		Usage: "serve the embedded OCI registry on loopback until interrupted",
		Description: "Blobs and manifests persist in --dir; the listen address is written to <dir>/addr,\n" +
			"where branchml-build, the local runner and the deploy stage find it.",
		Stage: "registry",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "addr", EnvVars: []string{"BRANCHML_REGISTRY_ADDR"}, Usage: "loopback `HOST:PORT` to listen on (default: the recorded one, else 127.0.0.1:0)"},
			&ucli.StringFlag{Name: "dir", EnvVars: []string{"BRANCHML_REGISTRY_DIR"}, Usage: "data `DIR` (default <state dir>/registry)"},
		},
		Run: runServe,
	})
	return &ucli.Command{Name: "registry", Usage: "the embedded OCI registry", Subcommands: []*ucli.Command{serve}}
}

func runServe(e *cli.Env) (*agent.Result, error) {
	dir := e.CLI.String("dir")
	if dir == "" {
		var cfg *config.Config
		if path := e.CLI.String("config"); path != "" {
			c, err := config.Load(path)
			switch {
			case err == nil:
				cfg = c
			case !errors.Is(err, fs.ErrNotExist):
				return nil, agent.Usage("load configuration", err, "fix the configuration, or pass --dir")
			}
		}
		dir = registry.LocalDir(statedir.Dir(cfg))
	}
	addr := e.CLI.String("addr")
	if addr == "" {
		addr = registry.RecordedAddr(dir)
	}
	if addr != "" {
		if err := registry.CheckLoopback(addr); err != nil {
			return nil, agent.Usage("serve registry", err, "pass --addr 127.0.0.1:PORT (or 127.0.0.1:0 for a free port)")
		}
	}
	if addr != "" && registry.Probe(e.Ctx, dir, addr, time.Second) {
		return nil, agent.Failed("serve registry", fmt.Errorf("the registry of %s already answers at %s", dir, addr), "use that one, or stop it first")
	}
	if e.DryRun {
		return &agent.Result{Summary: "would serve " + dir, Outputs: map[string]string{"dir": dir, "addr": addr}}, nil
	}
	var s *registry.Server
	var err error
	if addr != "" {
		s, err = registry.Start(dir, addr)
		if err != nil && !e.CLI.IsSet("addr") {
			e.Log.Warnf("recorded address %s is taken (%v); picking a free port", addr, err)
			s, err = registry.Start(dir, "127.0.0.1:0")
		}
	} else {
		s, err = registry.Start(dir, "127.0.0.1:0")
	}
	if err != nil {
		return nil, agent.Failed("serve registry", err, "pass a free loopback --addr, e.g. 127.0.0.1:0")
	}
	abs, _ := filepath.Abs(dir)
	e.Log.Infof("registry serving %s at %s (address in %s)", abs, s.Addr, filepath.Join(dir, registry.AddrFile))
	select {
	case <-e.Ctx.Done():
	case err := <-s.Done():
		return nil, agent.Failed("serve registry", err, "")
	}
	if err := s.Close(); err != nil {
		e.Log.Warnf("registry shutdown: %v", err)
	}
	return &agent.Result{Summary: "registry stopped", Outputs: map[string]string{"dir": dir, "addr": s.Addr}}, nil
}
