package prcmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/forgefactory"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
)

// RemoteEnv is the local forge's bare repository, as the quickstart
// exports it (backends.forge.remote as an environment variable).
const RemoteEnv = "BRANCHML_BACKENDS_FORGE_REMOTE"

func remoteFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "remote", Usage: "the local forge's bare repository `DIR` (default $" + RemoteEnv + ", else backends.forge of --config)"}
}

func asFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "as", Usage: "act as `USER` (default $" + gitremote.UserEnv + ", else $USER)"}
}

// open finds the local forge: --remote, $BRANCHML_BACKENDS_FORGE_REMOTE,
// else backends.forge of --config when that file exists.
func open(e *cli.Env) (*gitremote.Forge, error) {
	remote := e.CLI.String("remote")
	if remote == "" {
		remote = os.Getenv(RemoteEnv)
	}
	if remote == "" {
		cfg, err := config.Load(e.CLI.String("config"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, agent.Usagef("pass --remote DIR, export "+RemoteEnv+" (the quickstart's summary prints it), or run where branchml.yaml is", "no local forge named")
		case err != nil:
			return nil, agent.Usage("load configuration", err, "fix the fields named above, or pass --remote")
		}
		if t := cfg.Backends.Forge.Type; t != "" && t != "local" {
			return nil, agent.Usagef("use the forge's own web UI or CLI for its pull requests", "backends.forge.type is %q: branchml pr is for the local forge", t)
		}
		remote = forgefactory.LocalRemote(cfg)
	}
	f, err := gitremote.New(remote, gitremote.WithLogger(e.Log))
	if err != nil {
		return nil, agent.Usage("open the local forge", err, "pass --remote with the bare repository (the quickstart's "+RemoteEnv+")")
	}
	return f, nil
}

func user(e *cli.Env) string {
	if u := e.CLI.String("as"); u != "" {
		return u
	}
	return gitremote.User(os.Getenv)
}

func baseFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "base", Usage: "with a head BRANCH (or none): the open pull request into this `BRANCH`"}
}

// pick is the pull request the arguments name, as gh does: a NUMBER (or
// #NUMBER), or a head BRANCH (the open pull request from it, --base
// narrowing it down), or none with --base (the one open pull request
// into it).
func pick(e *cli.Env, f *gitremote.Forge) (int, error) {
	arg, base := e.CLI.Args().First(), e.CLI.String("base")
	if e.CLI.NArg() > 1 || (arg == "" && base == "") {
		return 0, agent.Usagef("name the pull request: 'branchml pr "+e.CLI.Command.Name+" 3', '... ds1 --base build-components' or '... --base deploy-model' ('branchml pr list' lists them)",
			"%s takes one pull request: a number, a head branch, or --base alone", e.CLI.Command.Name)
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(arg, "#")); err == nil {
		if n <= 0 {
			return 0, agent.Usagef("give a pull request number, e.g. 3", "%q is not a pull request number", arg)
		}
		return n, nil
	}
	open, err := f.ListPullRequests(e.Ctx, "open")
	if err != nil {
		return 0, agent.Failed("list pull requests", err, "")
	}
	var found []gitremote.PullRecord
	for _, pr := range open {
		if (arg == "" || pr.Head == arg) && (base == "" || pr.Base == base) {
			found = append(found, pr)
		}
	}
	what := "from " + arg
	if arg == "" {
		what = ""
	}
	if base != "" {
		what = strings.TrimSpace(what + " into " + base)
	}
	switch len(found) {
	case 1:
		return found[0].Number, nil
	case 0:
		return 0, agent.Usagef("'branchml pr list' lists the open ones; 'branchml pr open --head BRANCH --base BRANCH' opens one", "no open pull request %s", what)
	}
	var nums []string
	for _, pr := range found {
		nums = append(nums, fmt.Sprintf("#%d (%s → %s)", pr.Number, pr.Head, pr.Base))
	}
	return 0, agent.Usagef("give its number, or --base", "%d open pull requests %s: %s", len(found), what, strings.Join(nums, ", "))
}

// openPick opens the local forge (open) and picks the pull request the
// arguments name (pick): the start of each command on one pull request.
func openPick(e *cli.Env) (*gitremote.Forge, int, error) {
	f, err := open(e)
	if err != nil {
		return nil, 0, err
	}
	n, err := pick(e, f)
	if err != nil {
		return nil, 0, err
	}
	return f, n, nil
}

// refused is the error of an action the forge turned down: a pull request
// it does not have as notFound words it, anything else a usage error with
// hint.
func refused(what string, err error, hint string) error {
	if errors.Is(err, forge.ErrNotFound) {
		return notFound(what, err)
	}
	return agent.Usage(what, err, hint)
}

func notFound(what string, err error) error {
	if errors.Is(err, forge.ErrNotFound) {
		return agent.Usage(what, err, "'branchml pr list --state all' lists the pull requests")
	}
	return agent.Failed(what, err, "")
}

// Line is one pull request in one line, e.g. "#3  open    ds1 → training
// Lower the learning rate  (by ds1; approved by alice)".
func Line(pr gitremote.PullRecord) string {
	var who []string
	if pr.Author != "" {
		who = append(who, "by "+pr.Author)
	}
	if a := pr.Approvers(); len(a) > 0 {
		who = append(who, "approved by "+strings.Join(a, ", "))
	} else if pr.State == "open" {
		who = append(who, "not approved")
	}
	if pr.MergedBy != "" {
		who = append(who, "merged by "+pr.MergedBy)
	}
	if pr.ClosedBy != "" {
		who = append(who, "closed by "+pr.ClosedBy)
	}
	return fmt.Sprintf("#%-3d %-7s %s → %s  %s  (%s)", pr.Number, pr.State, pr.Head, pr.Base, pr.Title, strings.Join(who, "; "))
}

func show(pr *gitremote.PullRecord, reviews []forge.Review, comments []gitremote.CommentRecord) string {
	var b strings.Builder
	b.WriteString(Line(*pr) + "\n")
	fmt.Fprintf(&b, "  opened %s", pr.CreatedAt.UTC().Format(time.RFC3339))
	if pr.MergedAt != nil {
		fmt.Fprintf(&b, ", merged %s as %s", pr.MergedAt.UTC().Format(time.RFC3339), pr.MergeCommit)
	}
	b.WriteString("\n")
	if strings.TrimSpace(pr.Body) != "" {
		b.WriteString("\n")
		for _, l := range strings.Split(strings.TrimRight(pr.Body, "\n"), "\n") {
			b.WriteString("  " + l + "\n")
		}
	}
	if len(reviews) > 0 {
		b.WriteString("\nreviews:\n")
		for _, r := range reviews {
			c := r.Commit
			if len(c) > 12 {
				c = c[:12]
			}
			fmt.Fprintf(&b, "  %s  %-17s %s on %s", r.At.UTC().Format(time.RFC3339), r.State, r.User, c)
			if r.Body != "" {
				b.WriteString(": " + r.Body)
			}
			b.WriteString("\n")
		}
	}
	if len(comments) > 0 {
		b.WriteString("\ncomments:\n")
		for _, c := range comments {
			fmt.Fprintf(&b, "  %s  %s: %s\n", c.CreatedAt.UTC().Format(time.RFC3339), c.Author, strings.ReplaceAll(strings.TrimSpace(c.Body), "\n", "\n    "))
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// Command is `branchml pr`.
func Command() *ucli.Command {
	list := cli.Command(cli.Spec{
		Name: "list", Usage: "list the pull requests of the local forge", Stage: "pr",
		Flags: []ucli.Flag{remoteFlag(), &ucli.StringFlag{Name: "state", Value: "open", Usage: "open, closed, merged or all"}},
		Run: func(e *cli.Env) (*agent.Result, error) {
			f, err := open(e)
			if err != nil {
				return nil, err
			}
			prs, err := f.ListPullRequests(e.Ctx, e.CLI.String("state"))
			if err != nil {
				return nil, agent.Usage("list pull requests", err, "use --state open, closed, merged or all")
			}
			var lines []string
			for _, pr := range prs {
				lines = append(lines, Line(pr))
			}
			summary := strings.Join(lines, "\n")
			if len(prs) == 0 {
				summary = fmt.Sprintf("no %s pull requests", e.CLI.String("state"))
			}
			if prs == nil {
				prs = []gitremote.PullRecord{}
			}
			return output(e, summary, map[string]any{"pullRequests": prs}), nil
		},
	})
	showCmd := cli.Command(cli.Spec{
		Name: "show", Usage: "show a pull request: its state, author, reviews, merge and comments", ArgsUsage: "NUMBER|HEAD_BRANCH", Stage: "pr",
		Flags: []ucli.Flag{remoteFlag(), baseFlag()},
		Run: func(e *cli.Env) (*agent.Result, error) {
			f, n, err := openPick(e)
			if err != nil {
				return nil, err
			}
			pr, err := f.PullRequest(e.Ctx, n)
			if err != nil {
				return nil, notFound(fmt.Sprintf("pull request #%d", n), err)
			}
			rs, err := f.Reviews(e.Ctx, n)
			if err != nil {
				return nil, agent.Failed("reviews", err, "")
			}
			cs, err := f.Comments(e.Ctx, n)
			if err != nil {
				return nil, agent.Failed("comments", err, "")
			}
			return output(e, show(pr, rs, cs), map[string]any{"pullRequest": pr, "reviews": nonNil(rs), "comments": nonNil(cs)}), nil
		},
	})
	openCmd := cli.Command(cli.Spec{
		Name: "open", Usage: "open a pull request from --head into --base (or update the open one's title and body)", Stage: "pr",
		Flags: []ucli.Flag{remoteFlag(), asFlag(),
			&ucli.StringFlag{Name: "head", Required: true, Usage: "the `BRANCH` to merge, e.g. ds1"},
			&ucli.StringFlag{Name: "base", Required: true, Usage: "the `BRANCH` to merge into, e.g. build-components"},
			&ucli.StringFlag{Name: "title", Usage: "the `TITLE` (default: \"Merge HEAD into BASE\")"},
			&ucli.StringFlag{Name: "body", Usage: "the description `TEXT`"},
		},
		Run: func(e *cli.Env) (*agent.Result, error) {
			f, err := open(e)
			if err != nil {
				return nil, err
			}
			title := e.CLI.String("title")
			if title == "" {
				title = fmt.Sprintf("Merge %s into %s", e.CLI.String("head"), e.CLI.String("base"))
			}
			pr, err := f.EnsurePullRequest(e.Ctx, forge.PullRequest{Head: e.CLI.String("head"), Base: e.CLI.String("base"), Title: title, Body: e.CLI.String("body"), Author: user(e)})
			if err != nil {
				if errors.Is(err, forge.ErrNotFound) {
					return nil, agent.Usage("open a pull request", err, "push the branch first (git push origin BRANCH), or fix --head/--base")
				}
				return nil, agent.Usage("open a pull request", err, "")
			}
			rec, err := f.PullRequest(e.Ctx, pr.Number)
			if err != nil {
				return nil, agent.Failed("read the pull request", err, "")
			}
			return output(e, "opened "+Line(*rec), map[string]any{"pullRequest": rec}), nil
		},
	})
	approve := cli.Command(cli.Spec{
		Name: "approve", Usage: "approve a pull request (as --as, never its author)", ArgsUsage: "NUMBER|HEAD_BRANCH", Stage: "pr",
		Flags: []ucli.Flag{remoteFlag(), asFlag(), baseFlag(), &ucli.StringFlag{Name: "body", Usage: "a review comment `TEXT`"}},
		Run: func(e *cli.Env) (*agent.Result, error) {
			f, n, err := openPick(e)
			if err != nil {
				return nil, err
			}
			rec, err := f.Review(e.Ctx, n, user(e), "APPROVED", e.CLI.String("body"))
			if err != nil {
				return nil, refused(fmt.Sprintf("approve pull request #%d", n), err, "approve as another user: --as NAME")
			}
			return output(e, "approved "+Line(*rec), map[string]any{"pullRequest": rec}), nil
		},
	})
	merge := cli.Command(cli.Spec{
		Name: "merge", Usage: "merge a pull request (a merge commit on its base, as the web UI's merge button)", ArgsUsage: "NUMBER|HEAD_BRANCH", Stage: "pr",
		Flags: []ucli.Flag{remoteFlag(), asFlag(), baseFlag()},
		Run: func(e *cli.Env) (*agent.Result, error) {
			f, n, err := openPick(e)
			if err != nil {
				return nil, err
			}
			before, err := f.PullRequest(e.Ctx, n)
			if err != nil {
				return nil, notFound(fmt.Sprintf("merge pull request #%d", n), err)
			}
			if before.State == "open" && len(before.Approvals) == 0 {
				e.Log.Warnf("pull request #%d has no approving review: a stage with requireApproval: true will refuse its merge", n)
			}
			commit, err := f.MergeAs(e.Ctx, n, user(e))
			if err != nil {
				var mc *gitremote.MergeConflictError
				if errors.As(err, &mc) {
					return nil, agent.Failed(fmt.Sprintf("merge pull request #%d", n), err, "")
				}
				return nil, agent.Usage(fmt.Sprintf("merge pull request #%d", n), err, "")
			}
			rec, err := f.PullRequest(e.Ctx, n)
			if err != nil {
				return nil, agent.Failed("read the pull request", err, "")
			}
			return output(e, fmt.Sprintf("merged %s\n  %s is now %s: run its stage (or 'branchml quickstart --continue')", Line(*rec), rec.Base, commit),
				map[string]any{"pullRequest": rec, "mergeCommit": commit}), nil
		},
	})
	closeCmd := cli.Command(cli.Spec{
		Name: "close", Usage: "close a pull request without merging it", ArgsUsage: "NUMBER|HEAD_BRANCH", Stage: "pr",
		Flags: []ucli.Flag{remoteFlag(), asFlag(), baseFlag()},
		Run: func(e *cli.Env) (*agent.Result, error) {
			f, n, err := openPick(e)
			if err != nil {
				return nil, err
			}
			rec, err := f.ClosePullRequest(e.Ctx, n, user(e))
			if err != nil {
				return nil, refused(fmt.Sprintf("close pull request #%d", n), err, "")
			}
			return output(e, "closed "+Line(*rec), map[string]any{"pullRequest": rec}), nil
		},
	})
	return &ucli.Command{Name: "pr", Usage: "pull requests of the local forge: list, show, open, approve, merge, close",
		Subcommands: []*ucli.Command{list, showCmd, openCmd, approve, merge, closeCmd}}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// output is the result: the text for people, the records for -o json.
func output(e *cli.Env, summary string, outputs any) *agent.Result {
	res := &agent.Result{Summary: summary, Outputs: outputs}
	if e.Output != "json" && e.CLI.String("result") == "" {
		res.Outputs = struct{}{}
	}
	return res
}
