package commitstatus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/forgefactory"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/secrets"
)

// DescriptionMax is GitHub's limit on a commit status description, in characters.
const DescriptionMax = 140

// FinalTimeout bounds setting the final status, which runs on a fresh
// context: the stage's own may be cancelled (SIGTERM from an aborted build)
// or past its deadline.
var FinalTimeout = 15 * time.Second

// States are GitHub's commit status states.
var States = []string{"pending", "success", "failure", "error"}

// Context is the status context of stage: "branchml/<stage>".
func Context(stage string) string { return "branchml/" + stage }

// Description cuts s to its first non-empty line and to DescriptionMax
// characters (ending in "…" when cut), secrets masked.
func Description(s string) string {
	s = secrets.Redact(s)
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			s = line
			break
		}
	}
	if utf8.RuneCountInString(s) > DescriptionMax {
		r := []rune(s)
		s = string(r[:DescriptionMax-1]) + "…"
	}
	return s
}

// Enabled reports whether e's run sets commit statuses: the --commit-status
// flag ("on", "off", or "auto": on for a CI build, i.e. --build-url set)
// and a known commit. An unknown value is a usage error.
func Enabled(e *cli.Env) (bool, error) {
	mode := "auto"
	if e.CLI != nil && e.CLI.String("commit-status") != "" {
		mode = e.CLI.String("commit-status")
	}
	switch mode {
	case "on":
		return e.Build.Commit != "", nil
	case "off":
		return false, nil
	case "auto":
		return e.Build.BuildURL != "" && e.Build.Commit != "", nil
	}
	return false, agent.Usagef("use --commit-status auto, on or off", "--commit-status %q is not auto, on or off", mode)
}

// Setter sets commit statuses of one commit through a forge.
type Setter struct {
	// Forge receives the statuses; Commit is the commit they are set on and
	// TargetURL the link they carry (the Jenkins build).
	Forge             forge.Forge
	Commit, TargetURL string
	// Warn logs a status that could not be set.
	Warn func(format string, args ...any)
}

// Set sets state ("pending", "success", "failure", "error") on context with
// description (cut by Description). The error names the context and commit.
func (s *Setter) Set(ctx context.Context, context, state, description string) error {
	valid := false
	for _, v := range States {
		valid = valid || v == state
	}
	if !valid {
		return fmt.Errorf("commit status %s: state %q is not one of %s", context, state, strings.Join(States, ", "))
	}
	err := s.Forge.SetStatus(ctx, s.Commit, forge.Status{State: state, Context: context,
		Description: Description(description), TargetURL: s.TargetURL})
	if err != nil {
		return fmt.Errorf("set commit status %s=%s on %s: %w", context, state, s.Commit, err)
	}
	return nil
}

// try sets a status and only warns when it cannot.
func (s *Setter) try(ctx context.Context, context, state, description string) {
	if err := s.Set(ctx, context, state, description); err != nil && s.Warn != nil {
		s.Warn("commit status not set (the stage goes on): %v", secrets.Redact(err.Error()))
	}
}

// open returns the Setter of e's build, or nil (and a warning) when
// statuses are off or the forge cannot be opened.
func open(e *cli.Env) (*Setter, error) {
	on, err := Enabled(e)
	if err != nil || !on {
		return nil, err
	}
	if e.Config == nil {
		return nil, nil
	}
	f, err := forgefactory.New(e.Config, forgefactory.WithLogger(e.Log))
	if err != nil {
		e.Log.Warnf("commit statuses off: open the forge: %v", err)
		return nil, nil
	}
	return &Setter{Forge: f, Commit: e.Build.Commit, TargetURL: e.Build.BuildURL, Warn: e.Log.Warnf}, nil
}

// Outcome is the state and description of a stage that ended with res and
// err: success with the summary's first line; failure for exit 1, 2 and 3
// with what went wrong; error when it was interrupted (exit 130).
func Outcome(stage string, dryRun bool, res *agent.Result, err error) (state, description string) {
	if err == nil {
		if res != nil && strings.TrimSpace(res.Summary) != "" {
			return "success", res.Summary
		}
		if dryRun {
			return "success", stage + " planned"
		}
		return "success", stage + " done"
	}
	if errors.Is(err, context.Canceled) || agent.CodeOf(err) == agent.ExitInterrupted {
		return "error", stage + " interrupted"
	}
	d := agent.Details(stage, err)
	msg := d.Why
	if d.What != "" {
		msg = d.What + ": " + d.Why
	}
	if agent.CodeOf(err) == agent.ExitGate {
		return "failure", "gate not met: " + msg
	}
	return "failure", msg
}

// Wrap returns run with the stage's commit statuses around it: pending
// ("running <stage>", or "planning <stage>" on a dry run) before, the
// Outcome after, on a fresh context bounded by FinalTimeout.
func Wrap(stage string, run func(*cli.Env) (*agent.Result, error)) func(*cli.Env) (*agent.Result, error) {
	return func(e *cli.Env) (*agent.Result, error) {
		s, err := open(e)
		if err != nil {
			return nil, err
		}
		if s == nil {
			return run(e)
		}
		verb := "running "
		if e.DryRun {
			verb = "planning "
		}
		s.try(e.Ctx, Context(stage), "pending", verb+stage)
		res, err := run(e)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(e.Ctx), FinalTimeout)
		defer cancel()
		state, desc := Outcome(stage, e.DryRun, res, err)
		s.try(ctx, Context(stage), state, desc)
		return res, err
	}
}

// Command is `branchml commit-status`: set one commit status through the
// forge of --config.
func Command() *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "commit-status", Usage: "set a commit status (e.g. branchml/train) through the configured forge",
		Description: "Sets --state on --context for --commit, linking --build-url, through backends.forge\n" +
			"(GitHub with GITHUB_TOKEN, or the local git remote). The Jenkins steps use it for what no\n" +
			"agent reports itself: a build aborted or timed out while a stage ran, an agent killed\n" +
			"before it wrote its result.",
		Stage: "commit-status", NeedsConfig: true, BuildFlags: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "context", Required: true, Usage: "the status `CONTEXT`, e.g. branchml/train"},
			&ucli.StringFlag{Name: "state", Required: true, Usage: "pending, success, failure or error"},
			&ucli.StringFlag{Name: "description", Usage: "one line (cut to 140 characters)"},
		},
		Run: func(e *cli.Env) (*agent.Result, error) {
			if e.Build.Commit == "" {
				return nil, agent.Usagef("pass --commit SHA (or run in the checkout)", "no commit to set the status on")
			}
			f, err := forgefactory.New(e.Config, forgefactory.WithLogger(e.Log))
			if err != nil {
				return nil, agent.Usage("open the forge", err, "fix backends.forge in branchml.yaml and its credentials")
			}
			s := &Setter{Forge: f, Commit: e.Build.Commit, TargetURL: e.Build.BuildURL}
			c, st, d := e.CLI.String("context"), e.CLI.String("state"), e.CLI.String("description")
			if d == "" {
				d = st
			}
			out := map[string]string{"context": c, "state": st, "description": Description(d), "commit": e.Build.Commit, "targetUrl": e.Build.BuildURL}
			if e.DryRun {
				return &agent.Result{Summary: fmt.Sprintf("would set %s %s on %s", c, st, short(e.Build.Commit)), Outputs: out}, nil
			}
			if err := s.Set(e.Ctx, c, st, d); err != nil {
				if strings.Contains(err.Error(), "is not one of") {
					return nil, agent.Usage("commit status", err, "use --state pending, success, failure or error")
				}
				return nil, agent.Failed("commit status", err, "check backends.forge and its credentials (GITHUB_TOKEN needs repo:status)")
			}
			return &agent.Result{Summary: fmt.Sprintf("%s %s on %s", c, st, short(e.Build.Commit)), Outputs: out}, nil
		},
	})
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
