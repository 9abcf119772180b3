package github

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

const docs = "https://docs.github.com/rest"

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	p := "/repos/{owner}/{repo}"
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request)) {
		method, rest, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" "+p+rest, func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("owner") != s.Owner || r.PathValue("repo") != s.Repo {
				writeError(w, http.StatusNotFound, "Not Found", docs)
				return
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			h(w, r)
		})
	}
	handle("GET /contents/{path...}", s.getContents)
	handle("GET /git/ref/{ref...}", s.getRef)
	handle("POST /git/refs", s.createRef)
	handle("PATCH /git/refs/{ref...}", s.updateRef)
	handle("GET /git/commits/{sha}", s.getCommit)
	handle("POST /git/commits", s.createCommit)
	handle("GET /git/trees/{sha}", s.getTree)
	handle("POST /git/trees", s.createTree)
	handle("POST /git/blobs", s.createBlob)
	handle("GET /git/blobs/{sha}", s.getBlob)
	handle("GET /pulls", s.listPulls)
	handle("POST /pulls", s.createPull)
	handle("GET /pulls/{number}", s.getPull)
	handle("PATCH /pulls/{number}", s.updatePull)
	handle("GET /pulls/{number}/reviews", s.listReviews)
	handle("GET /commits/{sha}/pulls", s.commitPulls)
	handle("POST /statuses/{sha}", s.createStatus)
	handle("POST /issues/{number}/comments", s.createComment)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Not Found", docs)
	})
	return mux
}

// GET /repos/{owner}/{repo}/contents/{path}?ref= : a file (base64, wrapped
// at 60 columns as GitHub does) or a directory listing.
func (s *Server) getContents(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		ref = "main"
	}
	sha := s.repo.resolve(ref)
	if sha == "" {
		writeError(w, http.StatusNotFound, "No commit found for the ref "+ref, docs+"/repos/contents#get-repository-content")
		return
	}
	p := strings.Trim(r.PathValue("path"), "/")
	tree := s.repo.trees[s.repo.commits[sha].Tree]
	if blob, ok := tree[p]; ok {
		content := s.repo.blobs[blob]
		enc := base64.StdEncoding.EncodeToString(content)
		var wrapped strings.Builder
		for len(enc) > 60 {
			wrapped.WriteString(enc[:60] + "\n")
			enc = enc[60:]
		}
		wrapped.WriteString(enc + "\n")
		writeJSON(w, http.StatusOK, map[string]any{
			"type": "file", "encoding": "base64", "size": len(content), "name": path.Base(p), "path": p,
			"content": wrapped.String(), "sha": blob, "url": s.apiURL(r, "contents/"+p+"?ref="+ref),
		})
		return
	}
	var dir []map[string]any
	seen := map[string]bool{}
	for fp, blob := range tree {
		rest, ok := strings.CutPrefix(fp, p+"/")
		if p == "" {
			rest, ok = fp, true
		}
		if !ok {
			continue
		}
		name, _, isDir := strings.Cut(rest, "/")
		if seen[name] {
			continue
		}
		seen[name] = true
		e := map[string]any{"type": "file", "name": name, "path": strings.TrimPrefix(p+"/"+name, "/"), "sha": blob, "size": len(s.repo.blobs[blob])}
		if isDir {
			e["type"], e["sha"], e["size"] = "dir", "", 0
		}
		dir = append(dir, e)
	}
	if dir == nil {
		writeError(w, http.StatusNotFound, "Not Found", docs+"/repos/contents#get-repository-content")
		return
	}
	sort.Slice(dir, func(i, j int) bool { return dir[i]["name"].(string) < dir[j]["name"].(string) })
	writeJSON(w, http.StatusOK, dir)
}

func (s *Server) refJSON(r *http.Request, branch, sha string) map[string]any {
	return map[string]any{
		"ref": "refs/heads/" + branch, "node_id": "REF_" + branch, "url": s.apiURL(r, "git/refs/heads/"+branch),
		"object": map[string]any{"type": "commit", "sha": sha, "url": s.apiURL(r, "git/commits/"+sha)},
	}
}

// GET /repos/{owner}/{repo}/git/ref/heads/{branch}
func (s *Server) getRef(w http.ResponseWriter, r *http.Request) {
	branch, ok := strings.CutPrefix(r.PathValue("ref"), "heads/")
	sha := s.repo.branches[branch]
	if !ok || sha == "" {
		writeError(w, http.StatusNotFound, "Not Found", docs+"/git/refs#get-a-reference")
		return
	}
	writeJSON(w, http.StatusOK, s.refJSON(r, branch, sha))
}

// POST /repos/{owner}/{repo}/git/refs {"ref":"refs/heads/x","sha":"…"}
func (s *Server) createRef(w http.ResponseWriter, r *http.Request) {
	var in struct{ Ref, SHA string }
	if !decode(w, r, &in) {
		return
	}
	branch, ok := strings.CutPrefix(in.Ref, "refs/heads/")
	if !ok || branch == "" {
		writeError(w, http.StatusUnprocessableEntity, "Reference name must start with 'refs/' and have at least two slashes.", docs+"/git/refs#create-a-reference")
		return
	}
	if s.repo.commits[in.SHA] == nil {
		writeError(w, http.StatusUnprocessableEntity, "Object does not exist", docs+"/git/refs#create-a-reference")
		return
	}
	if s.repo.branches[branch] != "" {
		writeError(w, http.StatusUnprocessableEntity, "Reference already exists", docs+"/git/refs#create-a-reference")
		return
	}
	s.repo.branches[branch] = in.SHA
	writeJSON(w, http.StatusCreated, s.refJSON(r, branch, in.SHA))
}

// PATCH /repos/{owner}/{repo}/git/refs/heads/{branch} {"sha":"…","force":false}
func (s *Server) updateRef(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SHA   string
		Force bool
	}
	if !decode(w, r, &in) {
		return
	}
	branch, _ := strings.CutPrefix(r.PathValue("ref"), "heads/")
	old := s.repo.branches[branch]
	if old == "" {
		writeError(w, http.StatusUnprocessableEntity, "Reference does not exist", docs+"/git/refs#update-a-reference")
		return
	}
	if s.repo.commits[in.SHA] == nil {
		writeError(w, http.StatusUnprocessableEntity, "Object does not exist", docs+"/git/refs#update-a-reference")
		return
	}
	if !in.Force && !s.repo.isAncestor(old, in.SHA) {
		writeError(w, http.StatusUnprocessableEntity, "Update is not a fast forward", docs+"/git/refs#update-a-reference")
		return
	}
	s.repo.branches[branch] = in.SHA
	writeJSON(w, http.StatusOK, s.refJSON(r, branch, in.SHA))
}

func (s *Server) commitJSON(r *http.Request, c *Commit) map[string]any {
	person := map[string]any{"name": c.AuthorName, "email": c.AuthorEmail, "date": c.Date.Format(time.RFC3339)}
	parents := []map[string]any{}
	for _, p := range c.Parents {
		parents = append(parents, map[string]any{"sha": p, "url": s.apiURL(r, "git/commits/"+p)})
	}
	return map[string]any{
		"sha": c.SHA, "node_id": "C_" + c.SHA, "url": s.apiURL(r, "git/commits/"+c.SHA),
		"author": person, "committer": person, "message": c.Message,
		"tree":         map[string]any{"sha": c.Tree, "url": s.apiURL(r, "git/trees/"+c.Tree)},
		"parents":      parents,
		"verification": map[string]any{"verified": false, "reason": "unsigned", "signature": nil, "payload": nil},
	}
}

// GET /repos/{owner}/{repo}/git/commits/{sha}
func (s *Server) getCommit(w http.ResponseWriter, r *http.Request) {
	c := s.repo.commits[r.PathValue("sha")]
	if c == nil {
		writeError(w, http.StatusNotFound, "Not Found", docs+"/git/commits#get-a-commit-object")
		return
	}
	writeJSON(w, http.StatusOK, s.commitJSON(r, c))
}

// POST /repos/{owner}/{repo}/git/commits {"message","tree","parents","author"}
func (s *Server) createCommit(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Message string
		Tree    string
		Parents []string
		Author  *struct {
			Name, Email string
			Date        *time.Time
		}
	}
	if !decode(w, r, &in) {
		return
	}
	if _, ok := s.repo.trees[in.Tree]; !ok {
		writeError(w, http.StatusUnprocessableEntity, "Tree SHA does not exist", docs+"/git/commits#create-a-commit")
		return
	}
	for _, p := range in.Parents {
		if s.repo.commits[p] == nil {
			writeError(w, http.StatusUnprocessableEntity, "Parent SHA does not exist or is not a commit object", docs+"/git/commits#create-a-commit")
			return
		}
	}
	c := Commit{Tree: in.Tree, Parents: in.Parents, Message: in.Message, AuthorName: "octocat", AuthorEmail: "octocat@example.com", Date: time.Now().UTC()}
	if in.Author != nil {
		c.AuthorName, c.AuthorEmail = in.Author.Name, in.Author.Email
		if in.Author.Date != nil {
			c.Date = in.Author.Date.UTC()
		}
	}
	sha := s.repo.putCommit(c)
	writeJSON(w, http.StatusCreated, s.commitJSON(r, s.repo.commits[sha]))
}

func (s *Server) treeJSON(r *http.Request, sha string) map[string]any {
	entries := []map[string]any{}
	tree := s.repo.trees[sha]
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		entries = append(entries, map[string]any{"path": p, "mode": "100644", "type": "blob", "sha": tree[p], "size": len(s.repo.blobs[tree[p]]), "url": s.apiURL(r, "git/blobs/"+tree[p])})
	}
	return map[string]any{"sha": sha, "url": s.apiURL(r, "git/trees/"+sha), "tree": entries, "truncated": false}
}

// GET /repos/{owner}/{repo}/git/trees/{sha} (always recursive: trees are flat)
func (s *Server) getTree(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.repo.trees[r.PathValue("sha")]; !ok {
		writeError(w, http.StatusNotFound, "Not Found", docs+"/git/trees#get-a-tree")
		return
	}
	writeJSON(w, http.StatusOK, s.treeJSON(r, r.PathValue("sha")))
}

// POST /repos/{owner}/{repo}/git/trees {"base_tree","tree":[{path,mode,type,sha|content}]};
// "sha": null deletes the path.
func (s *Server) createTree(w http.ResponseWriter, r *http.Request) {
	var in struct {
		BaseTree string `json:"base_tree"`
		Tree     []struct {
			Path    string          `json:"path"`
			Mode    string          `json:"mode"`
			Type    string          `json:"type"`
			SHA     json.RawMessage `json:"sha"`
			Content *string         `json:"content"`
		} `json:"tree"`
	}
	if !decode(w, r, &in) {
		return
	}
	entries := map[string]string{}
	if in.BaseTree != "" {
		base, ok := s.repo.trees[in.BaseTree]
		if !ok {
			writeError(w, http.StatusUnprocessableEntity, "base_tree is not a valid tree oid", docs+"/git/trees#create-a-tree")
			return
		}
		for p, b := range base {
			entries[p] = b
		}
	}
	for _, e := range in.Tree {
		if e.Path == "" || strings.HasPrefix(e.Path, "/") || e.Type != "blob" || (e.Mode != "100644" && e.Mode != "100755") {
			writeError(w, http.StatusUnprocessableEntity, "Invalid tree info", docs+"/git/trees#create-a-tree",
				errorDetail{Resource: "Tree", Field: "tree", Code: "invalid"})
			return
		}
		switch {
		case e.Content != nil:
			entries[e.Path] = s.repo.putBlob([]byte(*e.Content))
		case string(e.SHA) == "null":
			delete(entries, e.Path)
		default:
			var sha string
			if json.Unmarshal(e.SHA, &sha) != nil || s.repo.blobs[sha] == nil {
				writeError(w, http.StatusUnprocessableEntity, "tree.sha "+sha+" is not a valid blob", docs+"/git/trees#create-a-tree")
				return
			}
			entries[e.Path] = sha
		}
	}
	writeJSON(w, http.StatusCreated, s.treeJSON(r, s.repo.putTree(entries)))
}

// POST /repos/{owner}/{repo}/git/blobs {"content","encoding":"utf-8"|"base64"}
func (s *Server) createBlob(w http.ResponseWriter, r *http.Request) {
	var in struct{ Content, Encoding string }
	if !decode(w, r, &in) {
		return
	}
	content := []byte(in.Content)
	switch in.Encoding {
	case "", "utf-8":
	case "base64":
		raw, err := base64.StdEncoding.DecodeString(in.Content)
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, "Invalid base64 content", docs+"/git/blobs#create-a-blob")
			return
		}
		content = raw
	default:
		writeError(w, http.StatusUnprocessableEntity, "encoding must be utf-8 or base64", docs+"/git/blobs#create-a-blob")
		return
	}
	sha := s.repo.putBlob(content)
	writeJSON(w, http.StatusCreated, map[string]any{"sha": sha, "url": s.apiURL(r, "git/blobs/"+sha)})
}

func (s *Server) pullJSON(r *http.Request, p *Pull) map[string]any {
	side := func(ref string) map[string]any {
		return map[string]any{"label": s.Owner + ":" + ref, "ref": ref, "sha": s.repo.branches[ref]}
	}
	out := map[string]any{
		"url": s.apiURL(r, "pulls/"+strconv.Itoa(p.Number)), "id": 5000 + p.Number, "node_id": "PR_" + strconv.Itoa(p.Number),
		"html_url": "https://github.com/" + s.Owner + "/" + s.Repo + "/pull/" + strconv.Itoa(p.Number),
		"number":   p.Number, "state": p.State, "locked": false, "title": p.Title, "body": p.Body,
		"created_at": p.Created.Format(time.RFC3339), "updated_at": p.Updated.Format(time.RFC3339),
		"head": side(p.Head), "base": side(p.Base), "merged": p.Merged, "draft": false,
		"user": map[string]any{"login": cmpOr(p.User, "branchml-bot")},
	}
	if p.Merged {
		out["merged_at"] = p.MergedAt.Format(time.RFC3339)
		out["merge_commit_sha"] = p.MergeCommitSHA
		out["merged_by"] = map[string]any{"login": p.MergedBy}
		out["closed_at"] = p.MergedAt.Format(time.RFC3339)
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// GET /repos/{owner}/{repo}/pulls/{number}/reviews: the reviews, oldest
// first (pull-request-review objects).
func (s *Server) listReviews(w http.ResponseWriter, r *http.Request) {
	p := s.pullByNumber(w, r)
	if p == nil {
		return
	}
	out := []map[string]any{}
	for _, rv := range p.Reviews {
		out = append(out, map[string]any{"id": rv.ID, "node_id": "PRR_" + strconv.FormatInt(rv.ID, 10), "user": map[string]any{"login": rv.User},
			"body": rv.Body, "state": rv.State, "commit_id": rv.CommitID, "submitted_at": rv.SubmittedAt.Format(time.RFC3339),
			"html_url":           "https://github.com/" + s.Owner + "/" + s.Repo + "/pull/" + strconv.Itoa(p.Number) + "#pullrequestreview-" + strconv.FormatInt(rv.ID, 10),
			"author_association": "MEMBER"})
	}
	writeJSON(w, http.StatusOK, out)
}

// GET /repos/{owner}/{repo}/commits/{sha}/pulls: the pull requests
// associated with a commit (pull-request-simple objects): those it is the
// merge commit of, and the open ones whose head it is.
func (s *Server) commitPulls(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	if s.repo.commits[sha] == nil {
		writeError(w, http.StatusUnprocessableEntity, "No commit found for SHA: "+sha, docs+"/commits/commits#list-pull-requests-associated-with-a-commit")
		return
	}
	out := []map[string]any{}
	for _, p := range s.repo.pulls {
		if p.MergeCommitSHA == sha || (p.State == "open" && s.repo.branches[p.Head] == sha) {
			j := s.pullJSON(r, p)
			delete(j, "merged") // not in pull-request-simple
			delete(j, "merged_by")
			out = append(out, j)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// headBranch strips "owner:" from a head filter or field.
func (s *Server) headBranch(h string) string {
	if owner, b, ok := strings.Cut(h, ":"); ok && owner == s.Owner {
		return b
	}
	return h
}

// GET /repos/{owner}/{repo}/pulls?state=open&head=owner:branch&base=branch
func (s *Server) listPulls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "open"
	}
	out := []map[string]any{}
	for _, p := range s.repo.pulls {
		if state != "all" && p.State != state {
			continue
		}
		if h := q.Get("head"); h != "" && (!strings.Contains(h, ":") || s.headBranch(h) != p.Head) {
			continue
		}
		if b := q.Get("base"); b != "" && b != p.Base {
			continue
		}
		out = append(out, s.pullJSON(r, p))
	}
	writeJSON(w, http.StatusOK, out)
}

// POST /repos/{owner}/{repo}/pulls {"title","head","base","body"}
func (s *Server) createPull(w http.ResponseWriter, r *http.Request) {
	var in struct{ Title, Head, Base, Body string }
	if !decode(w, r, &in) {
		return
	}
	head := s.headBranch(in.Head)
	for field, b := range map[string]string{"head": head, "base": in.Base} {
		if s.repo.branches[b] == "" {
			writeError(w, http.StatusUnprocessableEntity, "Validation Failed", docs+"/pulls/pulls#create-a-pull-request",
				errorDetail{Resource: "PullRequest", Field: field, Code: "invalid"})
			return
		}
	}
	if tip := s.repo.branches[head]; s.repo.isAncestor(tip, s.repo.branches[in.Base]) {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed", docs+"/pulls/pulls#create-a-pull-request",
			errorDetail{Resource: "PullRequest", Code: "custom", Message: "No commits between " + in.Base + " and " + head})
		return
	}
	for _, p := range s.repo.pulls {
		if p.State == "open" && p.Head == head && p.Base == in.Base {
			writeError(w, http.StatusUnprocessableEntity, "Validation Failed", docs+"/pulls/pulls#create-a-pull-request",
				errorDetail{Resource: "PullRequest", Code: "custom", Message: "A pull request already exists for " + s.Owner + ":" + head + "."})
			return
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	p := &Pull{Number: len(s.repo.pulls) + 1, Head: head, Base: in.Base, Title: in.Title, Body: in.Body, State: "open", Created: now, Updated: now}
	s.repo.pulls = append(s.repo.pulls, p)
	writeJSON(w, http.StatusCreated, s.pullJSON(r, p))
}

func (s *Server) pullByNumber(w http.ResponseWriter, r *http.Request) *Pull {
	n, err := strconv.Atoi(r.PathValue("number"))
	if err == nil && n >= 1 && n <= len(s.repo.pulls) {
		return s.repo.pulls[n-1]
	}
	writeError(w, http.StatusNotFound, "Not Found", docs+"/pulls/pulls")
	return nil
}

// GET /repos/{owner}/{repo}/pulls/{number}
func (s *Server) getPull(w http.ResponseWriter, r *http.Request) {
	if p := s.pullByNumber(w, r); p != nil {
		writeJSON(w, http.StatusOK, s.pullJSON(r, p))
	}
}

// PATCH /repos/{owner}/{repo}/pulls/{number} {"title","body","state","base"}
func (s *Server) updatePull(w http.ResponseWriter, r *http.Request) {
	p := s.pullByNumber(w, r)
	if p == nil {
		return
	}
	var in struct{ Title, Body, State, Base *string }
	if !decode(w, r, &in) {
		return
	}
	if in.Title != nil {
		p.Title = *in.Title
	}
	if in.Body != nil {
		p.Body = *in.Body
	}
	if in.State != nil {
		p.State = *in.State
	}
	if in.Base != nil {
		p.Base = *in.Base
	}
	p.Updated = time.Now().UTC().Truncate(time.Second)
	writeJSON(w, http.StatusOK, s.pullJSON(r, p))
}

// POST /repos/{owner}/{repo}/statuses/{sha} {"state","target_url","description","context"}
func (s *Server) createStatus(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	var in struct {
		State       string `json:"state"`
		TargetURL   string `json:"target_url"`
		Description string `json:"description"`
		Context     string `json:"context"`
	}
	if !decode(w, r, &in) {
		return
	}
	switch in.State {
	case "pending", "success", "failure", "error":
	default:
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed", docs+"/commits/statuses#create-a-commit-status",
			errorDetail{Resource: "Status", Field: "state", Code: "custom", Message: "state is not included in the list"})
		return
	}
	if s.repo.commits[sha] == nil {
		writeError(w, http.StatusUnprocessableEntity, "No commit found for SHA: "+sha, docs+"/commits/statuses#create-a-commit-status")
		return
	}
	if in.Context == "" {
		in.Context = "default"
	}
	st := Status{ID: s.repo.id(), State: in.State, Context: in.Context, Description: in.Description, TargetURL: in.TargetURL}
	s.repo.statuses[sha] = append(s.repo.statuses[sha], st)
	now := time.Now().UTC().Format(time.RFC3339)
	writeJSON(w, http.StatusCreated, map[string]any{
		"url": s.apiURL(r, "statuses/"+sha), "id": st.ID, "node_id": "SC_" + strconv.FormatInt(st.ID, 10),
		"state": st.State, "description": st.Description, "target_url": st.TargetURL, "context": st.Context,
		"created_at": now, "updated_at": now, "creator": map[string]any{"login": "branchml-bot"},
	})
}

// POST /repos/{owner}/{repo}/issues/{number}/comments {"body"}
func (s *Server) createComment(w http.ResponseWriter, r *http.Request) {
	p := s.pullByNumber(w, r)
	if p == nil {
		return
	}
	var in struct{ Body string }
	if !decode(w, r, &in) {
		return
	}
	if in.Body == "" {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed", docs+"/issues/comments#create-an-issue-comment",
			errorDetail{Resource: "IssueComment", Field: "body", Code: "missing_field"})
		return
	}
	c := Comment{ID: s.repo.id(), Number: p.Number, Body: in.Body}
	s.repo.comments = append(s.repo.comments, c)
	now := time.Now().UTC().Format(time.RFC3339)
	writeJSON(w, http.StatusCreated, map[string]any{
		"id": c.ID, "node_id": "IC_" + strconv.FormatInt(c.ID, 10), "url": s.apiURL(r, "issues/comments/"+strconv.FormatInt(c.ID, 10)),
		"html_url": "https://github.com/" + s.Owner + "/" + s.Repo + "/pull/" + strconv.Itoa(p.Number) + "#issuecomment-" + strconv.FormatInt(c.ID, 10),
		"body":     c.Body, "user": map[string]any{"login": "branchml-bot"}, "created_at": now, "updated_at": now,
	})
}

// GET /repos/{owner}/{repo}/git/blobs/{sha}: JSON (base64), or the raw
// bytes with Accept: application/vnd.github.raw (or .v3.raw).
func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	content, ok := s.repo.blobs[sha]
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found", docs+"/git/blobs#get-a-blob")
		return
	}
	if strings.Contains(r.Header.Get("Accept"), ".raw") {
		w.Header().Set("Content-Type", "application/vnd.github.raw")
		w.Write(content)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sha": sha, "size": len(content), "encoding": "base64",
		"content": base64.StdEncoding.EncodeToString(content), "url": s.apiURL(r, "git/blobs/"+sha)})
}
