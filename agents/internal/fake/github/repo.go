package github

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Commit is a commit of the in-memory repository.
type Commit struct {
	SHA, Tree   string
	Parents     []string
	Message     string
	AuthorName  string
	AuthorEmail string
	Date        time.Time
}

// Pull is a pull request of the fake, as the API shows it.
type Pull struct {
	Number                  int
	Head, Base, Title, Body string
	// State is "open" or "closed" (a merged pull request is closed).
	State            string
	Created, Updated time.Time
	// User is the login that opened it (default "branchml-bot", the
	// token's user).
	User string
	// Merged, MergedBy, MergeCommitSHA and MergedAt are set by MergePull.
	Merged         bool
	MergedBy       string
	MergeCommitSHA string
	MergedAt       time.Time
	Reviews        []Review
}

// Review is one pull request review ("APPROVED", "CHANGES_REQUESTED",
// "COMMENTED", "DISMISSED"), on the head commit it was given on.
type Review struct {
	ID                int64
	User, State, Body string
	CommitID          string
	SubmittedAt       time.Time
}

// Status is one commit status as created through the API.
type Status struct {
	ID                                     int64
	State, Context, Description, TargetURL string
}

// Comment is one issue comment as created through the API.
type Comment struct {
	ID     int64
	Number int
	Body   string
}

// repo is an in-memory git database: content-addressed blobs, flat trees
// (path → blob SHA) and commits, plus branches. Blob SHAs are git's own
// ("blob <len>\0<content>"); tree and commit SHAs are SHA-1s of a stable
// serialization. Callers hold the server's lock.
type repo struct {
	blobs    map[string][]byte
	trees    map[string]map[string]string
	commits  map[string]*Commit
	branches map[string]string
	pulls    []*Pull
	statuses map[string][]Status
	comments []Comment
	nextID   int64
}

func newRepo() *repo {
	return &repo{
		blobs:    map[string][]byte{},
		trees:    map[string]map[string]string{},
		commits:  map[string]*Commit{},
		branches: map[string]string{},
		statuses: map[string][]Status{},
		nextID:   1000,
	}
}

func (r *repo) id() int64 { r.nextID++; return r.nextID }

func (r *repo) putBlob(content []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(content))
	h.Write(content)
	sha := hex.EncodeToString(h.Sum(nil))
	r.blobs[sha] = append([]byte(nil), content...)
	return sha
}

func (r *repo) putTree(entries map[string]string) string {
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := sha1.New()
	h.Write([]byte("tree\x00"))
	for _, p := range paths {
		fmt.Fprintf(h, "%s\x00%s\n", p, entries[p])
	}
	sha := hex.EncodeToString(h.Sum(nil))
	cp := make(map[string]string, len(entries))
	for k, v := range entries {
		cp[k] = v
	}
	r.trees[sha] = cp
	return sha
}

func (r *repo) putCommit(c Commit) string {
	h := sha1.New()
	fmt.Fprintf(h, "commit\x00%s\x00%s\x00%s\x00%s\x00%s\x00%d", c.Tree, strings.Join(c.Parents, ","), c.Message, c.AuthorName, c.AuthorEmail, c.Date.UnixNano())
	c.SHA = hex.EncodeToString(h.Sum(nil))
	r.commits[c.SHA] = &c
	return c.SHA
}

// resolve maps a branch name or commit SHA to a commit SHA ("" = none).
func (r *repo) resolve(ref string) string {
	if sha, ok := r.branches[ref]; ok {
		return sha
	}
	ref = strings.TrimPrefix(ref, "refs/heads/")
	if sha, ok := r.branches[ref]; ok {
		return sha
	}
	if _, ok := r.commits[ref]; ok {
		return ref
	}
	return ""
}

// isAncestor reports whether a is b or an ancestor of b.
func (r *repo) isAncestor(a, b string) bool {
	seen := map[string]bool{}
	stack := []string{b}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c == a {
			return true
		}
		if seen[c] {
			continue
		}
		seen[c] = true
		if cm := r.commits[c]; cm != nil {
			stack = append(stack, cm.Parents...)
		}
	}
	return false
}

// commitFiles commits files (nil = delete) onto branch, creating it (as a
// root commit) when missing.
func (r *repo) commitFiles(branch string, files map[string][]byte, message, name, email string) string {
	entries := map[string]string{}
	var parents []string
	if tip := r.branches[branch]; tip != "" {
		parents = []string{tip}
		for p, s := range r.trees[r.commits[tip].Tree] {
			entries[p] = s
		}
	}
	for p, c := range files {
		if c == nil {
			delete(entries, p)
		} else {
			entries[p] = r.putBlob(c)
		}
	}
	sha := r.putCommit(Commit{Tree: r.putTree(entries), Parents: parents, Message: message, AuthorName: name, AuthorEmail: email, Date: time.Now().UTC()})
	r.branches[branch] = sha
	return sha
}
