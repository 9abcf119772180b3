package github

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/branchml/branchml/agents/internal/fake/fakehttp"
)

// Request is one request the fake received.
type Request struct {
	Method string
	// Path is the unescaped URL path, e.g. "/repos/acme/ml/git/refs/heads/training".
	Path string
	// Query is the raw query string.
	Query string
	// Body is the request body as sent.
	Body string
	// Authorization is the Authorization header as sent.
	Authorization string
	// Status is the status code answered.
	Status int
}

// String is "METHOD /path" (with "?query" when there is one).
func (r Request) String() string {
	if r.Query != "" {
		return r.Method + " " + r.Path + "?" + r.Query
	}
	return r.Method + " " + r.Path
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	// Fake records the requests and injects faults (Inject, ClearFaults,
	// Requests, Calls, ResetRequests).
	*fakehttp.Fake[Request]
	Owner, Repo string
	token       string

	mu   sync.Mutex
	repo *repo
}

// Option configures a Server.
type Option func(*Server)

// WithToken makes the fake require "Authorization: Bearer <token>" (or
// "token <token>"); without it any request is accepted.
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithRepo sets the repository the fake serves (default acme/ml).
func WithRepo(owner, repo string) Option {
	return func(s *Server) { s.Owner, s.Repo = owner, repo }
}

// New starts a fake serving one empty repository at URL+"/" (and, as GitHub
// Enterprise does, at URL+"/api/v3/"). Close it when done.
func New(opts ...Option) *Server {
	s := &Server{Fake: fakehttp.NewFake(toRequest), Owner: "acme", Repo: "ml", repo: newRepo()}
	for _, o := range opts {
		o(s)
	}
	mux := s.routes()
	root := http.NewServeMux()
	root.Handle("/api/v3/", http.StripPrefix("/api/v3", mux))
	root.Handle("/", mux)
	s.Server = httptest.NewServer(s.Handler(s.auth(root)))
	return s
}

// Start is New that closes the server when the test ends (pass a *testing.T).
func Start(t interface{ Cleanup(func()) }, opts ...Option) *Server {
	s := New(opts...)
	t.Cleanup(s.Close)
	return s
}

// APIURL is the base URL to give a GitHub client ("<URL>/").
func (s *Server) APIURL() string { return s.URL + "/" }

func toRequest(r fakehttp.Request) Request {
	return Request{Method: r.Method, Path: r.Path, Query: r.RawQuery, Body: string(r.Body),
		Authorization: r.Header.Get("Authorization"), Status: r.Status}
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" {
			got := r.Header.Get("Authorization")
			if got != "Bearer "+s.token && got != "token "+s.token {
				writeError(w, http.StatusUnauthorized, "Bad credentials", "https://docs.github.com/rest")
				return
			}
		}
		h := w.Header()
		h.Set("X-RateLimit-Limit", "5000")
		h.Set("X-RateLimit-Remaining", "4999")
		h.Set("X-RateLimit-Used", "1")
		h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
		h.Set("X-RateLimit-Resource", "core")
		h.Set("X-GitHub-Api-Version-Selected", "2022-11-28")
		next.ServeHTTP(w, r)
	})
}

// errorBody is GitHub's error document.
type errorBody struct {
	Message          string        `json:"message"`
	Errors           []errorDetail `json:"errors,omitempty"`
	DocumentationURL string        `json:"documentation_url,omitempty"`
	Status           string        `json:"status,omitempty"`
}

type errorDetail struct {
	Resource string `json:"resource,omitempty"`
	Field    string `json:"field,omitempty"`
	Code     string `json:"code"`
	Message  string `json:"message,omitempty"`
}

func writeError(w http.ResponseWriter, code int, message, doc string, details ...errorDetail) {
	writeJSON(w, code, errorBody{Message: message, Errors: details, DocumentationURL: doc, Status: strconv.Itoa(code)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body into v; it answers 400 "Problems parsing JSON"
// and returns false when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON", "https://docs.github.com/rest")
		return false
	}
	return true
}

// Commit adds a commit of files (nil = delete) on branch, as a push by
// someone else would; a missing branch is created as a root commit. It
// returns the commit SHA.
func (s *Server) Commit(branch string, files map[string][]byte, message string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repo.commitFiles(branch, files, message, "Octo Cat", "octocat@example.com")
}

// Branch returns the commit branch points at ("" = no such branch).
func (s *Server) Branch(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repo.branches[name]
}

// CommitInfo returns the commit sha.
func (s *Server) CommitInfo(sha string) (Commit, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.repo.commits[sha]
	if !ok {
		return Commit{}, false
	}
	cp := *c
	cp.Parents = append([]string(nil), c.Parents...)
	return cp, true
}

// History returns the commits of branch along first parents, newest first.
func (s *Server) History(branch string) []Commit {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Commit
	for sha := s.repo.branches[branch]; sha != ""; {
		c := s.repo.commits[sha]
		out = append(out, *c)
		sha = ""
		if len(c.Parents) > 0 {
			sha = c.Parents[0]
		}
	}
	return out
}

// Files returns every file at ref (a branch or commit SHA); nil when the
// ref does not exist.
func (s *Server) Files(ref string) map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	sha := s.repo.resolve(ref)
	if sha == "" {
		return nil
	}
	out := map[string][]byte{}
	for p, b := range s.repo.trees[s.repo.commits[sha].Tree] {
		out[p] = append([]byte(nil), s.repo.blobs[b]...)
	}
	return out
}

// Pulls returns the pull requests, by number.
func (s *Server) Pulls() []Pull {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Pull
	for _, p := range s.repo.pulls {
		out = append(out, *p)
	}
	return out
}

// Statuses returns the statuses created on sha, oldest first.
func (s *Server) Statuses(sha string) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.repo.statuses[sha]...)
}

// Comments returns the comments on issue or pull request number, oldest first.
func (s *Server) Comments(number int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Comment
	for _, c := range s.repo.comments {
		if c.Number == number {
			out = append(out, c)
		}
	}
	return out
}

// ClosePull closes pull request number, as a user would.
func (s *Server) ClosePull(number int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.repo.pulls {
		if p.Number == number {
			p.State = "closed"
		}
	}
}

func (s *Server) apiURL(r *http.Request, rest string) string {
	return "http://" + r.Host + "/repos/" + s.Owner + "/" + s.Repo + "/" + strings.TrimPrefix(rest, "/")
}

// OpenPull opens a pull request from head into base by user, as a person
// would in the web UI; it returns its number.
func (s *Server) OpenPull(head, base, title, user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Second)
	p := &Pull{Number: len(s.repo.pulls) + 1, Head: head, Base: base, Title: title, State: "open", Created: now, Updated: now, User: user}
	s.repo.pulls = append(s.repo.pulls, p)
	return p.Number
}

// ReviewPull adds a review of pull request number by user, on its head.
func (s *Server) ReviewPull(number int, user, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.repo.pulls[number-1]
	p.Reviews = append(p.Reviews, Review{ID: s.repo.id(), User: user, State: state, CommitID: s.repo.branches[p.Head], SubmittedAt: time.Now().UTC().Truncate(time.Second)})
}

// MergePull merges pull request number as user would with the web UI's
// merge button: a merge commit on base (parents: base tip, head tip; the
// head's tree, the fake does not combine trees) authored by user; the pull
// request is closed and merged. It returns the merge commit.
func (s *Server) MergePull(number int, user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.repo.pulls[number-1]
	base, head := s.repo.branches[p.Base], s.repo.branches[p.Head]
	c := Commit{Tree: s.repo.commits[head].Tree, Parents: []string{base, head}, Message: fmt.Sprintf("Merge pull request #%d from %s/%s\n\n%s", p.Number, s.Owner, p.Head, p.Title),
		AuthorName: user, AuthorEmail: user + "@users.noreply.github.com", Date: time.Now().UTC().Truncate(time.Second)}
	sha := s.repo.putCommit(c)
	s.repo.branches[p.Base] = sha
	p.State, p.Merged, p.MergedBy, p.MergeCommitSHA, p.MergedAt, p.Updated = "closed", true, user, sha, c.Date, c.Date
	return sha
}
