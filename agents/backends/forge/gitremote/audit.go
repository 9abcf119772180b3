package gitremote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// UserEnv names the local forge's user (who opens, approves, merges and
// closes pull requests by hand); default $USER, else "local".
const UserEnv = "BRANCHML_USER"

var userRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,38}$`)

// User is the local user: $BRANCHML_USER, else $USER, else "local".
func User(getenv func(string) string) string {
	for _, k := range []string{UserEnv, "USER"} {
		if u := getenv(k); u != "" {
			return u
		}
	}
	return "local"
}

// checkUser refuses a user name GitHub would not take as a login.
func checkUser(u string) error {
	if !userRE.MatchString(u) {
		return fmt.Errorf("user %q: use a login such as ds1 or alice (letters, digits, '.', '_', '-')", u)
	}
	return nil
}

// identity is the git author and committer of a commit made by user.
func identity(user string) []string {
	email := user + "@localhost"
	return []string{"GIT_AUTHOR_NAME=" + user, "GIT_AUTHOR_EMAIL=" + email, "GIT_COMMITTER_NAME=" + user, "GIT_COMMITTER_EMAIL=" + email}
}

func (f *Forge) reviewsPath(n int) string {
	return filepath.Join(f.pullsDir(), strconv.Itoa(n)+".reviews.json")
}

// save writes rec, without the Approvals computed from its reviews.
func (f *Forge) save(rec *PullRecord) error {
	c := *rec
	c.Approvals = nil
	return atomicfile.WriteJSON(f.pullPath(rec.Number), c)
}

// Reviews returns the reviews of pull request number, oldest first.
func (f *Forge) Reviews(ctx context.Context, number int) ([]forge.Review, error) {
	var rs []forge.Review
	if err := readJSON(f.reviewsPath(number), &rs); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return rs, nil
}

func (f *Forge) withApprovals(rec *PullRecord) error {
	rs, err := f.Reviews(context.Background(), rec.Number)
	if err != nil {
		return err
	}
	rec.Approvals = forge.LatestApprovals(rs)
	return nil
}

// Review records a review of the open pull request number by user
// (approve: state "APPROVED"; "CHANGES_REQUESTED" or "COMMENTED"), on the
// head commit it has now, as GitHub does. Like GitHub, an author cannot
// approve (or request changes on) their own pull request.
func (f *Forge) Review(ctx context.Context, number int, user, state, body string) (*PullRecord, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	switch state {
	case "APPROVED", "CHANGES_REQUESTED", "COMMENTED":
	default:
		return nil, fmt.Errorf("review state %q: APPROVED, CHANGES_REQUESTED or COMMENTED", state)
	}
	rec, unlock, err := f.lockedPull(ctx, number)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if rec.State != "open" {
		return nil, fmt.Errorf("review pull request #%d: it is %s", number, rec.State)
	}
	if state != "COMMENTED" && user == rec.Author {
		return nil, fmt.Errorf("review pull request #%d: %s opened it and cannot approve or request changes on their own pull request; another reviewer must (BRANCHML_USER=NAME, or --as NAME)", number, user)
	}
	head, err := f.remoteTip(ctx, rec.Head)
	if err != nil {
		return nil, err
	}
	rs, err := f.Reviews(ctx, number)
	if err != nil {
		return nil, err
	}
	rs = append(rs, forge.Review{User: user, State: state, Commit: head, Body: body, At: now()})
	if err := atomicfile.WriteJSON(f.reviewsPath(number), rs); err != nil {
		return nil, fmt.Errorf("review pull request #%d: %w", number, err)
	}
	rec.Approvals = forge.LatestApprovals(rs)
	return rec, nil
}

// ClosePullRequest closes the open pull request number without merging
// (as user); closing a closed one changes nothing, a merged one is an error.
func (f *Forge) ClosePullRequest(ctx context.Context, number int, user string) (*PullRecord, error) {
	if user == "" {
		user = User(os.Getenv)
	}
	rec, unlock, err := f.lockedPull(ctx, number)
	if err != nil {
		return nil, err
	}
	defer unlock()
	switch rec.State {
	case "closed":
		return rec, nil
	case "merged":
		return nil, fmt.Errorf("close pull request #%d: it is merged (as %s); revert the merge on %s instead", number, rec.MergeCommit, rec.Base)
	}
	t := now()
	rec.State, rec.ClosedBy, rec.UpdatedAt = "closed", user, t
	if err := f.save(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// PullRequest returns the record of pull request number (with its
// approvals); it wraps forge.ErrNotFound when there is none.
func (f *Forge) PullRequest(ctx context.Context, number int) (*PullRecord, error) {
	return f.pull(number)
}

// MergedPullRequest returns the merged pull request into base whose merge
// commit is commit, following first parents over branchml's write-back
// commits (author forge.AuthorEmail); nil when the commit did not arrive
// through one of its pull requests.
func (f *Forge) MergedPullRequest(ctx context.Context, base, commit string) (*forge.PullRequest, error) {
	if err := checkRef("commit", commit); err != nil {
		return nil, err
	}
	gitDir, _, done, err := f.branches(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	out, err := f.git.run(ctx, gitDir, nil, nil, "log", "--first-parent", "-n", "100", "--format=%H %ae", commit, "--")
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", commit, err)
	}
	all, err := f.pulls()
	if err != nil {
		return nil, err
	}
	byMerge := map[string]PullRecord{}
	for _, pr := range all {
		if pr.State == "merged" && pr.Base == base && pr.MergeCommit != "" {
			byMerge[pr.MergeCommit] = pr
		}
	}
	for _, line := range strings.Split(out, "\n") {
		sha, email, _ := strings.Cut(line, " ")
		if pr, ok := byMerge[sha]; ok {
			out := pr.PullRequest
			return &out, nil
		}
		if email != forge.AuthorEmail {
			return nil, nil // a commit of someone's, not through a pull request
		}
	}
	return nil, nil
}

// ListDir returns the files directly in dir at ref, sorted.
func (f *Forge) ListDir(ctx context.Context, ref, dir string) ([]string, error) {
	if err := checkRef("ref", ref); err != nil {
		return nil, err
	}
	dir = strings.Trim(dir, "/")
	gitDir, prefix, done, err := f.branches(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rev := prefix + ref
	if r, _ := resolveIn(ctx, f.git, gitDir, rev); r == "" {
		rev = ref
	}
	out, err := f.git.run(ctx, gitDir, nil, nil, "ls-tree", "-z", rev, "--", dir+"/")
	if err != nil {
		if strings.Contains(err.Error(), "Not a valid object name") || strings.Contains(err.Error(), "not a tree object") {
			return nil, fmt.Errorf("list %s at %s in %s: %w", dir, ref, f.remote, forge.ErrNotFound)
		}
		return nil, fmt.Errorf("list %s at %s: %w", dir, ref, err)
	}
	var names []string
	for _, entry := range strings.Split(out, "\x00") {
		meta, path, ok := strings.Cut(entry, "\t")
		if !ok || !strings.Contains(meta, " blob ") {
			continue
		}
		names = append(names, strings.TrimPrefix(path, dir+"/"))
	}
	sort.Strings(names)
	return names, nil
}

var (
	_ forge.Auditor   = (*Forge)(nil)
	_ forge.DirLister = (*Forge)(nil)
)
