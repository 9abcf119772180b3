package quickstart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/branchml/branchml/agents/backends/forge/gitremote"
)

// gitEnv gives every git command a fixed identity and no user config, so the
// quickstart behaves the same on every machine.
func gitEnv() []string {
	return append(os.Environ(),
		"GIT_AUTHOR_NAME=Data Scientist", "GIT_AUTHOR_EMAIL=ds1@example.com",
		"GIT_COMMITTER_NAME=Data Scientist", "GIT_COMMITTER_EMAIL=ds1@example.com",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
	)
}

// git runs git in dir and returns its trimmed stdout; the error carries stderr.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if hint := gitremote.StaleLockHint(msg); hint != "" {
			msg += " (" + hint + ")"
		}
		return "", fmt.Errorf("git %s (in %s): %w: %s", strings.Join(args, " "), dir, err, msg)
	}
	return strings.TrimSpace(out.String()), nil
}
