package quickstart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/cli/buildcmd"
	"github.com/branchml/branchml/agents/cli/deploycmd"
	"github.com/branchml/branchml/agents/cli/pipelinecmd"
	"github.com/branchml/branchml/agents/cli/stagerun"
	"github.com/branchml/branchml/agents/cli/traincmd"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
)

// dsChange is a data scientist's commit on ds1: text replacements in
// branchml.yaml. Marker is text only that commit (and none before it)
// leaves in the file.
type dsChange struct {
	edits   [][2]string
	marker  string
	message string
}

// The data scientist's changes after the first model (a logistic
// regression) serves. On the real data the first makes the model worse
// than the champion (AUC 0.6052 against 0.6109 on 2017): the gate stops it.
// The second is a real improvement (AUC 0.6201, +0.0092 with a 95 %
// interval of [+0.0010, +0.0181] over the champion): it rolls out by canary.
var dsChanges = []dsChange{
	{
		edits:   [][2]string{{`hidden: ""`, `hidden: "32,16"`}, {`learning_rate: 0.01`, `learning_rate: 0.003`}},
		marker:  `hidden: "32,16"`,
		message: "Tune: a deeper network (hidden 32,16) at learning rate 0.003",
	},
	{
		edits:   [][2]string{{`hidden: "32,16"`, `hidden: "16,8"`}, {`learning_rate: 0.003`, `learning_rate: 0.001`}, {`batch_size: 256`, `batch_size: 64`}},
		marker:  `hidden: "16,8"`,
		message: "Tune: a smaller network (hidden 16,8), learning rate 0.001, mini-batches of 64",
	},
}

// applied returns how many of dsChanges the branchml.yaml content holds.
func applied(content string) int {
	for n := len(dsChanges); n > 0; n-- {
		if strings.Contains(content, dsChanges[n-1].marker) {
			return n
		}
	}
	return 0
}

// applyChanges applies the first n of dsChanges to content.
func applyChanges(content string, n int) (string, error) {
	for _, c := range dsChanges[:n] {
		for _, e := range c.edits {
			if !strings.Contains(content, e[0]) {
				return "", fmt.Errorf("branchml.yaml has no %q to change", e[0])
			}
			content = strings.Replace(content, e[0], e[1], 1)
		}
	}
	return content, nil
}

// loadRate is the predict traffic (requests/s) the quickstart sends through
// the gateway during a rollout, standing in for the model's users: the
// canary analysis needs requests to judge.
const loadRate = 150

// flow plays the seed's flow as merges, in three passes: the example as it
// is (the first model, deployed at 100 %), then each of dsChanges as a
// commit on ds1 that flows through build-components (nothing to rebuild),
// kf-pipeline (the pipeline version is unchanged) and training (a new
// model, judged by the gate against the champion): a model the gate stops
// goes no further, one it passes reaches deploy-model through a canary
// rollout. On a workdir where all is done it runs the last pass once more,
// which changes nothing (and finishes an interrupted run).
func (r *run) flow(ctx context.Context) error {
	if r.opt.Continue {
		return r.continueFlow(ctx)
	}
	cfg, err := r.repo.read(ctx, "origin/ds1", "branchml.yaml")
	if err != nil {
		return err
	}
	done := applied(cfg)
	owns, _, err := r.ownsDS1(ctx)
	if err != nil {
		return err
	}
	if !owns {
		// ds1 carries a person's commits: they flow through as they are,
		// and the quickstart commits no scripted change on top of them.
		return r.pass(ctx, done+1, "ds1 as you left it")
	}
	for n := done; n <= len(dsChanges); n++ {
		if n > done {
			c := dsChanges[n-1]
			// The commit is recorded as the quickstart's own before it is
			// pushed: a kill between the push and noteDS1 must not leave
			// ds1 looking like a person's work to the rerun.
			if err := r.repo.commitChange(ctx, "ds1", "branchml.yaml", n, c.message, r.pendingDS1); err != nil {
				return agent.Failed("commit the change on ds1", err, "")
			}
			if err := r.noteDS1(ctx); err != nil {
				return err
			}
			r.progress("ds1: %s", c.message)
		}
		if err := r.pass(ctx, n+1, change(n+1)); err != nil {
			return err
		}
	}
	return nil
}

// change names pass n's commit.
func change(n int) string {
	if n == 1 {
		return "the example as committed"
	}
	return dsChanges[n-2].message
}

// pass runs every stage once (what names the change it carries), merging each branch into the next. When the
// gate stops the model (train exits 3) nothing is merged into deploy-model
// and the deploy stage does not run, as in Jenkins: no pull request, no
// merge, no build of deploy-model.
func (r *run) pass(ctx context.Context, n int, what string) error {
	t0 := time.Now()
	r.progress("— pass %d (%s): ds1 → build-components → kf-pipeline → training → deploy-model", n, what)
	if err := r.finishInterruptedDeploy(ctx); err != nil {
		return err
	}
	if _, err := r.stage(ctx, "build", stageCall{agent: "branchml-build", app: buildcmd.App, from: "ds1", branch: "build-components"}, nil); err != nil {
		return err
	}
	if _, err := r.stage(ctx, "pipeline", stageCall{agent: "branchml-pipeline", app: pipelinecmd.App, from: "build-components", branch: "kf-pipeline"}, nil); err != nil {
		return err
	}
	extra := map[string]any{}
	if r.opt.Rerun {
		extra["rerun"] = true
	}
	deployTip, _ := r.repo.tip(ctx, "deploy-model")
	out, err := r.stage(ctx, "train", stageCall{agent: "branchml-train", app: traincmd.App, from: "kf-pipeline", branch: "training"}, extra)
	ps := PassSummary{Pass: n, Change: what}
	if out != nil && out.Result != nil {
		r.sum.Outputs["train"] = out.Result.Outputs
		ps.readTrain(out.Result.Outputs)
	}
	if out != nil && out.ExitCode == agent.ExitGate {
		ps.Blocked = true
		if tip, _ := r.repo.tip(ctx, "deploy-model"); tip != deployTip {
			return agent.Failed("pass "+strconv.Itoa(n), fmt.Errorf("deploy-model moved from %s to %s although the gate stopped the model", deployTip, tip), "")
		}
		ps.Deploy = "untouched: no pull request, deploy-model stays at " + short(deployTip)
		ps.Duration = time.Since(t0)
		r.sum.Passes = append(r.sum.Passes, ps)
		r.progress("pass %d: the KPI gate stopped %s; deploy-model untouched", n, ps.Model)
		return nil
	}
	if err != nil {
		return err
	}
	merged, err := r.mergePromotion(ctx)
	if err != nil {
		return err
	}
	if merged != "" {
		r.progress("deploy-model: merged %s", merged)
	}
	dout, err := r.deploy(ctx)
	if err != nil {
		return err
	}
	ps.Deploy = dout.Result.Summary
	ps.Duration = time.Since(t0)
	r.sum.Passes = append(r.sum.Passes, ps)
	return nil
}

// finishInterruptedDeploy runs the deploy stage first when deploy-model
// moved since its stage last ran here and holds a deploy.yaml: a merged
// promotion whose deploy did not finish (the quickstart was killed in the
// middle of the rollout). Jenkins retries that deploy-model build; until it
// has run, deploy.yaml names a version that does not serve, and the next
// training's gate cannot tell its champion.
func (r *run) finishInterruptedDeploy(ctx context.Context) error {
	tip, err := r.repo.tip(ctx, "deploy-model")
	if err != nil || tip == r.state.Ran["deploy-model"] {
		return nil // no deploy-model yet (the repository step makes it), or its stage ran on this tip
	}
	spec, err := r.repo.show(ctx, "refs/heads/deploy-model", records.DeploySpecPath)
	if err != nil || spec == "" {
		return err
	}
	r.progress("deploy-model: %s was merged but its deploy did not finish; deploying it first", short(tip))
	_, err = r.deploy(ctx)
	return err
}

// deploy runs the deploy stage (branchml-deploy on deploy-model) under
// deployLoad and keeps its outputs for the summary.
func (r *run) deploy(ctx context.Context) (*stagerun.Outcome, error) {
	load, err := r.deployLoad(ctx)
	if err != nil {
		return nil, err
	}
	out, err := r.stage(ctx, "deploy", stageCall{agent: "branchml-deploy", app: deploycmd.App, branch: "deploy-model"}, load)
	if err != nil {
		return nil, err
	}
	r.sum.Outputs["deploy"] = out.Result.Outputs
	return out, nil
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// mergePromotion merges the pull request into deploy-model that promotes
// the training branch's latest model, as a reviewer would (approve, then
// merge); "" when there is none. A promotion pull request of another
// model version is stale: it is left open, and said so.
func (r *run) mergePromotion(ctx context.Context) (string, error) {
	f, err := gitremote.New(r.repo.Remote)
	if err != nil {
		return "", err
	}
	prs, err := f.ListPullRequests(ctx, "open")
	if err != nil {
		return "", err
	}
	current, err := r.promotedHead(ctx)
	if err != nil {
		return "", err
	}
	merged := ""
	for _, pr := range prs {
		if pr.Base != "deploy-model" || !strings.HasPrefix(pr.Head, "branchml/promote-") {
			continue
		}
		if pr.Head != current {
			r.progress("deploy-model: pull request #%d (%s) left open: stale, the training branch's latest model is promoted by %s", pr.Number, pr.Title, current)
			continue
		}
		if len(pr.Approvals) == 0 {
			if _, err := f.Review(ctx, pr.Number, reviewer, "APPROVED", ""); err != nil {
				return "", agent.Failed(fmt.Sprintf("approve pull request #%d", pr.Number), err, "")
			}
		}
		if _, err := f.MergeAs(ctx, pr.Number, reviewer); err != nil {
			return "", agent.Failed(fmt.Sprintf("merge pull request #%d", pr.Number), err, "run the quickstart again")
		}
		merged = fmt.Sprintf("pull request #%d (%s), approved and merged by %s", pr.Number, pr.Title, reviewer)
	}
	return merged, nil
}

// read returns path at ref of the clone ("" when absent). The clone's
// origin/* refs are current: the quickstart fetches before it reads and its
// pushes move them.
func (m *mlRepo) read(ctx context.Context, ref, path string) (string, error) {
	out, err := git(ctx, m.Clone, "show", ref+":"+path)
	if err != nil {
		return "", nil
	}
	return out, nil
}

// commitChange applies dsChanges[n-1] to path on branch and pushes one
// commit; beforePush gets the commit's SHA once it is made, before the push
// (an error from it stops the push).
func (m *mlRepo) commitChange(ctx context.Context, branch, path string, n int, msg string, beforePush func(sha string) error) error {
	if _, err := git(ctx, m.Clone, "checkout", "--quiet", "-B", branch, "origin/"+branch); err != nil {
		return err
	}
	p := filepath.Join(m.Clone, path)
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if got := applied(string(data)); got != n-1 {
		return fmt.Errorf("%s holds %d of the changes, want %d", path, got, n-1)
	}
	edited := string(data)
	for _, e := range dsChanges[n-1].edits {
		if !strings.Contains(edited, e[0]) {
			return fmt.Errorf("%s has no %q to change", path, e[0])
		}
		edited = strings.Replace(edited, e[0], e[1], 1)
	}
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{{"add", path}, {"commit", "--quiet", "-m", msg}} {
		if _, err := git(ctx, m.Clone, args...); err != nil {
			return err
		}
	}
	sha, err := git(ctx, m.Clone, "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	if err := beforePush(strings.TrimSpace(sha)); err != nil {
		return err
	}
	_, err = git(ctx, m.Clone, "push", "--quiet", "origin", branch)
	return err
}
