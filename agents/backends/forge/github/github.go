package github

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	gh "github.com/google/go-github/v62/github"
	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/retry"
	"github.com/branchml/branchml/agents/internal/secrets"
)

// TokenEnv is the variable holding the token (or TokenEnv+"_FILE" a file with it).
const TokenEnv = "GITHUB_TOKEN"

// Defaults of the options.
var (
	// DefaultBaseURL is github.com's REST API.
	DefaultBaseURL = "https://api.github.com/"
	// DefaultAttempts bounds the tries of one write-back and of one HTTP call.
	DefaultAttempts = 5
	// DefaultBackoff is the first wait between retries (doubling, jittered).
	DefaultBackoff = 200 * time.Millisecond
	// DefaultMaxWait is the longest single wait for a rate limit to reset;
	// a longer reset fails the call with a rate-limit *Error.
	DefaultMaxWait = 2 * time.Minute
)

// Forge is a forge.Forge on one GitHub repository.
type Forge struct {
	owner, repo string
	client      *gh.Client

	baseURL  string
	getenv   func(string) string
	hc       *http.Client
	attempts int
	backoff  time.Duration
	maxWait  time.Duration
	log      logrus.FieldLogger
}

var _ forge.Forge = (*Forge)(nil)

// Option configures a Forge.
type Option func(*Forge)

// WithBaseURL sets the REST API root: "https://api.github.com/" (default) or
// a GitHub Enterprise one such as "https://ghe.example.com/api/v3/".
func WithBaseURL(u string) Option { return func(f *Forge) { f.baseURL = u } }

// WithHTTPClient sets the client whose transport carries the calls.
func WithHTTPClient(c *http.Client) Option { return func(f *Forge) { f.hc = c } }

// WithGetenv sets the environment lookup the token is read with (tests).
func WithGetenv(getenv func(string) string) Option { return func(f *Forge) { f.getenv = getenv } }

// WithAttempts bounds the tries of one write-back and of one HTTP call (>= 1).
func WithAttempts(n int) Option { return func(f *Forge) { f.attempts = n } }

// WithBackoff sets the first wait between retries.
func WithBackoff(d time.Duration) Option { return func(f *Forge) { f.backoff = d } }

// WithMaxWait sets the longest single wait for a rate limit.
func WithMaxWait(d time.Duration) Option { return func(f *Forge) { f.maxWait = d } }

// WithLogger sets the logger of requests (debug) and retries (info).
func WithLogger(l logrus.FieldLogger) Option { return func(f *Forge) { f.log = l } }

// New returns the forge of owner/repo. The token is read from GITHUB_TOKEN or
// GITHUB_TOKEN_FILE and registered for masking; its absence is an error
// wrapping secrets.ErrNotSet.
func New(owner, repo string, opts ...Option) (*Forge, error) {
	if owner == "" || repo == "" || strings.Contains(owner, "/") || strings.Contains(repo, "/") {
		return nil, fmt.Errorf("GitHub repository %q/%q: set backends.forge.owner and backends.forge.repo (e.g. acme and djia30)", owner, repo)
	}
	f := &Forge{owner: owner, repo: repo, baseURL: DefaultBaseURL, getenv: os.Getenv, hc: &http.Client{},
		attempts: DefaultAttempts, backoff: DefaultBackoff, maxWait: DefaultMaxWait}
	for _, o := range opts {
		o(f)
	}
	if f.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		f.log = l
	}
	if f.attempts < 1 {
		return nil, fmt.Errorf("attempts must be at least 1, got %d", f.attempts)
	}
	token, err := secrets.GetFrom(f.getenv, TokenEnv)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, fmt.Errorf("GitHub forge %s/%s: %w: set %s, or %s_FILE to a file holding it", owner, repo, secrets.ErrNotSet, TokenEnv, TokenEnv)
	}
	base, err := url.Parse(f.baseURL)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("GitHub API URL %q: give an absolute URL such as https://ghe.example.com/api/v3/", f.baseURL)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	hc := *f.hc
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc.Transport = &retryTransport{base: rt, attempts: f.attempts, backoff: f.backoff, maxWait: f.maxWait, log: f.log}
	f.client = gh.NewClient(&hc).WithAuthToken(token)
	f.client.BaseURL = base
	f.client.UserAgent = "branchml"
	return f, nil
}

// Repo returns "owner/repo".
func (f *Forge) Repo() string { return f.owner + "/" + f.repo }

// ReadFile reads path at ref through the contents API; a missing ref or
// file wraps forge.ErrNotFound, a directory is an error.
func (f *Forge) ReadFile(ctx context.Context, ref, path string) ([]byte, error) {
	path = strings.TrimPrefix(path, "/")
	file, dir, resp, err := f.client.Repositories.GetContents(ctx, f.owner, f.repo, path, &gh.RepositoryContentGetOptions{Ref: ref})
	if err != nil {
		return nil, fmt.Errorf("read %s at %s in %s: %w", path, ref, f.Repo(), wrap("get contents", resp, err))
	}
	if file == nil || dir != nil {
		return nil, fmt.Errorf("read %s at %s in %s: is a directory, not a file", path, ref, f.Repo())
	}
	if file.GetSize() > config.MaxSpecBytes {
		return nil, &config.TooLargeError{Name: ref + ":" + path + " in " + f.Repo(), Limit: config.MaxSpecBytes}
	}
	if file.GetEncoding() == "none" || (file.Content == nil && file.GetSize() > 0) {
		// Files over 1 MB come without content: read the blob.
		raw, resp, err := f.client.Git.GetBlobRaw(ctx, f.owner, f.repo, file.GetSHA())
		if err != nil {
			return nil, fmt.Errorf("read %s at %s in %s: %w", path, ref, f.Repo(), wrap("get blob", resp, err))
		}
		return raw, nil
	}
	content, err := file.GetContent()
	if err != nil {
		return nil, fmt.Errorf("read %s at %s in %s: %w", path, ref, f.Repo(), err)
	}
	return []byte(content), nil
}

// errMoved marks an attempt whose ref update lost the race.
var errMoved = errors.New("branch moved")

// WriteBack commits wb.Files onto wb.Branch through the git data API; see
// forge.Forge. Blobs are created once; tree, commit and the fast-forward
// ref update are redone on the new tip when the update is refused (409/422),
// at most the configured attempts, then a *forge.ConflictError is returned.
// File modes are written as 100644.
func (f *Forge) WriteBack(ctx context.Context, wb forge.WriteBack) (string, error) {
	if wb.Branch == "" || strings.TrimSpace(wb.Message) == "" {
		return "", fmt.Errorf("write back to %s/%q: branch and commit message are required", f.Repo(), wb.Branch)
	}
	paths := make([]string, 0, len(wb.Files))
	for p := range wb.Files {
		if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
			return "", fmt.Errorf("write back to %s: bad repository path %q: use a relative slash-separated path", wb.Branch, p)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	blobs := map[string]string{}
	var sha string
	p := retry.Policy{Attempts: f.attempts, Initial: f.backoff, Max: 5 * time.Second, Jitter: 0.5,
		Retriable: func(err error) bool { return errors.Is(err, errMoved) }}
	err := retry.Do(ctx, p, func(ctx context.Context, attempt int) error {
		var err error
		if sha, err = f.writeOnce(ctx, wb, paths, blobs); errors.Is(err, errMoved) {
			f.log.WithField("branch", wb.Branch).WithField("attempt", attempt).Info("branch moved during write-back; re-applying on the new tip")
		}
		return err
	})
	var re *retry.Error
	switch {
	case !errors.As(err, &re):
		return sha, nil
	case re.Context != nil:
		return "", fmt.Errorf("write back to %s: %w (after %v)", wb.Branch, re.Context, re.Err)
	case errors.Is(re.Err, errMoved):
		return "", &forge.ConflictError{Repo: f.Repo(), Branch: wb.Branch, Attempts: f.attempts, Err: re.Err}
	}
	return "", re.Err
}

func (f *Forge) writeOnce(ctx context.Context, wb forge.WriteBack, paths []string, blobs map[string]string) (string, error) {
	tip, err := f.branchTip(ctx, wb.Branch)
	if err != nil {
		return "", err
	}
	parent := tip
	if tip == "" {
		if wb.From == "" {
			return "", fmt.Errorf("write back: branch %s does not exist in %s (set From to create it): %w", wb.Branch, f.Repo(), forge.ErrNotFound)
		}
		if parent, err = f.branchTip(ctx, wb.From); err != nil {
			return "", err
		}
		if parent == "" {
			parent = wb.From // a commit SHA, checked by GetCommit
		}
	}
	commit, resp, err := f.client.Git.GetCommit(ctx, f.owner, f.repo, parent)
	if err != nil {
		if status(wrap("", resp, err)) == http.StatusNotFound || status(wrap("", resp, err)) == http.StatusUnprocessableEntity {
			return "", fmt.Errorf("write back: ref %s to create branch %s from does not exist in %s: %w", wb.From, wb.Branch, f.Repo(), forge.ErrNotFound)
		}
		return "", fmt.Errorf("write back to %s: get commit %s: %w", wb.Branch, parent, wrap("get commit", resp, err))
	}
	var entries []*gh.TreeEntry
	for _, p := range paths {
		e := &gh.TreeEntry{Path: gh.String(p), Mode: gh.String("100644"), Type: gh.String("blob")}
		if c := wb.Files[p]; c != nil {
			if blobs[p] == "" {
				b, resp, err := f.client.Git.CreateBlob(ctx, f.owner, f.repo, &gh.Blob{Content: gh.String(encode(c)), Encoding: gh.String("base64")})
				if err != nil {
					return "", fmt.Errorf("write back to %s: create blob for %s: %w", wb.Branch, p, wrap("create blob", resp, err))
				}
				blobs[p] = b.GetSHA()
			}
			e.SHA = gh.String(blobs[p])
		}
		entries = append(entries, e)
	}
	baseTree := commit.GetTree().GetSHA()
	treeSHA := baseTree
	if len(entries) > 0 {
		tree, resp, err := f.client.Git.CreateTree(ctx, f.owner, f.repo, baseTree, entries)
		if err != nil {
			return "", fmt.Errorf("write back to %s: create tree: %w", wb.Branch, wrap("create tree", resp, err))
		}
		treeSHA = tree.GetSHA()
	}
	newSHA := parent
	if treeSHA != baseTree {
		now := gh.Timestamp{Time: time.Now().UTC().Truncate(time.Second)}
		author := &gh.CommitAuthor{Name: gh.String(forge.AuthorName), Email: gh.String(forge.AuthorEmail), Date: &now}
		c, resp, err := f.client.Git.CreateCommit(ctx, f.owner, f.repo, &gh.Commit{
			Message: gh.String(wb.Message), Tree: &gh.Tree{SHA: gh.String(treeSHA)},
			Parents: []*gh.Commit{{SHA: gh.String(parent)}}, Author: author, Committer: author,
		}, nil)
		if err != nil {
			return "", fmt.Errorf("write back to %s: create commit: %w", wb.Branch, wrap("create commit", resp, err))
		}
		newSHA = c.GetSHA()
	} else if tip != "" {
		return tip, nil
	}
	ref := &gh.Reference{Ref: gh.String("refs/heads/" + wb.Branch), Object: &gh.GitObject{SHA: gh.String(newSHA)}}
	if tip == "" {
		_, resp, err = f.client.Git.CreateRef(ctx, f.owner, f.repo, ref)
	} else {
		_, resp, err = f.client.Git.UpdateRef(ctx, f.owner, f.repo, ref, false)
	}
	if err != nil {
		e := wrap("update ref", resp, err)
		if s := status(e); s == http.StatusConflict || s == http.StatusUnprocessableEntity {
			return "", fmt.Errorf("update branch %s to %s: %v: %w", wb.Branch, newSHA, e, errMoved)
		}
		return "", fmt.Errorf("write back to %s: %w", wb.Branch, e)
	}
	return newSHA, nil
}

// branchTip returns the commit branch points at ("" = no such branch).
func (f *Forge) branchTip(ctx context.Context, branch string) (string, error) {
	ref, resp, err := f.client.Git.GetRef(ctx, f.owner, f.repo, "heads/"+branch)
	if err != nil {
		e := wrap("get ref", resp, err)
		if status(e) == http.StatusNotFound {
			return "", nil
		}
		return "", fmt.Errorf("get branch %s of %s: %w", branch, f.Repo(), e)
	}
	if ref.GetRef() != "refs/heads/"+branch {
		return "", nil // GitHub may answer a prefix match
	}
	return ref.GetObject().GetSHA(), nil
}

// EnsurePullRequest opens a pull request from pr.Head into pr.Base or
// updates title and body of the open one (same number). A create refused
// with "A pull request already exists" (a concurrent opener) is resolved by
// looking it up and updating it. A create refused with "No commits between
// <base> and <head>" (422: head is merged already) opens nothing and returns
// the request with Number 0 and State "merged".
func (f *Forge) EnsurePullRequest(ctx context.Context, pr forge.PullRequest) (*forge.PullRequest, error) {
	if pr.Head == "" || pr.Base == "" || strings.TrimSpace(pr.Title) == "" {
		return nil, fmt.Errorf("pull request %q into %q: head, base and title are required", pr.Head, pr.Base)
	}
	for try := 0; try < 2; try++ {
		existing, err := f.findOpen(ctx, pr.Head, pr.Base)
		if err != nil {
			return nil, err
		}
		if existing != nil {
			if existing.GetTitle() == pr.Title && existing.GetBody() == pr.Body {
				return convert(existing), nil
			}
			upd, resp, err := f.client.PullRequests.Edit(ctx, f.owner, f.repo, existing.GetNumber(), &gh.PullRequest{Title: gh.String(pr.Title), Body: gh.String(pr.Body)})
			if err != nil {
				return nil, fmt.Errorf("update pull request #%d of %s: %w", existing.GetNumber(), f.Repo(), wrap("edit pull request", resp, err))
			}
			return convert(upd), nil
		}
		created, resp, err := f.client.PullRequests.Create(ctx, f.owner, f.repo, &gh.NewPullRequest{Title: gh.String(pr.Title), Head: gh.String(pr.Head), Base: gh.String(pr.Base), Body: gh.String(pr.Body)})
		if err == nil {
			return convert(created), nil
		}
		e := wrap("create pull request", resp, err)
		if status(e) == http.StatusUnprocessableEntity && strings.Contains(e.Error(), "pull request already exists") {
			continue
		}
		if status(e) == http.StatusUnprocessableEntity && strings.Contains(e.Error(), "No commits between") {
			// Head has nothing base lacks (merged already): nothing to propose.
			f.log.Infof("no pull request %s into %s in %s: GitHub finds no commits between them (merged already)", pr.Head, pr.Base, f.Repo())
			return &forge.PullRequest{Head: pr.Head, Base: pr.Base, Title: pr.Title, Body: pr.Body, State: "merged"}, nil
		}
		return nil, fmt.Errorf("open pull request %s into %s in %s: %w", pr.Head, pr.Base, f.Repo(), e)
	}
	return nil, fmt.Errorf("open pull request %s into %s in %s: GitHub says one exists but does not list it; retry", pr.Head, pr.Base, f.Repo())
}

func (f *Forge) findOpen(ctx context.Context, head, base string) (*gh.PullRequest, error) {
	filter := head
	if !strings.Contains(head, ":") {
		filter = f.owner + ":" + head
	}
	list, resp, err := f.client.PullRequests.List(ctx, f.owner, f.repo, &gh.PullRequestListOptions{State: "open", Head: filter, Base: base})
	if err != nil {
		return nil, fmt.Errorf("list pull requests of %s: %w", f.Repo(), wrap("list pull requests", resp, err))
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list[0], nil
}

func convert(p *gh.PullRequest) *forge.PullRequest {
	state := p.GetState()
	if p.GetMerged() || p.MergedAt != nil {
		state = "merged"
	}
	out := &forge.PullRequest{Number: p.GetNumber(), Head: p.GetHead().GetRef(), Base: p.GetBase().GetRef(),
		Title: p.GetTitle(), Body: p.GetBody(), URL: p.GetHTMLURL(), State: state, Author: p.GetUser().GetLogin()}
	if state == "merged" {
		out.MergeCommit, out.MergedBy = p.GetMergeCommitSHA(), p.GetMergedBy().GetLogin()
		if p.MergedAt != nil {
			t := p.MergedAt.UTC()
			out.MergedAt = &t
		}
	}
	return out
}

var (
	_ forge.Auditor   = (*Forge)(nil)
	_ forge.DirLister = (*Forge)(nil)
)

// MergedPullRequest returns the merged pull request into base whose merge
// commit is commit (GET /repos/{owner}/{repo}/commits/{sha}/pulls), with
// who merged it (GET …/pulls/{n}) and its approvals (GET …/pulls/{n}/reviews:
// each reviewer's latest review, when it approves). When commit is a
// branchml write-back (author forge.AuthorEmail, GET …/git/commits/{sha}),
// its first parent is looked at instead, up to 20 deep; nil when the
// commit did not arrive through a pull request.
func (f *Forge) MergedPullRequest(ctx context.Context, base, commit string) (*forge.PullRequest, error) {
	sha := commit
	for depth := 0; depth < 20 && sha != ""; depth++ {
		prs, resp, err := f.client.PullRequests.ListPullRequestsWithCommit(ctx, f.owner, f.repo, sha, &gh.ListOptions{PerPage: 100})
		if err != nil {
			return nil, fmt.Errorf("pull requests of commit %s in %s: %w", sha, f.Repo(), wrap("list pull requests of a commit", resp, err))
		}
		for _, p := range prs {
			if p.GetMergeCommitSHA() == sha && p.MergedAt != nil && p.GetBase().GetRef() == base {
				return f.pullWithReviews(ctx, p.GetNumber())
			}
		}
		c, resp, err := f.client.Git.GetCommit(ctx, f.owner, f.repo, sha)
		if err != nil {
			return nil, fmt.Errorf("commit %s in %s: %w", sha, f.Repo(), wrap("get commit", resp, err))
		}
		if c.GetAuthor().GetEmail() != forge.AuthorEmail || len(c.Parents) == 0 {
			return nil, nil
		}
		sha = c.Parents[0].GetSHA()
	}
	return nil, nil
}

func (f *Forge) pullWithReviews(ctx context.Context, number int) (*forge.PullRequest, error) {
	p, resp, err := f.client.PullRequests.Get(ctx, f.owner, f.repo, number)
	if err != nil {
		return nil, fmt.Errorf("pull request #%d of %s: %w", number, f.Repo(), wrap("get pull request", resp, err))
	}
	out := convert(p)
	var reviews []forge.Review
	opt := &gh.ListOptions{PerPage: 100}
	for {
		rs, resp, err := f.client.PullRequests.ListReviews(ctx, f.owner, f.repo, number, opt)
		if err != nil {
			return nil, fmt.Errorf("reviews of pull request #%d of %s: %w", number, f.Repo(), wrap("list reviews", resp, err))
		}
		for _, r := range rs {
			reviews = append(reviews, forge.Review{User: r.GetUser().GetLogin(), State: r.GetState(), Commit: r.GetCommitID(), Body: r.GetBody(), At: r.GetSubmittedAt().UTC()})
		}
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	out.Approvals = forge.LatestApprovals(reviews)
	return out, nil
}

// ListDir lists the files directly in dir at ref through the contents API.
func (f *Forge) ListDir(ctx context.Context, ref, dir string) ([]string, error) {
	dir = strings.Trim(dir, "/")
	file, entries, resp, err := f.client.Repositories.GetContents(ctx, f.owner, f.repo, dir, &gh.RepositoryContentGetOptions{Ref: ref})
	if err != nil {
		e := wrap("get contents", resp, err)
		if status(e) == http.StatusNotFound {
			return []string{}, nil
		}
		return nil, fmt.Errorf("list %s at %s in %s: %w", dir, ref, f.Repo(), e)
	}
	if file != nil {
		return nil, fmt.Errorf("list %s at %s in %s: is a file, not a directory", dir, ref, f.Repo())
	}
	names := []string{}
	for _, e := range entries {
		if e.GetType() == "file" {
			names = append(names, e.GetName())
		}
	}
	sort.Strings(names)
	return names, nil
}

// SetStatus creates a commit status on commit (GitHub keeps the latest per context).
func (f *Forge) SetStatus(ctx context.Context, commit string, st forge.Status) error {
	rs := &gh.RepoStatus{State: gh.String(st.State), Context: gh.String(st.Context), Description: gh.String(st.Description)}
	if st.TargetURL != "" {
		rs.TargetURL = gh.String(st.TargetURL)
	}
	if _, resp, err := f.client.Repositories.CreateStatus(ctx, f.owner, f.repo, commit, rs); err != nil {
		return fmt.Errorf("set status %s=%s on %s in %s: %w", st.Context, st.State, commit, f.Repo(), wrap("create status", resp, err))
	}
	return nil
}

// Comment adds an issue comment to pull request number.
func (f *Forge) Comment(ctx context.Context, number int, body string) error {
	if _, resp, err := f.client.Issues.CreateComment(ctx, f.owner, f.repo, number, &gh.IssueComment{Body: gh.String(body)}); err != nil {
		return fmt.Errorf("comment on pull request #%d of %s: %w", number, f.Repo(), wrap("create comment", resp, err))
	}
	return nil
}
