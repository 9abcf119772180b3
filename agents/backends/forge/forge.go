package forge

import (
	"context"
	"errors"
	"fmt"
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
