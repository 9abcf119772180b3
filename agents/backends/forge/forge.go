package forge

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned (wrapped) when a ref, file or pull request does not exist.
var ErrNotFound = errors.New("not found")

// Author of every write-back commit.
const (
	AuthorName  = "branchml"
	AuthorEmail = "branchml@localhost"
)

// WriteBack is one commit of files onto a branch.
type WriteBack struct {
	// Branch receives the commit.
	Branch string
	// From is the ref a missing Branch is created from ("" = Branch must exist).
	From string
	// Files maps a repository path to its new content; a nil value deletes it.
	Files map[string][]byte
	// Message is the commit message: "branchml <stage>: <what> for <source commit>".
	Message string
}

// PullRequest is a change request from Head into Base. Number and URL are
// set by the forge.
type PullRequest struct {
	Number int    `json:"number"`
	Head   string `json:"head"`
	Base   string `json:"base"`
	Title  string `json:"title"`
	Body   string `json:"body"`
	URL    string `json:"url,omitempty"`
	// State is "open", "closed" or "merged".
	State string `json:"state,omitempty"`
	// Author is who opened it (a login; "branchml" for the promotion PRs).
	Author string `json:"author,omitempty"`
	// MergeCommit, MergedBy and MergedAt are set once it is merged.
	MergeCommit string     `json:"mergeCommit,omitempty"`
	MergedBy    string     `json:"mergedBy,omitempty"`
	MergedAt    *time.Time `json:"mergedAt,omitempty"`
	// Approvals are the reviews that approve it: each reviewer's latest
	// review, when that is an approval (as GitHub counts them).
	Approvals []Review `json:"approvals,omitempty"`
}

// Review is one pull request review.
type Review struct {
	User string `json:"user"`
	// State is GitHub's review state: "APPROVED", "CHANGES_REQUESTED",
	// "COMMENTED" or "DISMISSED".
	State string `json:"state"`
	// Commit is the head commit the review was given on.
	Commit string    `json:"commit,omitempty"`
	Body   string    `json:"body,omitempty"`
	At     time.Time `json:"submittedAt"`
}

// Approvers are the users whose latest review approves.
func (pr *PullRequest) Approvers() []string {
	var out []string
	for _, r := range pr.Approvals {
		out = append(out, r.User)
	}
	return out
}

// LatestApprovals reduces reviews (oldest first) to each reviewer's latest
// review that counts (approved, changes requested, dismissed; a comment
// does not change a verdict) and keeps the approvals, in reviewer order.
func LatestApprovals(reviews []Review) []Review {
	latest := map[string]Review{}
	var order []string
	for _, r := range reviews {
		if r.State == "COMMENTED" || r.State == "PENDING" {
			continue
		}
		if _, ok := latest[r.User]; !ok {
			order = append(order, r.User)
		}
		latest[r.User] = r
	}
	var out []Review
	for _, u := range order {
		if latest[u].State == "APPROVED" {
			out = append(out, latest[u])
		}
	}
	return out
}

// Auditor is a forge that can tell through which pull request a commit
// arrived on a branch (GitHub: the commit's pulls and their reviews; the
// local forge: its pull request records).
type Auditor interface {
	// MergedPullRequest returns the merged pull request into base whose
	// merge commit is commit, or, when commit is a branchml write-back
	// (author AuthorEmail), the one its first-parent ancestors of
	// write-backs lead to; nil and no error when the commit did not arrive
	// through a pull request.
	MergedPullRequest(ctx context.Context, base, commit string) (*PullRequest, error)
}

// DirLister is a forge that can list a directory of a branch.
type DirLister interface {
	// ListDir returns the names of the files directly in dir at ref,
	// sorted; an empty list when dir does not exist.
	ListDir(ctx context.Context, ref, dir string) ([]string, error)
}

// ApprovalError is a commit refused because it did not arrive through an
// approved pull request (a stage with requireApproval: true).
type ApprovalError struct {
	Branch, Commit string
	// PR is the pull request it arrived through, when any.
	PR     *PullRequest
	Reason string
}

func (e *ApprovalError) Error() string {
	c := e.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	return fmt.Sprintf("commit %s on %s %s", c, e.Branch, e.Reason)
}

// RequireApproval returns the approved pull request commit arrived through
// on branch, or an *ApprovalError: no pull request, or one without an
// approving review. A forge that cannot tell (no Auditor) is an error.
func RequireApproval(ctx context.Context, f Forge, branch, commit string) (*PullRequest, error) {
	a, ok := f.(Auditor)
	if !ok {
		return nil, fmt.Errorf("this forge cannot tell through which pull request a commit arrived: requireApproval needs the local forge or GitHub")
	}
	pr, err := a.MergedPullRequest(ctx, branch, commit)
	if err != nil {
		return nil, err
	}
	if pr == nil {
		return nil, &ApprovalError{Branch: branch, Commit: commit, Reason: "did not arrive through a merged pull request"}
	}
	if len(pr.Approvals) == 0 {
		return pr, &ApprovalError{Branch: branch, Commit: commit, PR: pr, Reason: fmt.Sprintf("arrived through pull request #%d, which no reviewer approved", pr.Number)}
	}
	return pr, nil
}

// Status is a commit status; State is one of "pending", "success",
// "failure", "error" (GitHub's commit status states).
type Status struct {
	State       string `json:"state"`
	Context     string `json:"context"`
	Description string `json:"description"`
	TargetURL   string `json:"target_url,omitempty"`
}

// Forge is one ML repository on a forge.
type Forge interface {
	// ReadFile returns the content of path at ref (a branch name or a commit
	// SHA); ErrNotFound when the ref or the file does not exist.
	ReadFile(ctx context.Context, ref, path string) ([]byte, error)
	// WriteBack commits wb.Files onto wb.Branch on top of its current tip and
	// returns the new commit SHA. When the tip moved meanwhile (someone
	// merged), the change is re-applied on the new tip and retried, bounded;
	// a concurrent commit by someone else is never lost. A WriteBack that
	// changes nothing returns the current tip and creates no commit.
	WriteBack(ctx context.Context, wb WriteBack) (string, error)
	// EnsurePullRequest opens a pull request from pr.Head into pr.Base, or
	// updates the title and body of the open one with the same head and base.
	// When pr.Head has no commit pr.Base lacks, a forge that refuses such a
	// pull request (GitHub) opens none and returns pr with Number 0 and
	// State "merged".
	EnsurePullRequest(ctx context.Context, pr PullRequest) (*PullRequest, error)
	// SetStatus sets a commit status on commit.
	SetStatus(ctx context.Context, commit string, st Status) error
	// Comment adds a comment to pull request number.
	Comment(ctx context.Context, number int, body string) error
}

// ConflictError is a write-back (or merge) whose branch moved on every
// attempt: someone kept pushing meanwhile. It is temporary; match it with
// errors.As whichever forge returned it.
type ConflictError struct {
	// Repo names the repository (a remote path or URL, or "owner/repo").
	Repo string
	// Branch is the branch that kept moving; Attempts how often it was tried.
	Branch   string
	Attempts int
	// Err is the last rejection.
	Err error
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("push to branch %s of %s: the branch moved on each of %d attempts; run the stage again (last: %v)", e.Branch, e.Repo, e.Attempts, e.Err)
}

func (e *ConflictError) Unwrap() error { return e.Err }

// Temporary reports true: a later attempt may succeed.
func (e *ConflictError) Temporary() bool { return true }
