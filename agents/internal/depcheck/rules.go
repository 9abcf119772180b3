package depcheck

import (
	"fmt"
	"strings"
)

// Module is the import path of the agents' module.
const Module = "github.com/branchml/branchml"

const agents = Module + "/agents"

// Group is the role of a package in the layout, from its folder:
//
//	cmd      agents/cmd/<binary>           only main
//	cli      agents/cli                    the conventions every agent command shares: flags, --params, logging, writing the result
//	command  agents/cli/<name>             the commands of one binary (or one command group of branchml)
//	stage    agents/stages/<stage>/...     one stage's logic, with what is its alone beneath
//	backend  agents/backends/<concern>/... an external concern: its interface at the root, one sub-package per implementation, the factory beside them
//	records  agents/records                the files the stages write back to their branches
//	config   agents/config                 branchml.yaml: load, layer, validate
//	helper   agents/internal/<helper>      shared helpers that are no concern of their own
//	fake     agents/internal/fake/...      fakes of remote APIs for tests
//	test     agents/internal/{depcheck,examplecheck}, */runnertest: test-only packages
type Group string

// The groups.
const (
	Cmd     Group = "cmd"
	CLI     Group = "cli"
	Command Group = "command"
	Stage   Group = "stage"
	Backend Group = "backend"
	Records Group = "records"
	Config  Group = "config"
	Helper  Group = "helper"
	Fake    Group = "fake"
	Test    Group = "test"
)

// Pkg is a package of ours placed in the layout: its Group and, for stages
// and backends, the Unit (stage or concern name).
type Pkg struct {
	Path  string // import path below agents/, e.g. "backends/serving/local"
	Group Group
	Unit  string
	// Impl is true for a backend's implementation and factory packages
	// (which stages must not import: they get a backend from their command).
	Impl bool
}

// implementations are the backend packages that implement a concern's
// interface, and the factories that choose one by configuration.
var implementations = map[string]bool{
	"backends/forge/github": true, "backends/forge/gitremote": true, "backends/forge/forgefactory": true,
	"backends/pipelines/kfp": true, "backends/pipelines/local": true, "backends/pipelines/pipelinesfactory": true,
	"backends/storage/trident": true, "backends/storage/local": true, "backends/storage/storagefactory": true,
	"backends/serving/kubernetes": true, "backends/serving/local": true, "backends/serving/servingfactory": true,
}

// Place returns the layout position of the package at import path p, or
// an error when p lies outside every group's folder.
func Place(p string) (Pkg, error) {
	rel, ok := strings.CutPrefix(p, agents+"/")
	if !ok {
		return Pkg{}, fmt.Errorf("%s is not below %s", p, agents)
	}
	parts := strings.Split(rel, "/")
	pk := Pkg{Path: rel}
	switch {
	case parts[0] == "cmd" && len(parts) == 2:
		pk.Group = Cmd
	case rel == "cli":
		pk.Group = CLI
	case parts[0] == "cli":
		pk.Group, pk.Unit = Command, parts[1]
	case parts[0] == "stages" && len(parts) >= 2:
		pk.Group, pk.Unit = Stage, parts[1]
	case parts[0] == "backends" && len(parts) >= 2:
		pk.Group, pk.Unit, pk.Impl = Backend, parts[1], implementations[strings.Join(parts[:min(3, len(parts))], "/")]
		if strings.HasSuffix(rel, "/runnertest") {
			pk.Group = Test
		}
	case rel == "records":
		pk.Group = Records
	case rel == "config":
		pk.Group = Config
	case parts[0] == "internal" && len(parts) >= 2 && parts[1] == "fake":
		pk.Group = Fake
	case rel == "internal/depcheck" || rel == "internal/examplecheck":
		pk.Group = Test
	case parts[0] == "internal" && len(parts) == 2:
		pk.Group, pk.Unit = Helper, parts[1]
	default:
		return Pkg{}, fmt.Errorf("agents/%s is in no group's folder (see agents/README.md, Layout)", rel)
	}
	return pk, nil
}

// exceptions are arrows the group rules forbid but the layout allows, each
// with its reason.
var exceptions = map[[2]string]string{
	{"stages/snapshot", "stages/train"}: "the snapshot stage implements train.Snapshotter, the hook branchml-train calls after a run",
}

// Allowed reports whether package from may import package to (both ours),
// and if not, why.
func Allowed(from, to Pkg) (bool, string) {
	if _, ok := exceptions[[2]string{from.Path, to.Path}]; ok {
		return true, ""
	}
	if to.Group == Cmd {
		return false, "nothing imports a main package"
	}
	if to.Group == Test && from.Group != Test {
		return false, "test-only packages are imported by tests only"
	}
	if to.Group == Fake && from.Group != Fake && from.Group != Test {
		return false, "fakes are for tests only"
	}
	switch from.Group {
	case Cmd:
		return to.Group == CLI || to.Group == Command, "a main package only calls its command package"
	case Command:
		return true, ""
	case CLI:
		return to.Group == Config || to.Group == Helper, "agents/cli (the shared conventions) imports only config and helpers"
	case Stage:
		switch to.Group {
		case Stage:
			return to.Unit == from.Unit, "a stage never imports another stage"
		case Backend:
			return !to.Impl, "a stage gets its backends through their interfaces; only commands pick an implementation or call a factory"
		case Records, Config, Helper:
			return true, ""
		}
		return false, "a stage imports only its own packages, backend interfaces, records, config and helpers (its errors and result types are in internal/agent)"
	case Backend:
		switch to.Group {
		case Backend:
			return to.Unit == from.Unit, "a backend never imports another concern's backend"
		case Records, Config, Helper:
			return true, ""
		}
		return false, "a backend imports only its own concern, records, config and helpers (never a stage or a command)"
	case Records:
		if to.Group == Backend && !strings.Contains(strings.TrimPrefix(to.Path, "backends/"), "/") {
			return true, ""
		}
		return to.Group == Helper, "records imports only backend interface packages (for their value types) and helpers"
	case Config:
		return false, "config imports nothing of ours"
	case Helper:
		return to.Group == Helper || to.Group == Config, "a helper imports only other helpers and config"
	case Fake:
		switch to.Group {
		case Fake, Helper, Config, Records:
			return true, ""
		case Backend:
			return !to.Impl, "a fake may use a backend's wire types, never an implementation"
		}
		return false, "a fake imports no stage and no command"
	case Test:
		return true, ""
	}
	return false, "unknown group"
}

// thirdParty fences heavy or protocol-specific modules to the packages that
// own that protocol: an import path prefix and the folders (below agents/)
// that may import it.
var thirdParty = []struct {
	prefix string
	within []string
}{
	{"github.com/urfave/cli", []string{"cli", "cmd"}},
	{"github.com/google/go-github", []string{"backends/forge/github"}},
	{"github.com/bndr/gojenkins", []string{"backends/jenkins"}},
	{"github.com/kubeflow/pipelines/backend", []string{"backends/pipelines/kfp"}},
	{"github.com/go-openapi", []string{"backends/pipelines/kfp"}},
	{"k8s.io/client-go", []string{"backends/storage", "backends/serving"}},
	{"github.com/kubernetes-csi", []string{"backends/storage"}},
	{"github.com/kubeflow/pipelines/third_party/ml-metadata", []string{"backends/pipelines/kfp", "internal/fake/mlmd"}},
	{"github.com/minio/minio-go", []string{"backends/pipelines/kfp"}},
	{"github.com/johannesboyne/gofakes3", []string{"internal/fake/s3"}},
	// The Kubernetes test bed (test/k8s) is for tests and `quickstart --cluster` only.
	{Module + "/test/", []string{"cli/quickstart"}},
}

// ThirdParty reports whether package from may import the non-module path to.
func ThirdParty(from Pkg, to string) (bool, string) {
	for _, f := range thirdParty {
		if !strings.HasPrefix(to, f.prefix) {
			continue
		}
		for _, w := range f.within {
			if from.Path == w || strings.HasPrefix(from.Path, w+"/") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s is imported only under %s", f.prefix, strings.Join(f.within, ", "))
	}
	return true, ""
}
