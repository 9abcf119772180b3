package gitremote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/internal/secrets"
)

// GitError is a failed git command: its arguments, exit code and standard
// error. Error masks registered secrets and URL passwords.
type GitError struct {
	// Args are the git arguments (without "git").
	Args []string
	// Code is the exit code (-1 when git did not start or was killed).
	Code int
	// Stderr is git's trimmed standard error.
	Stderr string
	Err    error
}

func (e *GitError) Error() string {
	msg := fmt.Sprintf("git %s: exit %d", strings.Join(e.Args, " "), e.Code)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	} else if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if hint := StaleLockHint(e.Stderr); hint != "" {
		msg += " (" + hint + ")"
	}
	return secrets.Redact(redactURLs(msg))
}

var staleLock = regexp.MustCompile(`Unable to create '([^']+\.lock)': File exists`)

// StaleLockHint says what to do when git's stderr reports that a lock file
// (index.lock, refs/heads/<branch>.lock, …) exists: git takes it for every
// change, and a git process killed while holding it leaves it behind, so
// that every retry fails the same way. It returns "" for other errors.
func StaleLockHint(stderr string) string {
	m := staleLock.FindStringSubmatch(stderr)
	if m == nil {
		return ""
	}
	return "if no git process is working on this repository (a killed one left the lock), remove that one file, " + filepath.Clean(m[1]) + ", and run again; nothing else needs removing"
}

func (e *GitError) Unwrap() error { return e.Err }

// Temporary reports false: a git command that failed is not retried as is.
func (e *GitError) Temporary() bool { return false }

// redactURLs masks the password of every "scheme://user:password@" in s.
func redactURLs(s string) string {
	for i := 0; ; {
		j := strings.Index(s[i:], "://")
		if j < 0 {
			return s
		}
		start := i + j + 3
		end := start
		for end < len(s) && !strings.ContainsRune(" /@\n\t", rune(s[end])) {
			end++
		}
		if end < len(s) && s[end] == '@' {
			if k := strings.IndexByte(s[start:end], ':'); k >= 0 {
				s = s[:start+k+1] + secrets.Mask + s[end:]
				end = start + k + 1 + len(secrets.Mask)
			}
		}
		i = end
	}
}

// git runs the git CLI with a controlled environment.
type git struct {
	bin string
	// env is appended to the filtered process environment.
	env []string
}

// gitEnv is the process environment minus variables that would redirect git
// to another repository or index, plus fixed author and committer.
func gitEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
			"GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES",
			"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE",
			"GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE", "LC_ALL", "LANG":
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"LC_ALL=C",
		"GIT_AUTHOR_NAME="+forge.AuthorName,
		"GIT_AUTHOR_EMAIL="+forge.AuthorEmail,
		"GIT_COMMITTER_NAME="+forge.AuthorName,
		"GIT_COMMITTER_EMAIL="+forge.AuthorEmail,
	)
	return append(env, extra...)
}

// run runs git in gitDir (passed as --git-dir unless "") with stdin and
// returns its trimmed standard output.
func (g *git) run(ctx context.Context, gitDir string, stdin []byte, extraEnv []string, args ...string) (string, error) {
	out, err := g.runRaw(ctx, gitDir, stdin, extraEnv, args...)
	return strings.TrimRight(string(out), "\n"), err
}

func (g *git) runRaw(ctx context.Context, gitDir string, stdin []byte, extraEnv []string, args ...string) ([]byte, error) {
	full := args
	if gitDir != "" {
		full = append([]string{"--git-dir=" + gitDir}, args...)
	}
	cmd := exec.CommandContext(ctx, g.bin, full...)
	cmd.Env = gitEnv(append(append([]string{}, g.env...), extraEnv...))
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("git %s: %w", args[0], ctx.Err())
		}
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return stdout.Bytes(), &GitError{Args: args, Code: code, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return stdout.Bytes(), nil
}

// exitCode is the exit code of a *GitError in err's chain, or -1.
func exitCode(err error) int {
	var ge *GitError
	if errors.As(err, &ge) {
		return ge.Code
	}
	return -1
}
