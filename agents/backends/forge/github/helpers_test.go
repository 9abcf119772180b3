package github_test

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"testing"

	fakegh "github.com/branchml/branchml/agents/internal/fake/github"
)

func mustCommit(t *testing.T, srv *fakegh.Server, sha string) fakegh.Commit {
	t.Helper()
	c, ok := srv.CommitInfo(sha)
	if !ok {
		t.Fatalf("no commit %s", sha)
	}
	return c
}

// gitBlobSHA is git's blob id of content.
func gitBlobSHA(content string) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00%s", len(content), content)
	return hex.EncodeToString(h.Sum(nil))
}
