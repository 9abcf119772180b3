package gitremote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/internal/filelock"
	"github.com/branchml/branchml/agents/internal/retry"
)

// PullRecord is a pull request as kept in <meta>/pulls/<number>.json:
// forge.PullRequest (with, once merged, the merge commit, who merged and
// when) plus times. Its reviews are kept in <number>.reviews.json; the
// Approvals of the records this package returns are computed from them.
type PullRecord struct {
	forge.PullRequest
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// ClosedBy is who closed it without merging.
	ClosedBy string `json:"closedBy,omitempty"`
}

// CommentRecord is one comment in <meta>/pulls/<number>.comments.json.
type CommentRecord struct {
	// ID counts from 1 per pull request.
	ID        int       `json:"id"`
	Author    string    `json:"author"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"createdAt"`
}

// MergeConflictError is a pull request whose head does not merge cleanly
// into its base.
type MergeConflictError struct {
	Number     int
	Head, Base string
	// Files are the conflicting paths.
	Files []string
}

func (e *MergeConflictError) Error() string {
	return fmt.Sprintf("merge pull request #%d (%s into %s): conflicts in %s; merge %s into %s by hand, resolve them and push",
		e.Number, e.Head, e.Base, strings.Join(e.Files, ", "), e.Base, e.Head)
}

// now is the clock of the records (UTC, second precision).
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

func (f *Forge) pullsDir() string      { return filepath.Join(f.meta, "pulls") }
func (f *Forge) pullPath(n int) string { return filepath.Join(f.pullsDir(), strconv.Itoa(n)+".json") }
func (f *Forge) commentsPath(n int) string {
	return filepath.Join(f.pullsDir(), strconv.Itoa(n)+".comments.json")
}
func (f *Forge) lock(ctx context.Context) (func(), error) {
	return filelock.Lock(ctx, filepath.Join(f.meta, ".lock"))
}

// lockedPull takes the forge's lock and reads the record of pull request
// number under it; the caller releases the lock with unlock. On an error
// the lock is not held.
func (f *Forge) lockedPull(ctx context.Context, number int) (rec *PullRecord, unlock func(), err error) {
	unlock, err = f.lock(ctx)
	if err != nil {
		return nil, nil, err
	}
	rec, err = f.pull(number)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return rec, unlock, nil
}

// pullURL is where a record can be read.
func (f *Forge) pullURL(n int) string { return "file://" + filepath.ToSlash(f.pullPath(n)) }

// readJSON reads path into v; a missing file wraps fs.ErrNotExist.
func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// pulls reads every pull request record, by number.
func (f *Forge) pulls() ([]PullRecord, error) {
	entries, err := os.ReadDir(f.pullsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []PullRecord
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".json"))
		if err != nil || !strings.HasSuffix(e.Name(), ".json") || n <= 0 {
			continue // comments, reviews, temporary files
		}
		var pr PullRecord
		if err := readJSON(f.pullPath(n), &pr); err != nil {
			return nil, err
		}
		if err := f.withApprovals(&pr); err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

func (f *Forge) pull(n int) (*PullRecord, error) {
	var pr PullRecord
	if err := readJSON(f.pullPath(n), &pr); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pull request #%d in %s: %w", n, f.meta, forge.ErrNotFound)
		}
		return nil, err
	}
	if err := f.withApprovals(&pr); err != nil {
		return nil, err
	}
	return &pr, nil
}

// EnsurePullRequest opens a pull request record from pr.Head into pr.Base,
// or updates title and body of the open one with the same head and base
// (same number). Both branches must exist on the remote. Numbers are
// allocated under a lock file, so concurrent processes never collide.
//
// The author is pr.Author, else forge.AuthorName (the agents open their
// pull requests as branchml).
func (f *Forge) EnsurePullRequest(ctx context.Context, pr forge.PullRequest) (*forge.PullRequest, error) {
	if err := checkRef("head branch", pr.Head); err != nil {
		return nil, err
	}
	if err := checkRef("base branch", pr.Base); err != nil {
		return nil, err
	}
	if pr.Head == pr.Base {
		return nil, fmt.Errorf("pull request from %s into itself: head and base must differ", pr.Head)
	}
	if strings.TrimSpace(pr.Title) == "" {
		return nil, fmt.Errorf("pull request from %s into %s: empty title", pr.Head, pr.Base)
	}
	for _, b := range []string{pr.Head, pr.Base} {
		tip, err := f.remoteTip(ctx, b)
		if err != nil {
			return nil, err
		}
		if tip == "" {
			return nil, fmt.Errorf("pull request from %s into %s: branch %s does not exist in %s: %w", pr.Head, pr.Base, b, f.remote, forge.ErrNotFound)
		}
	}
	unlock, err := f.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := f.pulls()
	if err != nil {
		return nil, err
	}
	t := now()
	max := 0
	for _, rec := range all {
		max = rec.Number
		if rec.State == "open" && rec.Head == pr.Head && rec.Base == pr.Base {
			// As on GitHub, a pull request whose own merge commit is on its
			// base is merged, although its record says open (a MergeAs
			// interrupted between the push and the record): it is recorded
			// merged and a new one is opened, not the old one reused.
			merged, err := f.reconcileMerged(ctx, &rec)
			if err != nil {
				return nil, err
			}
			if merged {
				continue
			}
			if rec.Title != pr.Title || rec.Body != pr.Body {
				rec.Title, rec.Body, rec.UpdatedAt = pr.Title, pr.Body, t
				if err := f.save(&rec); err != nil {
					return nil, fmt.Errorf("update pull request #%d: %w", rec.Number, err)
				}
			}
			out := rec.PullRequest
			return &out, nil
		}
	}
	author := pr.Author
	if author == "" {
		author = forge.AuthorName
	}
	rec := PullRecord{
		PullRequest: forge.PullRequest{Number: max + 1, Head: pr.Head, Base: pr.Base, Title: pr.Title, Body: pr.Body, State: "open", Author: author},
		CreatedAt:   t, UpdatedAt: t,
	}
	rec.URL = f.pullURL(rec.Number)
	if err := f.save(&rec); err != nil {
		return nil, fmt.Errorf("create pull request #%d: %w", rec.Number, err)
	}
	out := rec.PullRequest
	return &out, nil
}

// reconcileMerged looks for rec's own merge commit (subject "Merge pull
// request #<n> from <head>", as MergeAs writes it, committed no earlier than
// rec was created) on rec's base; when there is one, rec is saved as merged
// by that commit's author at its commit time and reconcileMerged reports
// true. The caller holds the lock.
func (f *Forge) reconcileMerged(ctx context.Context, rec *PullRecord) (bool, error) {
	w, err := f.newWorkArea(ctx)
	if err != nil {
		return false, err
	}
	defer w.close()
	if err := w.fetch(ctx); err != nil {
		return false, err
	}
	subject := fmt.Sprintf("Merge pull request #%d from %s", rec.Number, rec.Head)
	out, err := w.git(ctx, nil, "log", "--format=%H%x00%an%x00%ct%x00%s", "--fixed-strings", "--grep="+subject, "refs/remotes/origin/"+rec.Base)
	if err != nil {
		return false, fmt.Errorf("pull request #%d: look for its merge commit on %s: %w", rec.Number, rec.Base, err)
	}
	for _, line := range strings.Split(out, "\n") {
		f4 := strings.SplitN(line, "\x00", 4)
		if len(f4) != 4 || f4[3] != subject {
			continue
		}
		secs, err := strconv.ParseInt(f4[2], 10, 64)
		if err != nil {
			continue
		}
		at := time.Unix(secs, 0).UTC()
		if at.Before(rec.CreatedAt) {
			// An older pull request of the same number (the records were
			// made anew over a remote that keeps its history): not this one.
			continue
		}
		rec.State, rec.MergeCommit, rec.MergedAt, rec.MergedBy, rec.UpdatedAt = "merged", f4[0], &at, f4[1], now()
		if err := f.save(rec); err != nil {
			return false, fmt.Errorf("record pull request #%d as merged by %s: %w", rec.Number, f4[0], err)
		}
		return true, nil
	}
	return false, nil
}

// ListPullRequests returns the pull request records in state "open",
// "closed", "merged", or every one for "" or "all", by number.
func (f *Forge) ListPullRequests(ctx context.Context, state string) ([]PullRecord, error) {
	switch state {
	case "", "all", "open", "closed", "merged":
	default:
		return nil, fmt.Errorf("pull request state %q: use open, closed, merged or all", state)
	}
	all, err := f.pulls()
	if err != nil {
		return nil, err
	}
	var out []PullRecord
	for _, pr := range all {
		if state == "" || state == "all" || pr.State == state {
			out = append(out, pr)
		}
	}
	return out, nil
}

// Comment appends body to the comments of pull request number; it wraps
// forge.ErrNotFound when there is no such pull request.
func (f *Forge) Comment(ctx context.Context, number int, body string) error {
	if strings.TrimSpace(body) == "" {
		return fmt.Errorf("comment on pull request #%d: empty body", number)
	}
	unlock, err := f.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := f.pull(number); err != nil {
		return err
	}
	cs, err := f.Comments(ctx, number)
	if err != nil {
		return err
	}
	cs = append(cs, CommentRecord{ID: len(cs) + 1, Author: forge.AuthorName, Body: body, CreatedAt: now()})
	if err := atomicfile.WriteJSON(f.commentsPath(number), cs); err != nil {
		return fmt.Errorf("comment on pull request #%d: %w", number, err)
	}
	return nil
}

// Comments returns the comments of pull request number, oldest first.
func (f *Forge) Comments(ctx context.Context, number int) ([]CommentRecord, error) {
	var cs []CommentRecord
	if err := readJSON(f.commentsPath(number), &cs); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return cs, nil
}

// MergePullRequest merges the open pull request number as the local user
// (User) would in a web UI; see MergeAs.
func (f *Forge) MergePullRequest(ctx context.Context, number int) (string, error) {
	return f.MergeAs(ctx, number, "")
}

// MergeAs merges the open pull request number as user ("" = User()) would
// in a web UI: a merge commit of head into base (parents: base tip, head
// tip) authored by user (<user>@localhost) with message "Merge pull
// request #<n> from <head>\n\n<title>", pushed to base (re-done when base
// moves, bounded); the record becomes "merged", with who merged and when.
// It returns the merge commit: the recorded one for a merged pull request,
// the base tip when head is already contained in base. Conflicts give a
// *MergeConflictError naming the files; a closed pull request is an error.
func (f *Forge) MergeAs(ctx context.Context, number int, user string) (string, error) {
	if user == "" {
		user = User(os.Getenv)
	}
	rec, unlock, err := f.lockedPull(ctx, number)
	if err != nil {
		return "", err
	}
	defer unlock()
	switch rec.State {
	case "merged":
		return rec.MergeCommit, nil
	case "open":
		// Merged already by an earlier MergeAs that was interrupted before
		// its record: that merge, not a second one.
		if merged, err := f.reconcileMerged(ctx, rec); err != nil {
			return "", err
		} else if merged {
			return rec.MergeCommit, nil
		}
	default:
		return "", fmt.Errorf("merge pull request #%d: it is %s; open a new one", number, rec.State)
	}
	w, err := f.newWorkArea(ctx)
	if err != nil {
		return "", err
	}
	defer w.close()
	var commit string
	err = f.retryMoved(ctx, rec.Base, func(ctx context.Context, _ int) error {
		var err error
		commit, err = f.mergeOnce(ctx, w, rec, user)
		return err
	})
	if re, ok := err.(*retry.Error); ok {
		return "", re.Context
	}
	if err != nil {
		return "", err
	}
	t := now()
	rec.State, rec.MergeCommit, rec.MergedAt, rec.MergedBy, rec.UpdatedAt = "merged", commit, &t, user, t
	if err := f.save(rec); err != nil {
		return "", fmt.Errorf("merge pull request #%d: merged as %s but the record was not updated: %w", number, commit, err)
	}
	return commit, nil
}

func (f *Forge) mergeOnce(ctx context.Context, w *workArea, rec *PullRecord, user string) (string, error) {
	if err := w.fetch(ctx); err != nil {
		return "", err
	}
	tips := map[string]string{}
	for _, b := range []string{rec.Base, rec.Head} {
		tip, err := w.resolve(ctx, "refs/remotes/origin/"+b)
		if err != nil {
			return "", err
		}
		if tip == "" {
			return "", fmt.Errorf("merge pull request #%d: branch %s does not exist in %s: %w", rec.Number, b, f.remote, forge.ErrNotFound)
		}
		tips[b] = tip
	}
	base, head := tips[rec.Base], tips[rec.Head]
	if _, err := w.git(ctx, nil, "merge-base", "--is-ancestor", head, base); err == nil {
		return base, nil // nothing to merge
	} else if exitCode(err) != 1 {
		return "", err
	}
	out, err := w.git(ctx, nil, "merge-tree", "--write-tree", "--name-only", "--no-messages", base, head)
	if err != nil {
		if exitCode(err) == 1 {
			lines := strings.Split(out, "\n")
			return "", &MergeConflictError{Number: rec.Number, Head: rec.Head, Base: rec.Base, Files: lines[1:]}
		}
		return "", fmt.Errorf("merge pull request #%d (needs git >= 2.38): %w", rec.Number, err)
	}
	tree := strings.SplitN(out, "\n", 2)[0]
	msg := fmt.Sprintf("Merge pull request #%d from %s\n\n%s\n", rec.Number, rec.Head, rec.Title)
	commit, err := w.f.git.run(ctx, w.dir, []byte(msg), append([]string{"GIT_INDEX_FILE=" + w.index}, identity(user)...),
		"commit-tree", "--no-gpg-sign", tree, "-p", base, "-p", head, "-F", "-")
	if err != nil {
		return "", err
	}
	if err := f.push(ctx, w, commit, rec.Base, base); err != nil {
		return "", err
	}
	return commit, nil
}
