package snapshotcmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/forgefactory"
	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/backends/storage/storagefactory"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/records"
	snap "github.com/branchml/branchml/agents/stages/snapshot"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

// Wiring builds the backends of the commands; tests replace it.
type Wiring struct {
	Storage func(e *cli.Env) (storage.Backend, error)
	Forge   func(e *cli.Env) (forge.Forge, error)
}

// DefaultWiring uses the storage factory and the forge factory of branchml.yaml.
var DefaultWiring = Wiring{
	Storage: func(e *cli.Env) (storage.Backend, error) {
		return storagefactory.New(e.Config, storagefactory.WithLogger(e.Log))
	},
	Forge: func(e *cli.Env) (forge.Forge, error) {
		return forgefactory.New(e.Config, forgefactory.WithLogger(e.Log))
	},
}

// App returns the branchml-snapshot application.
func App() *ucli.App { return AppWith(DefaultWiring) }

// AppWith returns the application with the given wiring.
func AppWith(w Wiring) *ucli.App {
	return cli.NewApp("branchml-snapshot", "snapshots of data and model volumes, with lineage (ML versioning)",
		runCommand(w), listCommand(w), verifyCommand(w), cloneCommand(w, "clone"), cloneCommand(w, "restore"), pruneCommand(w), lineageCommand(w))
}

func storageOf(w Wiring, e *cli.Env) (storage.Backend, error) {
	st, err := w.Storage(e)
	if err != nil {
		return nil, agent.Usage("storage backend", err, "check backends.storage and snapshot.class in branchml.yaml")
	}
	return st, nil
}

func wsPath(e *cli.Env, p string) string {
	if p == "" || filepath.IsAbs(p) || e.Build.Workspace == "" {
		return p
	}
	return filepath.Join(e.Build.Workspace, p)
}

func readJSONFile(path string, v any, required bool) error {
	raw, err := config.ReadFileLimited(path, config.MaxRecordBytes)
	if errors.Is(err, os.ErrNotExist) && !required {
		return nil
	}
	if err != nil {
		return err
	}
	return records.ParseJSON(path, raw, v)
}

func runCommand(w Wiring) *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "run", Usage: "snapshot the data and model volumes of a training run and record its lineage", Stage: "snapshot",
		NeedsConfig: true, BuildFlags: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "run-record", Value: records.TrainingLockPath, Usage: "the run record `FILE` branchml-train wrote (relative to --workspace)"},
			&ucli.StringFlag{Name: "pipeline-lock", Value: records.PipelineLockPath, Usage: "the pipeline lock `FILE` (optional)"},
			&ucli.StringFlag{Name: "components-lock", Value: records.ComponentsLockPath, Usage: "the components lock `FILE` (optional)"},
			&ucli.StringFlag{Name: "repository", Usage: "the ML repository's URL, recorded in the lineage"},
			&ucli.BoolFlag{Name: "no-write-back", Usage: "do not commit the lineage record to the training branch"},
		},
		Run: func(e *cli.Env) (*agent.Result, error) {
			var in snap.Input
			if err := readJSONFile(wsPath(e, e.CLI.String("run-record")), &in.Run, true); err != nil {
				return nil, agent.Usage("read the run record", err, "pass --run-record with the run record branchml-train wrote")
			}
			if err := readJSONFile(wsPath(e, e.CLI.String("pipeline-lock")), &in.Pipeline, false); err != nil {
				return nil, agent.Usage("read the pipeline lock", err, "pass --pipeline-lock with .branchml/pipeline.lock.json")
			}
			if err := readJSONFile(wsPath(e, e.CLI.String("components-lock")), &in.Components, false); err != nil {
				return nil, agent.Usage("read the components lock", err, "pass --components-lock with .branchml/components.lock.json")
			}
			in.Build, in.Repository = e.Build, e.CLI.String("repository")
			st, err := storageOf(w, e)
			if err != nil {
				return nil, err
			}
			var f forge.Forge
			if !e.CLI.Bool("no-write-back") && !e.DryRun {
				if f, err = w.Forge(e); err != nil {
					return nil, agent.Usage("forge", err, "check backends.forge in branchml.yaml, or pass --no-write-back")
				}
			}
			rec, err := snap.Run(e.Ctx, snap.Options{Config: e.Config, Storage: st, Forge: f, Input: in, DryRun: e.DryRun, Log: e.Log})
			if err != nil {
				return nil, err
			}
			verb := "recorded"
			if e.DryRun {
				verb = "would record"
			}
			return &agent.Result{
				Summary: fmt.Sprintf("%s lineage %s: data %s, model %s", verb, rec.ID, rec.Data.Snapshot, rec.Model.Snapshot.Snapshot),
				Outputs: map[string]any{"lineageId": rec.ID, "dataSnapshot": rec.Data, "modelSnapshot": rec.Model.Snapshot,
					"modelVersion": rec.Model.Version, "path": lineage.Path(rec.ID)},
			}, nil
		},
	})
}

func listCommand(w Wiring) *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "list", Usage: "list the snapshots of the data and model volumes (or --volume), newest first", Stage: "snapshot", NeedsConfig: true, BuildFlags: true,
		Flags: []ucli.Flag{&ucli.StringSliceFlag{Name: "volume", Usage: "a `VOLUME` whose snapshots to list (repeatable; default training.data.volume and training.model.volume)"}},
		Run: func(e *cli.Env) (*agent.Result, error) {
			vols := e.CLI.StringSlice("volume")
			if len(vols) == 0 {
				vols = []string{e.Config.Training.Data.Volume, e.Config.Training.Model.Volume}
			}
			st, err := storageOf(w, e)
			if err != nil {
				return nil, err
			}
			all := []storage.Snapshot{}
			var b strings.Builder
			for _, v := range vols {
				snaps, err := st.ListSnapshots(e.Ctx, v)
				if err != nil {
					return nil, agent.Failed("list the snapshots of "+v, err, "check the volume name and backends.storage")
				}
				fmt.Fprintf(&b, "%s: %d snapshots\n", v, len(snaps))
				for _, s := range snaps {
					line := fmt.Sprintf("  %s  %s", s.CreatedAt.UTC().Format(time.RFC3339), s.Name)
					if id := s.Labels[storage.KeyLineageID]; id != "" {
						line += "  lineage " + id
					}
					if r := s.Labels[storage.KeyRunID]; r != "" {
						line += ", run " + r
					}
					if s.Handle != "" {
						line += ", handle " + s.Handle
					}
					b.WriteString(line + "\n")
				}
				all = append(all, snaps...)
			}
			res := &agent.Result{Summary: strings.TrimRight(b.String(), "\n"), Outputs: map[string]any{"snapshots": all}}
			if e.Output != "json" && e.CLI.String("result") == "" {
				res.Outputs = struct{}{}
			}
			return res, nil
		},
	})
}

func verifyCommand(w Wiring) *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "verify", Usage: "re-hash a snapshot and report changed, missing or extra files", ArgsUsage: "SNAPSHOT", Stage: "snapshot", NeedsConfig: true, BuildFlags: true,
		Run: func(e *cli.Env) (*agent.Result, error) {
			name := e.CLI.Args().First()
			if name == "" || e.CLI.NArg() != 1 {
				return nil, agent.Usagef("give one snapshot name: branchml-snapshot verify SNAPSHOT", "verify takes one argument")
			}
			st, err := storageOf(w, e)
			if err != nil {
				return nil, err
			}
			v, ok := st.(storage.Verifier)
			if !ok {
				return nil, agent.Usagef("verify works on the local backend; on Trident the storage checksums its own snapshots", "backend %q cannot verify snapshots", e.Config.Backends.Storage.Type)
			}
			f, ferr := w.Forge(e)
			if ferr != nil {
				e.Log.Warnf("no forge (%v): the handle is not checked against the lineage record", ferr)
				f = nil
			}
			rep, err := snap.Verify(e.Ctx, v, f, e.Config, name)
			if rep == nil {
				return nil, err
			}
			if err != nil {
				return &agent.Result{Summary: fmt.Sprintf("snapshot %s was tampered with: %d changed, %d missing, %d extra, handle recorded %s", name,
					len(rep.Changed), len(rep.Missing), len(rep.Extra), map[bool]string{true: "differs", false: "matches"}[rep.RecordedHandle != "" && rep.RecordedHandle != rep.Handle]), Outputs: rep}, err
			}
			checked := "handle not checked: no lineage record names it"
			if rep.Lineage != "" {
				checked = "handle as lineage " + rep.Lineage + " recorded"
			}
			return &agent.Result{Summary: fmt.Sprintf("snapshot %s verified: %d files, %d bytes, %s", name, rep.Files, rep.Bytes, checked), Outputs: rep}, nil
		},
	})
}

func cloneCommand(w Wiring, name string) *ucli.Command {
	usage := "make a new volume from a snapshot (a workspace with exactly a past run's data or model)"
	args := "SNAPSHOT NEW_VOLUME"
	flags := []ucli.Flag{}
	if name == "restore" {
		usage = "restore a snapshot: into a new volume (--to), or in place (--in-place --volume)"
		args = "SNAPSHOT"
		flags = []ucli.Flag{
			&ucli.StringFlag{Name: "to", Usage: "the new `VOLUME` to clone the snapshot into"},
			&ucli.BoolFlag{Name: "in-place", Usage: "roll the snapshot's own volume back (Trident: only its newest snapshot)"},
			&ucli.StringFlag{Name: "volume", Usage: "the `VOLUME` to roll back with --in-place"},
		}
	}
	return cli.Command(cli.Spec{
		Name: name, Usage: usage, ArgsUsage: args, Stage: "snapshot", NeedsConfig: true, BuildFlags: true, Flags: flags,
		Run: func(e *cli.Env) (*agent.Result, error) {
			a := e.CLI.Args()
			snapshot, target, inPlace := a.First(), a.Get(1), false
			if name == "restore" {
				target, inPlace = e.CLI.String("to"), e.CLI.Bool("in-place")
				if inPlace {
					target = e.CLI.String("volume")
				}
			}
			if snapshot == "" || target == "" || (name == "restore" && inPlace == (e.CLI.String("to") != "")) {
				return nil, agent.Usagef("branchml-snapshot clone SNAPSHOT NEW_VOLUME, restore SNAPSHOT --to NEW_VOLUME, or restore SNAPSHOT --in-place --volume VOLUME",
					"%s needs a snapshot and exactly one target", name)
			}
			if e.DryRun {
				return &agent.Result{Summary: fmt.Sprintf("would restore %s into %s (in place: %v)", snapshot, target, inPlace),
					Outputs: map[string]any{"snapshot": snapshot, "volume": target, "inPlace": inPlace}}, nil
			}
			st, err := storageOf(w, e)
			if err != nil {
				return nil, err
			}
			if inPlace {
				r, ok := st.(storage.Restorer)
				if !ok {
					return nil, agent.Usagef("restore into a new volume with --to", "backend cannot restore in place")
				}
				if err := r.Restore(e.Ctx, target, snapshot); err != nil {
					fix := "check the snapshot and volume names"
					if errors.Is(err, storage.ErrUnsupported) {
						return nil, agent.Usage("restore "+snapshot+" in place", err, "restore into a new volume with --to")
					}
					return nil, agent.Failed("restore "+snapshot+" into "+target, err, fix)
				}
				return &agent.Result{Summary: fmt.Sprintf("volume %s restored to snapshot %s", target, snapshot),
					Outputs: map[string]any{"snapshot": snapshot, "volume": target, "inPlace": true}}, nil
			}
			vol, err := st.Clone(e.Ctx, snapshot, target)
			if err != nil {
				if errors.Is(err, storage.ErrExists) {
					return nil, agent.Usage("clone "+snapshot, err, "pick another volume name")
				}
				return nil, agent.Failed("clone "+snapshot+" into "+target, err, "check the snapshot name (and that it is readyToUse)")
			}
			return &agent.Result{Summary: fmt.Sprintf("volume %s cloned from snapshot %s", vol.Name, snapshot), Outputs: vol}, nil
		},
	})
}

func pruneCommand(w Wiring) *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "prune", Usage: "retention: keep the newest snapshot.keep snapshots per volume and those of deployed models", Stage: "snapshot",
		NeedsConfig: true, BuildFlags: true,
		Flags: []ucli.Flag{
			&ucli.StringSliceFlag{Name: "volume", Usage: "a `VOLUME` to prune (repeatable; default the data and model volumes)"},
			&ucli.IntFlag{Name: "keep", Usage: "snapshots kept per volume (default snapshot.keep)"},
			&ucli.StringSliceFlag{Name: "protect", Usage: "a snapshot `NAME` never deleted (repeatable)"},
			&ucli.StringFlag{Name: "lineage-dir", Value: records.LineageDir, Usage: "the lineage records `DIR` (relative to --workspace)"},
			&ucli.StringFlag{Name: "deploy-status", Usage: "the deploy status `FILE` (default: .branchml/deploy-status.json of the deploy branch, read through the forge): snapshots of its stable and canary versions are kept"},
		},
		Run: func(e *cli.Env) (*agent.Result, error) {
			vols := e.CLI.StringSlice("volume")
			if len(vols) == 0 {
				vols = []string{e.Config.Training.Data.Volume, e.Config.Training.Model.Volume}
			}
			keep := e.Config.Snapshot.Keep
			if e.CLI.IsSet("keep") {
				keep = e.CLI.Int("keep")
			}
			// What serves is protected by default: the deploy status of the
			// deploy branch, and the lineage of the model its deploy.yaml names.
			var status *records.DeployStatus
			var recs []*lineage.Record
			if p := e.CLI.String("deploy-status"); p != "" {
				status = &records.DeployStatus{}
				if err := readJSONFile(wsPath(e, p), status, true); err != nil {
					return nil, agent.Usage("read the deploy status", err, "pass the deploy branch's .branchml/deploy-status.json")
				}
			} else {
				f, err := w.Forge(e)
				if err != nil {
					return nil, agent.Usage("forge", err, "check backends.forge in branchml.yaml, or pass --deploy-status")
				}
				if status, recs, err = snap.Deployed(e.Ctx, f, e.Config); err != nil {
					return nil, err
				}
			}
			if dir := wsPath(e, e.CLI.String("lineage-dir")); status != nil {
				local, err := lineage.LoadDir(dir)
				if err != nil {
					return nil, agent.Usage("read the lineage records", err, "pass --lineage-dir with the training branch's .branchml/lineage")
				}
				recs = append(recs, local...)
			}
			if vs := snap.Unprotected(recs, status); len(vs) > 0 {
				return nil, agent.Usagef("run in a checkout of the training branch (pulled), or pass --lineage-dir with its .branchml/lineage",
					"model %s version(s) %v serve, but no lineage record names their snapshots: nothing was pruned", status.Model, vs)
			}
			st, err := storageOf(w, e)
			if err != nil {
				return nil, err
			}
			res, err := snap.Prune(e.Ctx, snap.PruneOptions{Storage: st, Volumes: vols, Keep: keep,
				Protected: snap.Protected(recs, status, e.CLI.StringSlice("protect")...), DryRun: e.DryRun})
			if err != nil {
				return nil, agent.Failed("prune snapshots", err, "rerun: pruning is idempotent")
			}
			verb := "deleted"
			if e.DryRun {
				verb = "would delete"
			}
			return &agent.Result{Summary: fmt.Sprintf("%s %d snapshots, kept %d (%d protected)", verb, len(res.Deleted), len(res.Kept), len(res.Protected)), Outputs: res}, nil
		},
	})
}

func lineageCommand(w Wiring) *ucli.Command {
	dirFlag := &ucli.StringFlag{Name: "lineage-dir", Value: records.LineageDir, Usage: "the lineage records `DIR` (relative to --workspace)"}
	wsFlag := &ucli.StringFlag{Name: "workspace", EnvVars: []string{"WORKSPACE"}, Usage: "a checkout of the training branch (default: read the training branch through backends.forge of --config)"}
	load := func(e *cli.Env) ([]*lineage.Record, error) {
		dir := e.CLI.String("lineage-dir")
		ws := e.CLI.String("workspace")
		if ws == "" && !e.CLI.IsSet("lineage-dir") {
			// No checkout named: the training branch itself, through the forge.
			cfg, err := config.Load(e.CLI.String("config"))
			if err != nil {
				return nil, agent.Usage("load configuration", err, "run where branchml.yaml is (or --config), or pass --workspace with a checkout of the training branch")
			}
			e.Config = cfg
			f, err := w.Forge(e)
			if err != nil {
				return nil, agent.Usage("forge", err, "check backends.forge in branchml.yaml, or pass --workspace")
			}
			branch := cfg.Branches[config.StageTrain]
			recs, err := lineage.LoadBranch(e.Ctx, f, branch)
			var re *lineage.RecordError
			if errors.As(err, &re) {
				return nil, agent.Usage("read the lineage records", err, fmt.Sprintf("restore it from %s's history (git log -p %s -- %s)", branch, branch, records.LineageDir))
			}
			if err != nil {
				return nil, agent.Failed("read the lineage records", err, "a temporary failure: run again")
			}
			if len(recs) == 0 {
				return nil, agent.Usagef("train a model first (branchml-train run records its lineage)", "no lineage records on %s", branch)
			}
			return recs, nil
		}
		if ws != "" && !filepath.IsAbs(dir) {
			dir = filepath.Join(ws, dir)
		}
		recs, err := lineage.LoadDir(dir)
		if err != nil {
			return nil, agent.Usage("read the lineage records", err, "repair the file named above from the training branch's history")
		}
		if len(recs) == 0 {
			return nil, agent.Usagef("run in a checkout of the training branch, or pass --lineage-dir", "no lineage records in %s", dir)
		}
		return recs, nil
	}
	list := cli.Command(cli.Spec{
		Name: "list", Usage: "list the lineage records: model version, run, commit, pull request, snapshots", Stage: "snapshot", Flags: []ucli.Flag{dirFlag, wsFlag},
		Run: func(e *cli.Env) (*agent.Result, error) {
			recs, err := load(e)
			if err != nil {
				return nil, err
			}
			var b strings.Builder
			for _, r := range recs {
				line := fmt.Sprintf("%s  %s v%d  run %s  commit %s", r.ID, r.Model.Name, r.Model.Version, r.Run.ID, shortSHA(r.Source.Commit))
				if pr := r.PullRequest; pr != nil {
					line += fmt.Sprintf("  PR #%d (approved by %s)", pr.Number, strings.Join(pr.Approvers, ", "))
				}
				line += fmt.Sprintf("  data %s  model %s", r.Data.Snapshot, r.Model.Snapshot.Snapshot)
				b.WriteString(line + "\n")
			}
			res := &agent.Result{Summary: strings.TrimRight(b.String(), "\n"), Outputs: map[string]any{"records": recs}}
			if e.Output != "json" && e.CLI.String("result") == "" {
				res.Outputs = struct{}{}
			}
			return res, nil
		},
	})
	show := cli.Command(cli.Spec{
		Name: "show", Usage: "print the chain of a lineage record: commit → config → pipeline version → images → run → snapshots → model version",
		ArgsUsage: "ID|MODEL:VERSION|VERSION", Stage: "snapshot", Flags: []ucli.Flag{dirFlag, wsFlag},
		Run: func(e *cli.Env) (*agent.Result, error) {
			if e.CLI.NArg() != 1 {
				return nil, agent.Usagef("branchml-snapshot lineage show lin-… (or MODEL:VERSION)", "show takes one argument")
			}
			recs, err := load(e)
			if err != nil {
				return nil, err
			}
			rec, err := lineage.Find(recs, e.CLI.Args().First())
			if err != nil {
				return nil, agent.Usage("find lineage", err, "list .branchml/lineage on the training branch for IDs")
			}
			if e.Output == "json" {
				return &agent.Result{Summary: "lineage " + rec.ID, Outputs: rec}, nil
			}
			return nil, lineage.Show(e.Out, rec)
		},
	})
	graph := cli.Command(cli.Spec{
		Name: "graph", Usage: "write the lineage of all records as a DOT or Mermaid graph", Stage: "snapshot",
		Flags: []ucli.Flag{dirFlag, wsFlag,
			&ucli.StringFlag{Name: "format", Value: lineage.FormatDOT, Usage: "dot or mermaid"},
			&ucli.StringFlag{Name: "out", Usage: "write the graph to `FILE` (atomically) instead of stdout"},
		},
		Run: func(e *cli.Env) (*agent.Result, error) {
			f := e.CLI.String("format")
			if f != lineage.FormatDOT && f != lineage.FormatMermaid {
				return nil, agent.Usagef("use --format dot or --format mermaid", "unknown graph format %q", f)
			}
			recs, err := load(e)
			if err != nil {
				return nil, err
			}
			var b bytes.Buffer
			if err := lineage.Graph(&b, recs, f); err != nil {
				return nil, err
			}
			ids := make([]string, len(recs))
			for i, r := range recs {
				ids[i] = r.ID
			}
			if e.Output == "json" && e.CLI.String("out") == "" {
				// -o json is JSON: the graph's text is a field of the result.
				return &agent.Result{Summary: fmt.Sprintf("%s graph of %d records", f, len(recs)), Outputs: map[string]any{"format": f, "records": ids, "graph": b.String()}}, nil
			}
			if out := e.CLI.String("out"); out != "" {
				if err := atomicfile.WriteFile(out, b.Bytes(), 0o644); err != nil {
					return nil, agent.Failed("write "+out, err, "")
				}
				return &agent.Result{Summary: fmt.Sprintf("%s graph of %d records written to %s", f, len(recs), out), Outputs: map[string]any{"path": out, "records": len(recs)}}, nil
			}
			_, err = e.Out.Write(b.Bytes())
			return nil, err
		},
	})
	return &ucli.Command{Name: "lineage", Usage: "list and show lineage records", Subcommands: []*ucli.Command{list, show, graph}}
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
