package quickstart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	slocal "github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/cli/buildcmd"
	"github.com/branchml/branchml/agents/cli/deploycmd"
	"github.com/branchml/branchml/agents/cli/pipelinecmd"
	"github.com/branchml/branchml/agents/cli/traincmd"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/internal/procid"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/train"
)

// Who does what in the quickstart's local forge: the data scientist opens
// the pull requests of ds1's changes, a reviewer approves and merges them
// (never their own: the local forge refuses self-approval, as GitHub does).
const (
	dataScientist = "data-scientist"
	reviewer      = "reviewer"
)

// qsState is <workdir>/quickstart.json: what this quickstart did, so that
// a later one can tell its own work from a person's.
type qsState struct {
	// DS1 is the ds1 commit the quickstart last pushed; another tip is a
	// person's work, which the quickstart never rewrites.
	DS1 string `json:"ds1,omitempty"`
	// DS1Pending is the ds1 commit the quickstart is pushing (recorded
	// before the push): a tip equal to it is the quickstart's own too.
	DS1Pending string `json:"ds1Pending,omitempty"`
	// Ran maps a stage branch to its tip after its stage last ran here
	// (--continue runs the stages whose branch moved since).
	Ran map[string]string `json:"ran,omitempty"`
	// Example and Data are where the example and the data came from.
	Example string `json:"example,omitempty"`
	Data    string `json:"data,omitempty"`
}

func statePath(workdir string) string { return filepath.Join(workdir, "quickstart.json") }

// readState reads quickstart.json; missing is empty, corrupted an error
// naming the file.
func readState(workdir string) (*qsState, error) {
	st := &qsState{Ran: map[string]string{}}
	raw, err := os.ReadFile(statePath(workdir))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, st); err != nil {
		return nil, agent.Usage("read "+statePath(workdir), fmt.Errorf("%s is corrupted: %w", statePath(workdir), err),
			"move it aside (mv "+statePath(workdir)+" "+statePath(workdir)+".bad): the quickstart then takes ds1 as the data scientist's and runs every stage again, which changes nothing that is done")
	}
	if st.Ran == nil {
		st.Ran = map[string]string{}
	}
	return st, nil
}

func (r *run) saveState() error {
	return atomicfile.WriteJSON(statePath(r.opt.Workdir), r.state)
}

// lockWorkdir takes the workdir's lock: one quickstart at a time per
// workdir; another one running is a usage error naming its PID.
func lockWorkdir(ctx context.Context, workdir string) (func(), error) {
	release, err := procid.Lock(ctx, filepath.Join(workdir, ".quickstart.lock"), procid.LockOptions{What: "branchml quickstart"})
	var he *procid.HeldError
	if errors.As(err, &he) {
		return nil, agent.Usage("lock "+workdir, fmt.Errorf("a quickstart is already running on %s: %s", workdir, he.Holder),
			fmt.Sprintf("wait for it to finish (or stop it: kill -INT %d), or pass another --workdir", he.Holder.PID))
	}
	if err != nil {
		return nil, agent.Failed("lock "+workdir, err, "")
	}
	return release, nil
}

// mergeByPR merges from into into as the people of the flow do: the data
// scientist opens a pull request, the reviewer approves and merges it (a
// merge commit by the reviewer), so that every merge that starts a stage
// has its reviewed pull request in the lineage. When into has from already
// (a rerun) nothing is opened; the tip of into is returned.
func (r *run) mergeByPR(ctx context.Context, from, into string) (string, error) {
	if _, err := git(ctx, r.repo.Clone, "fetch", "--quiet", "origin"); err != nil {
		return "", err
	}
	if _, err := git(ctx, r.repo.Clone, "merge-base", "--is-ancestor", "origin/"+from, "origin/"+into); err == nil {
		return r.repo.tip(ctx, into)
	}
	f, err := gitremote.New(r.repo.Remote)
	if err != nil {
		return "", err
	}
	pr, err := f.EnsurePullRequest(ctx, forge.PullRequest{Head: from, Base: into, Title: fmt.Sprintf("Merge %s into %s", from, into), Author: dataScientist})
	if err != nil {
		return "", err
	}
	if _, err := f.Review(ctx, pr.Number, reviewer, "APPROVED", ""); err != nil {
		return "", err
	}
	commit, err := f.MergeAs(ctx, pr.Number, reviewer)
	if err != nil {
		return "", err
	}
	r.progress("%s: pull request #%d from %s, approved and merged by %s", into, pr.Number, from, reviewer)
	return commit, nil
}

// ownsDS1 reports whether ds1's tip is the quickstart's own (or ds1 is
// new): otherwise it carries a person's commits, which are never rewritten.
func (r *run) ownsDS1(ctx context.Context) (bool, string, error) {
	tip, err := r.repo.tip(ctx, "ds1")
	if err != nil {
		return false, "", err
	}
	if r.state.DS1Pending != "" && tip == r.state.DS1Pending {
		return true, tip, nil // pushed, then interrupted before noteDS1
	}
	if r.state.DS1 != "" {
		return tip == r.state.DS1, tip, nil
	}
	// No record (a workdir of an earlier quickstart): the quickstart
	// commits as the data scientist identity of gitEnv; a person commits
	// in their clone under their own.
	email, err := git(ctx, r.repo.Remote, "log", "-1", "--format=%ae", tip)
	if err != nil {
		return false, tip, err
	}
	return email == "ds1@example.com", tip, nil
}

// promotedHead is the promotion branch of the training branch's latest
// model (train.PromoteBranch of the training lock's model), "" when none.
func (r *run) promotedHead(ctx context.Context) (string, error) {
	raw, err := r.repo.show(ctx, "refs/heads/training", records.TrainingLockPath)
	if err != nil || raw == "" {
		return "", err
	}
	var rec records.RunRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		return "", agent.Usage("read "+records.TrainingLockPath+" on training", fmt.Errorf("%s on branch training is corrupted: %w", records.TrainingLockPath, err), "restore it from the training branch's history")
	}
	if rec.Model == nil {
		return "", nil
	}
	return train.PromoteBranch(rec.Model.Name, rec.Model.Version), nil
}

// continueFlow runs, in lifecycle order, the stages whose branch moved
// since they last ran here (a person merged a pull request into it), on the
// branch's tip; it merges nothing itself (the person's pull requests are
// theirs to approve and merge).
func (r *run) continueFlow(ctx context.Context) error {
	if len(r.state.Ran) == 0 {
		return agent.Usagef("run 'branchml quickstart' without --continue first", "nothing to continue on %s: no stage ran here yet", r.opt.Workdir)
	}
	r.progress("— continue: the stages whose branch moved")
	ran := 0
	for _, c := range []struct {
		name string
		call stageCall
	}{
		{"build", stageCall{agent: "branchml-build", app: buildcmd.App, branch: "build-components"}},
		{"pipeline", stageCall{agent: "branchml-pipeline", app: pipelinecmd.App, branch: "kf-pipeline"}},
		{"train", stageCall{agent: "branchml-train", app: traincmd.App, branch: "training"}},
		{"deploy", stageCall{agent: "branchml-deploy", app: deploycmd.App, branch: "deploy-model"}},
	} {
		tip, err := r.repo.tip(ctx, c.call.branch)
		if err != nil {
			return agent.Failed("read the tip of "+c.call.branch, err, "run again")
		}
		if tip == r.state.Ran[c.call.branch] && (c.name != "deploy" || r.serves(ctx)) {
			r.progress("%-10s %s unchanged since it last ran", c.name, c.call.branch)
			continue
		}
		extra := map[string]any{}
		if c.name == "deploy" {
			load, err := r.deployLoad(ctx)
			if err != nil {
				return err
			}
			extra = load
		}
		out, err := r.stage(ctx, c.name, c.call, extra)
		if out != nil && out.Result != nil {
			r.sum.Outputs[c.name] = out.Result.Outputs
		}
		if c.name == "train" && out != nil && out.ExitCode == agent.ExitGate {
			// As under Jenkins: the gate's verdict ends the flow here, with
			// its code; no pull request, and deploy-model does not run.
			r.progress("train: the KPI gate stopped the model; no pull request into deploy-model, which stays as it is")
			return agent.Gate("train stage", out.Err(), "the summary above shows each KPI: change the model on ds1, merge it through the stage branches again, and run --continue")
		}
		if err != nil {
			return err
		}
		ran++
	}
	if ran == 0 {
		r.progress("nothing moved since the last run: merge a pull request into a stage branch first ('branchml pr open', 'branchml pr approve', 'branchml pr merge')")
	}
	if pr, err := r.openPromotion(ctx); err == nil && pr != "" {
		r.progress("deploy-model: %s is open: approve and merge it to deploy ('branchml pr approve N --as REVIEWER', 'branchml pr merge N'), then run --continue again", pr)
	}
	return nil
}

// openPromotion names the open promotion pull request of the latest model.
func (r *run) openPromotion(ctx context.Context) (string, error) {
	head, err := r.promotedHead(ctx)
	if err != nil || head == "" {
		return "", err
	}
	f, err := gitremote.New(r.repo.Remote)
	if err != nil {
		return "", err
	}
	prs, err := f.ListPullRequests(ctx, "open")
	if err != nil {
		return "", err
	}
	for _, pr := range prs {
		if pr.Head == head && pr.Base == "deploy-model" {
			return fmt.Sprintf("pull request #%d (%s)", pr.Number, pr.Title), nil
		}
	}
	return "", nil
}

// serves reports whether a model server of the deploy branch's model runs
// (else the deploy stage restores the recorded stable version): on the
// test bed, whether its stable Deployment exists.
func (r *run) serves(ctx context.Context) bool {
	cfg, err := config.Load(filepath.Join(r.opt.Workdir, "jenkins", "workspace", "deploy-model", "branchml.yaml"))
	if err != nil {
		return false
	}
	if r.kube != nil {
		return r.kube.serves(ctx, cfg.Deploy.Model)
	}
	st, err := slocal.ReadState(ctx, r.env["BRANCHML_BACKENDS_STATE_DIR"], cfg.Deploy.Model)
	return err == nil && len(st.Variants) > 0
}
