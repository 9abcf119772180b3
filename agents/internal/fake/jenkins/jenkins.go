package jenkins

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/branchml/branchml/agents/internal/fake/fakehttp"
)

// Version is what the fake answers in the X-Jenkins header.
const Version = "2.462.3"

// Script says how the builds of one job behave.
type Script struct {
	// QueuePolls is how many queue-item polls answer "waiting" before the
	// item gets its executable (0: the first poll already has it).
	QueuePolls int
	// Cancel makes the queue item end cancelled (Queue$LeftItem, cancelled true).
	Cancel bool
	// Log is the console text, revealed one chunk per progressiveText call.
	Log []string
	// Result is the final result: SUCCESS, FAILURE, UNSTABLE, ABORTED.
	Result string
}

// Request is one request the fake received.
type Request struct {
	// Path is the path as sent (escaped); Query the raw query.
	Method, Path, Query, ContentType, Body string
	// Crumb is the Jenkins-Crumb header; Cookie the Cookie header.
	Crumb, Cookie string
}

// String is "METHOD path?query" (path as sent, escaped; no "?" without a query).
func (r Request) String() string {
	if r.Query != "" {
		return r.Method + " " + r.Path + "?" + r.Query
	}
	return r.Method + " " + r.Path
}

type job struct {
	name, class string
	config      string
	folder      bool
	multibranch bool
	scans       int
	script      Script
	next        int64
	builds      map[int64]*build
}

type build struct {
	number   int64
	revealed int
	script   Script
}

type queueItem struct {
	id    int64
	job   string
	polls int
	build int64
	left  bool
}

// Server is the fake. Its zero configuration accepts anonymous requests and
// needs no crumb; set User/Token and CrumbRequired before use.
type Server struct {
	// User and Token, when User is set, are the only accepted Basic credentials.
	User, Token string
	// CrumbRequired makes every POST need a valid crumb and its session cookie.
	CrumbRequired bool
	// Created is the script of jobs made through createItem.
	Created Script

	mu       sync.Mutex
	srv      *httptest.Server
	jobs     map[string]*job
	queue    map[int64]*queueItem
	nextQ    int64
	crumb    string
	session  string
	crumbGen int
	fetches  int
	rec      fakehttp.Recorder
}

// New starts a fake Jenkins on loopback; Close it when done.
func New() *Server { return NewWith(nil) }

// NewWith starts a fake whose handler is wrap(fake handler) (wrap nil: the
// plain handler), for fault injection.
func NewWith(wrap func(http.Handler) http.Handler) *Server {
	s := &Server{jobs: map[string]*job{}, queue: map[int64]*queueItem{}, nextQ: 100}
	s.rotateCrumb()
	h := s.rec.Wrap(http.HandlerFunc(s.serve))
	if wrap != nil {
		h = wrap(h)
	}
	s.srv = httptest.NewServer(h)
	return s
}

// URL is the base URL (no trailing slash).
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// AddFolder creates a folder (full name "a/b").
func (s *Server) AddFolder(full string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[full] = &job{name: last(full), class: "com.cloudbees.hudson.plugins.folder.Folder", folder: true}
}

// AddMultibranch creates a Multibranch Pipeline job (a computed folder,
// full name "a/b"): POST build schedules a branch indexing and answers as
// ComputedFolder.doBuild does, with a redirect to the previous page and no
// queue item; Scans counts them.
func (s *Server) AddMultibranch(full string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[full] = &job{name: last(full), class: "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject", folder: true, multibranch: true}
}

// Scans is how many branch indexings of the multibranch job full were scheduled.
func (s *Server) Scans(full string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[full]; ok {
		return j.scans
	}
	return 0
}

// SetConfig replaces a job's stored config.xml as Jenkins itself would
// (after a build added job properties, say); GET config.xml answers it
// re-serialized.
func (s *Server) SetConfig(full, configXML string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[full]; ok {
		j.config = configXML
	}
}

// PluginVersions are the versions the fake writes into plugin="…"
// attributes when it re-serializes a config.xml.
var PluginVersions = map[string]string{"workflow-job": "1571.1580.v18e46842c125", "workflow-cps": "4350.vcc65d4958821", "git": "5.10.1"}

var pluginAttr = regexp.MustCompile(`plugin="([a-z0-9-]+)"`)

// reserialize answers a stored config.xml the way Jenkins'
// AbstractItem.writeConfigDotXml does: XStream2.toXMLUTF8's declaration
// <?xml version="1.1" encoding="UTF-8"?>, plugin attributes with the
// plugin's version, and an <actions/> element first in the root.
func reserialize(doc string) string {
	doc = strings.TrimSpace(doc)
	if strings.HasPrefix(doc, "<?xml") {
		if i := strings.Index(doc, "?>"); i >= 0 {
			doc = strings.TrimSpace(doc[i+2:])
		}
	}
	doc = pluginAttr.ReplaceAllStringFunc(doc, func(m string) string {
		name := pluginAttr.FindStringSubmatch(m)[1]
		if v, ok := PluginVersions[name]; ok {
			return `plugin="` + name + "@" + v + `"`
		}
		return m
	})
	if i := strings.Index(doc, ">"); i > 0 && !strings.HasSuffix(doc[:i], "/") {
		doc = doc[:i+1] + "\n  <actions/>" + doc[i+1:]
	}
	return "<?xml version=\"1.1\" encoding=\"UTF-8\"?>\n" + doc + "\n"
}

// AddJob creates a pipeline job (full name "folder/job/branch%2Fx", item
// names as Jenkins stores them) whose builds follow script.
func (s *Server) AddJob(full string, script Script) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[full] = &job{name: last(full), class: "org.jenkinsci.plugins.workflow.job.WorkflowJob",
		config: "<flow-definition/>", script: script, next: 1, builds: map[int64]*build{}}
}

// Config returns a job's config.xml and whether the job exists.
func (s *Server) Config(full string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[full]
	if !ok {
		return "", false
	}
	return j.config, true
}

// ExpireCrumb rotates the crumb and its session, as a restarted Jenkins or
// an expired session would: the next POST with the old crumb gets 403.
func (s *Server) ExpireCrumb() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotateCrumb()
}

// CrumbFetches is how many times /crumbIssuer/api/json was asked.
func (s *Server) CrumbFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// Requests returns the requests received so far, in order (not those a
// fault of NewWith answered).
func (s *Server) Requests() []Request { return fakehttp.Convert(s.rec.Requests(), toRequest) }

// Calls returns Request.String of every request.
func (s *Server) Calls() []string { return fakehttp.Strings(s.Requests()) }

func toRequest(r fakehttp.Request) Request {
	return Request{Method: r.Method, Path: r.EscapedPath, Query: r.RawQuery, ContentType: r.Header.Get("Content-Type"),
		Body: string(r.Body), Crumb: r.Header.Get("Jenkins-Crumb"), Cookie: r.Header.Get("Cookie")}
}

func (s *Server) rotateCrumb() {
	s.crumbGen++
	s.crumb = fmt.Sprintf("crumb-%04d", s.crumbGen)
	s.session = fmt.Sprintf("node0session%04d", s.crumbGen)
}

func last(full string) string {
	i := strings.LastIndex(full, "/")
	return full[i+1:]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("X-Jenkins", Version)

	if s.User != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != s.User || p != s.Token {
			w.Header().Set("WWW-Authenticate", `Basic realm="Jenkins"`)
			http.Error(w, "Invalid password/token for user: "+u, http.StatusUnauthorized)
			return
		}
	}
	path := strings.Trim(r.URL.EscapedPath(), "/")
	if path == "crumbIssuer/api/json" && r.Method == http.MethodGet {
		if !s.CrumbRequired {
			http.NotFound(w, r)
			return
		}
		s.fetches++
		http.SetCookie(w, &http.Cookie{Name: "JSESSIONID.4f5e6d7c", Value: s.session, Path: "/", HttpOnly: true})
		writeJSON(w, map[string]any{"_class": "hudson.security.csrf.DefaultCrumbIssuer",
			"crumb": s.crumb, "crumbRequestField": "Jenkins-Crumb"})
		return
	}
	if r.Method == http.MethodPost && s.CrumbRequired {
		if r.Header.Get("Jenkins-Crumb") != s.crumb || !strings.Contains(r.Header.Get("Cookie"), "JSESSIONID.4f5e6d7c="+s.session) {
			http.Error(w, "No valid crumb was included in the request", http.StatusForbidden)
			return
		}
	}
	if strings.HasPrefix(path, "queue/item/") {
		s.serveQueue(w, r, strings.TrimPrefix(path, "queue/item/"))
		return
	}
	// /job/a/job/b/<action...>
	segs := strings.Split(path, "/")
	var names []string
	i := 0
	for i+1 < len(segs) && segs[i] == "job" {
		n, err := url.PathUnescape(segs[i+1])
		if err != nil {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		names = append(names, n)
		i += 2
	}
	full := strings.Join(names, "/")
	action := strings.Join(segs[i:], "/")
	if full == "" {
		s.serveRoot(w, r, action, body)
		return
	}
	j, ok := s.jobs[full]
	if !ok {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	s.serveJob(w, r, full, j, action, body)
}

func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request, action string, body []byte) {
	switch {
	case action == "api/json" && r.Method == http.MethodGet:
		var jobs []map[string]any
		for full, j := range s.jobs {
			if !strings.Contains(full, "/") {
				jobs = append(jobs, map[string]any{"_class": j.class, "name": j.name, "url": s.itemURL(full)})
			}
		}
		sort.Slice(jobs, func(a, b int) bool { return jobs[a]["name"].(string) < jobs[b]["name"].(string) })
		writeJSON(w, map[string]any{"_class": "hudson.model.Hudson", "mode": "NORMAL",
			"nodeDescription": "the Jenkins controller", "useCrumbs": s.CrumbRequired, "useSecurity": s.User != "", "jobs": jobs})
	case action == "createItem" && r.Method == http.MethodPost:
		s.createItem(w, r, "", body)
	default:
		http.Error(w, "Not Found", http.StatusNotFound)
	}
}

func (s *Server) createItem(w http.ResponseWriter, r *http.Request, parent string, body []byte) {
	name := r.URL.Query().Get("name")
	if name == "" {
		http.Error(w, "Query parameter 'name' is required", http.StatusBadRequest)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/xml") {
		http.Error(w, "expected Content-Type application/xml", http.StatusBadRequest)
		return
	}
	full := name
	if parent != "" {
		full = parent + "/" + name
	}
	if _, exists := s.jobs[full]; exists {
		w.Header().Set("X-Error", "A job already exists with the name ‘"+name+"’")
		http.Error(w, "A job already exists with the name "+name, http.StatusBadRequest)
		return
	}
	s.jobs[full] = &job{name: name, class: "org.jenkinsci.plugins.workflow.job.WorkflowJob",
		config: string(body), script: s.Created, next: 1, builds: map[int64]*build{}}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) itemURL(full string) string {
	var b strings.Builder
	b.WriteString(s.srv.URL)
	for _, n := range strings.Split(full, "/") {
		b.WriteString("/job/" + url.PathEscape(n))
	}
	return b.String() + "/"
}

func (s *Server) serveJob(w http.ResponseWriter, r *http.Request, full string, j *job, action string, body []byte) {
	get, post := r.Method == http.MethodGet, r.Method == http.MethodPost
	switch {
	case action == "api/json" && get:
		m := map[string]any{"_class": j.class, "name": j.name, "fullName": full, "url": s.itemURL(full)}
		if !j.folder {
			m["buildable"] = true
			m["inQueue"] = false
			m["nextBuildNumber"] = j.next
			m["property"] = []any{}
			if j.next > 1 {
				m["lastBuild"] = map[string]any{"number": j.next - 1, "url": s.itemURL(full) + strconv.FormatInt(j.next-1, 10) + "/"}
			}
		}
		writeJSON(w, m)
	case action == "createItem" && post && j.folder:
		s.createItem(w, r, full, body)
	case action == "config.xml" && get:
		w.Header().Set("Content-Type", "application/xml")
		io.WriteString(w, reserialize(j.config))
	case action == "config.xml" && post:
		j.config = string(body)
		w.WriteHeader(http.StatusOK)
	case action == "build" && post && j.multibranch:
		j.scans++
		w.Header().Set("Location", s.itemURL(full))
		w.WriteHeader(http.StatusFound)
	case action == "" && get && j.folder:
		w.Header().Set("Content-Type", "text/html;charset=utf-8")
		io.WriteString(w, "<html><head><title>"+j.name+" [Jenkins]</title></head><body></body></html>")
	case (action == "build" || action == "buildWithParameters") && post && !j.folder:
		s.nextQ++
		s.queue[s.nextQ] = &queueItem{id: s.nextQ, job: full}
		w.Header().Set("Location", fmt.Sprintf("%s/queue/item/%d/", s.srv.URL, s.nextQ))
		w.WriteHeader(http.StatusCreated)
	default:
		if j.folder {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		s.serveBuild(w, r, full, j, action)
	}
}

func (s *Server) serveBuild(w http.ResponseWriter, r *http.Request, full string, j *job, action string) {
	num, rest, _ := strings.Cut(action, "/")
	var n int64
	if num == "lastBuild" {
		n = j.next - 1
	} else {
		var err error
		if n, err = strconv.ParseInt(num, 10, 64); err != nil {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
	}
	b, ok := j.builds[n]
	if !ok {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	done := b.revealed >= len(b.script.Log)
	switch rest {
	case "api/json":
		var result any
		if done {
			result = b.script.Result
		}
		writeJSON(w, map[string]any{"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": n,
			"url": s.itemURL(full) + strconv.FormatInt(n, 10) + "/", "building": !done, "result": result,
			"displayName": "#" + strconv.FormatInt(n, 10), "fullDisplayName": strings.ReplaceAll(full, "/", " » ") + " #" + strconv.FormatInt(n, 10),
			"duration": map[bool]int64{true: 4000, false: 0}[done], "timestamp": int64(1795953600000)})
	case "logText/progressiveText":
		start, _ := strconv.Atoi(r.URL.Query().Get("start"))
		if b.revealed < len(b.script.Log) {
			b.revealed++
		}
		text := strings.Join(b.script.Log[:b.revealed], "")
		if start > len(text) {
			start = len(text)
		}
		w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
		w.Header().Set("X-Text-Size", strconv.Itoa(len(text)))
		if b.revealed < len(b.script.Log) {
			w.Header().Set("X-More-Data", "true")
		}
		io.WriteString(w, text[start:])
	default:
		http.Error(w, "Not Found", http.StatusNotFound)
	}
}

func (s *Server) serveQueue(w http.ResponseWriter, r *http.Request, rest string) {
	idStr, tail, _ := strings.Cut(rest, "/")
	id, err := strconv.ParseInt(idStr, 10, 64)
	q, ok := s.queue[id]
	if err != nil || !ok || tail != "api/json" || r.Method != http.MethodGet {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	j := s.jobs[q.job]
	task := map[string]any{"_class": j.class, "name": j.name, "url": s.itemURL(q.job)}
	m := map[string]any{"id": id, "task": task, "url": fmt.Sprintf("queue/item/%d/", id),
		"inQueueSince": int64(1795953600000), "blocked": false, "stuck": false}
	if !q.left && q.polls < j.script.QueuePolls {
		q.polls++
		m["_class"] = "hudson.model.Queue$WaitingItem"
		m["buildable"] = false
		m["why"] = "In the quiet period. Expires in 4.9 sec"
		writeJSON(w, m)
		return
	}
	if !q.left {
		q.left = true
		if !j.script.Cancel {
			q.build = j.next
			j.builds[j.next] = &build{number: j.next, script: j.script}
			j.next++
		}
	}
	m["_class"] = "hudson.model.Queue$LeftItem"
	m["buildable"] = false
	m["cancelled"] = j.script.Cancel && q.build == 0
	if q.build != 0 {
		m["executable"] = map[string]any{"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
			"number": q.build, "url": s.itemURL(q.job) + strconv.FormatInt(q.build, 10) + "/"}
	} else {
		m["executable"] = nil
	}
	writeJSON(w, m)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	json.NewEncoder(w).Encode(v)
}

// Fault is an error injected by Inject: requests matching Method (""
// any) and whose escaped path contains PathContains get Status and Body
// (Times times; 0 means always), after Delay. A Fault with Status 0 only
// delays and sets Header, then lets the request through.
type Fault struct {
	Method, PathContains string
	Status               int
	Body                 string
	Header               map[string]string
	Times                int
	Delay                time.Duration

	hits atomic.Int64
}

// Hits is how many requests the fault answered.
func (f *Fault) Hits() int { return int(f.hits.Load()) }

// Inject wraps h so that the faults answer before it does; of the faults a
// request matches, the first listed answers.
func Inject(faults ...*Fault) func(http.Handler) http.Handler {
	var inj fakehttp.Injector
	for i := len(faults) - 1; i >= 0; i-- { // the last injected is outermost
		inj.Inject(faults[i].fault())
	}
	return inj.Wrap
}

func (f *Fault) fault() fakehttp.Fault {
	match := func(r *http.Request) bool {
		return (f.Method == "" || f.Method == r.Method) && strings.Contains(r.URL.EscapedPath(), f.PathContains)
	}
	return fakehttp.When(match, f.Times, func(next http.Handler) http.Handler {
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for k, v := range f.Header {
				w.Header().Set(k, v)
			}
			if f.Status == 0 {
				next.ServeHTTP(w, r)
				return
			}
			w.WriteHeader(f.Status)
			io.WriteString(w, f.Body)
		})
		if f.Delay > 0 {
			h = fakehttp.Delay(f.Delay)(h)
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.hits.Add(1)
			h.ServeHTTP(w, r)
		})
	})
}

// BasicAuth is the Authorization header value of user and token, for tests
// that build requests by hand.
func BasicAuth(user, token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+token))
}
