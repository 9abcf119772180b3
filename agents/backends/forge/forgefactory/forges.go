package forgefactory

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/github"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/statedir"
)

// Types are the accepted values of backends.forge.type.
var Types = []string{"local", "github"}

type options struct {
	log    logrus.FieldLogger
	git    []gitremote.Option
	github []github.Option
}

// Option configures New.
type Option func(*options)

// WithLogger sets the logger handed to the forge.
func WithLogger(l logrus.FieldLogger) Option { return func(o *options) { o.log = l } }

// WithGitRemoteOptions adds options for the local forge.
func WithGitRemoteOptions(opts ...gitremote.Option) Option {
	return func(o *options) { o.git = append(o.git, opts...) }
}

// WithGitHubOptions adds options for the GitHub forge (e.g. an HTTP client).
func WithGitHubOptions(opts ...github.Option) Option {
	return func(o *options) { o.github = append(o.github, opts...) }
}

// LocalRemote is the bare repository the local forge of cfg uses:
// backends.forge.remote (relative to branchml.yaml's directory; a URL is
// returned as is), else "<state dir>/forge/<project>.git". The quickstart
// creates it with gitremote.Init.
func LocalRemote(cfg *config.Config) string {
	r := cfg.Backends.Forge.Remote
	if r == "" {
		return statedir.Path(cfg, "forge", cfg.Project+".git")
	}
	if strings.Contains(r, "://") || strings.HasPrefix(r, "file:") {
		return r
	}
	return cfg.Path(r)
}

// New returns the forge of cfg.Backends.Forge. Errors name the field to fix:
// an unknown type, a missing local remote, missing owner/repo, or no
// GITHUB_TOKEN (wrapping secrets.ErrNotSet). Callers report them as usage
// errors (exit 2).
func New(cfg *config.Config, opts ...Option) (forge.Forge, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	fb := cfg.Backends.Forge
	switch fb.Type {
	case "", "local":
		gopts := o.git
		if o.log != nil {
			gopts = append([]gitremote.Option{gitremote.WithLogger(o.log)}, gopts...)
		}
		remote := LocalRemote(cfg)
		f, err := gitremote.New(remote, gopts...)
		if err != nil {
			return nil, fmt.Errorf("backends.forge (type local, remote %s): %w", remote, err)
		}
		return f, nil
	case "github":
		hopts := o.github
		if fb.APIURL != "" {
			hopts = append([]github.Option{github.WithBaseURL(fb.APIURL)}, hopts...)
		}
		if o.log != nil {
			hopts = append([]github.Option{github.WithLogger(o.log)}, hopts...)
		}
		f, err := github.New(fb.Owner, fb.Repo, hopts...)
		if err != nil {
			return nil, fmt.Errorf("backends.forge (type github): %w", err)
		}
		return f, nil
	default:
		return nil, fmt.Errorf("backends.forge.type %q is unknown: use one of %s", fb.Type, strings.Join(Types, ", "))
	}
}

// RequireApproval is the gate of stages.<stage>.requireApproval: when set
// (and not a dry run: a change request only plans), the commit the stage
// runs for must have arrived on the stage's branch through a merged pull
// request with an approving review (forge.RequireApproval). It returns nil
// or an *agent.Error of exit code 2, to be returned before any work.
func RequireApproval(ctx context.Context, cfg *config.Config, f forge.Forge, stage, commit string, dryRun bool) error {
	if !cfg.RequiresApproval(stage) || dryRun {
		return nil
	}
	branch := cfg.Branches[stage]
	what := fmt.Sprintf("stages.%s.requireApproval", stage)
	if commit == "" {
		return agent.Usagef("pass --commit (Jenkins sets GIT_COMMIT)", "%s: the commit is not known", what)
	}
	_, err := forge.RequireApproval(ctx, f, branch, commit)
	var ae *forge.ApprovalError
	switch {
	case errors.As(err, &ae) && ae.PR != nil:
		return agent.Usage(what, err, fmt.Sprintf("have a reviewer approve pull request #%d (GitHub, or 'branchml pr approve %d --as REVIEWER'), then run the stage again", ae.PR.Number, ae.PR.Number))
	case errors.As(err, &ae):
		return agent.Usage(what, err, fmt.Sprintf("merge into %s through a pull request with an approving review ('branchml pr open --head BRANCH --base %s', approve, merge), or set stages.%s.requireApproval: false", branch, branch, stage))
	case err != nil:
		return agent.Usage(what, err, "check backends.forge; requireApproval needs the local forge or GitHub")
	}
	return nil
}
