package traincmd

import (
	"strings"
	"testing"
)

func TestUsageExit2(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--dataset and --model-base-path are required"},
		{[]string{"--dataset", dir, "--model-base-path", dir, "--hidden", "a"}, "bad --hidden"},
		{[]string{"--dataset", dir, "--model-base-path", dir, "--epochs", "0"}, "must be positive"},
		{[]string{"--dataset", dir, "--model-base-path", dir, "--model-version", "0"}, "want a positive integer"},
		{[]string{"--dataset", dir, "--model-base-path", dir}, "schema.json"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var sb strings.Builder
		if code := Main(c.args, &sb); code != ExitUsage || !strings.Contains(sb.String(), c.want) {
			t.Errorf("%v: exit %d %q, want 2 and %q", c.args, code, sb.String(), c.want)
		}
	}
}
