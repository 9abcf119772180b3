package gitremote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/internal/retry"
)

// Defaults of the options.
var (
	// DefaultAttempts bounds the pushes of one WriteBack or merge.
	DefaultAttempts = 5
	// DefaultBackoff is the first wait between attempts; it doubles up to
	// MaxBackoff, and each wait is jittered between a half and the whole.
	DefaultBackoff = 50 * time.Millisecond
	// MaxBackoff caps one wait between attempts.
	MaxBackoff = 2 * time.Second
	// MetaSuffix is appended to a local remote's path to name the directory
	// of pull request, status and comment records.
	MetaSuffix = ".branchml"
)

// Forge is a forge.Forge on a plain git remote. It is safe for concurrent
// use, also by several processes on the same remote.
type Forge struct {
	remote string // URL or absolute path handed to git
	local  string // absolute path of a local bare remote, "" otherwise
	meta   string // directory of the records
	git    *git

	attempts int
	backoff  time.Duration
	tempDir  string
	log      logrus.FieldLogger

	// beforePush, when set (tests), runs before every push of a write-back
	// attempt (1-based).
	beforePush func(attempt int)
}

var _ forge.Forge = (*Forge)(nil)

// Option configures a Forge.
type Option func(*Forge)

// WithMetaDir sets the directory of the PR, status and comment records;
// required for remotes that are not local paths, default "<remote>.branchml".
func WithMetaDir(dir string) Option { return func(f *Forge) { f.meta = dir } }

// WithAttempts bounds the push attempts of one WriteBack or merge (>= 1).
func WithAttempts(n int) Option { return func(f *Forge) { f.attempts = n } }

// WithBackoff sets the first wait between attempts (doubling, jittered).
func WithBackoff(d time.Duration) Option { return func(f *Forge) { f.backoff = d } }

// WithGit sets the git executable (default "git" from PATH).
func WithGit(path string) Option { return func(f *Forge) { f.git.bin = path } }

// WithTempDir sets where private work areas are created (default os.TempDir()).
func WithTempDir(dir string) Option { return func(f *Forge) { f.tempDir = dir } }

// WithLogger sets the logger of retries and pushes (default: discard).
func WithLogger(l logrus.FieldLogger) Option { return func(f *Forge) { f.log = l } }

// New returns the forge of remote: a bare repository path, a file:// URL,
// or any URL the git CLI can push to (then WithMetaDir is required). A local
// remote must exist; create it with Init.
func New(remote string, opts ...Option) (*Forge, error) {
	if strings.TrimSpace(remote) == "" {
		return nil, errors.New("git remote is empty: set backends.forge.remote to a bare repository path or git URL")
	}
	f := &Forge{
		git:      &git{bin: "git"},
		attempts: DefaultAttempts,
		backoff:  DefaultBackoff,
		log:      discard(),
	}
	for _, o := range opts {
		o(f)
	}
	if f.attempts < 1 {
		return nil, fmt.Errorf("attempts must be at least 1, got %d", f.attempts)
	}
	if p, ok := localPath(remote); ok {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("git remote %s: %w", remote, err)
		}
		if !isGitDir(abs) {
			return nil, fmt.Errorf("git remote %s is not a git repository (no objects/ and refs/): create it with gitremote.Init or git init --bare: %w", abs, forge.ErrNotFound)
		}
		f.local, f.remote = abs, abs
		if f.meta == "" {
			f.meta = strings.TrimSuffix(abs, string(filepath.Separator)) + MetaSuffix
		}
	} else {
		f.remote = remote
		if f.meta == "" {
			return nil, fmt.Errorf("git remote %s is not a local path: give a records directory with WithMetaDir", remote)
		}
	}
	return f, nil
}

// Remote returns the remote as handed to git (an absolute path for a local remote).
func (f *Forge) Remote() string { return f.remote }

// MetaDir returns the directory of the PR, status and comment records.
func (f *Forge) MetaDir() string { return f.meta }

// localPath reports whether remote names a local path (plain or file://).
func localPath(remote string) (string, bool) {
	if strings.HasPrefix(remote, "file://") {
		u, err := url.Parse(remote)
		if err != nil {
			return "", false
		}
		return u.Path, true
	}
	if strings.Contains(remote, "://") {
		return "", false
	}
	// scp-like "host:path" (a colon before the first slash) is remote.
	if i := strings.IndexByte(remote, ':'); i > 0 {
		if j := strings.IndexByte(remote, '/'); j < 0 || i < j {
			return "", false
		}
	}
	return remote, true
}

func isGitDir(dir string) bool {
	for _, sub := range []string{"objects", "refs"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}

func discard() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// retryMoved runs once until it does not lose a push race (errMoved), at
// most f.attempts times, waiting backoff * 2^(n-1) capped at MaxBackoff and
// jittered (a half to the whole of it) between attempts. It returns nil, the
// first other error, a *forge.ConflictError on branch when every attempt
// lost, or a *retry.Error whose Context is set when ctx ended between
// attempts.
func (f *Forge) retryMoved(ctx context.Context, branch string, once func(ctx context.Context, attempt int) error) error {
	p := retry.Policy{Attempts: f.attempts, Initial: f.backoff, Max: MaxBackoff, Jitter: 0.5,
		Retriable: func(err error) bool { return errors.Is(err, errMoved) }}
	err := retry.Do(ctx, p, once)
	var re *retry.Error
	switch {
	case !errors.As(err, &re):
		return err
	case re.Context != nil:
		return re
	case errors.Is(re.Err, errMoved):
		return &forge.ConflictError{Repo: f.remote, Branch: branch, Attempts: f.attempts, Err: re.Err}
	}
	return re.Err
}

// checkPath rejects repository paths that git would misread or that escape
// the tree.
func checkPath(p string) error {
	if p == "" {
		return errors.New("empty repository path")
	}
	if strings.ContainsAny(p, "\x00\n\r\\") || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("bad repository path %q: use a relative slash-separated path like .branchml/run.json", p)
	}
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "", ".", "..", ".git":
			return fmt.Errorf("bad repository path %q: no empty, '.', '..' or '.git' components", p)
		}
	}
	return nil
}

// checkRef rejects ref names git would misread.
func checkRef(what, r string) error {
	if r == "" || strings.ContainsAny(r, " \t\n\r\x00:~^?*[\\") || strings.HasPrefix(r, "-") || strings.Contains(r, "..") {
		return fmt.Errorf("bad %s %q: use a branch name or commit SHA", what, r)
	}
	return nil
}
