package lineage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Show writes the chain of rec as text, one link a line: commit → config →
// pipeline version → images → run → data snapshot → model snapshot → model
// version, then metrics and who started it.
func Show(w io.Writer, rec *Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "lineage %s (schema %d, %s backend, recorded %s)\n", rec.ID, rec.SchemaVersion, rec.Backend, ts(rec.CreatedAt))
	src := rec.Source
	line := func(first bool, label, format string, args ...any) {
		arrow := "  → "
		if first {
			arrow = "    "
		}
		fmt.Fprintf(&b, "%s%-15s %s\n", arrow, label, fmt.Sprintf(format, args...))
	}
	where := src.Branch
	if src.Repository != "" {
		where += " of " + src.Repository
	}
	if src.ChangeID != "" {
		where += fmt.Sprintf(" (pull request %s head)", src.ChangeID)
	}
	line(true, "commit", "%s on %s", src.Commit, where)
	if pr := rec.PullRequest; pr != nil {
		approved := "approved by " + strings.Join(pr.Approvers, ", ")
		if len(pr.Approvers) == 0 {
			approved = "not approved"
		}
		line(false, "pull request", "#%d %q by %s, %s, merged by %s", pr.Number, pr.Title, or(pr.Author, "-"), approved, or(pr.MergedBy, "-"))
	}
	line(false, "config", "%s %s", or(rec.Config.Path, "branchml.yaml"), rec.Config.Hash)
	p := rec.Pipeline
	line(false, "pipeline", "%s (%s) version %s (%s), spec %s", or(p.Name, "-"), p.ID, or(p.VersionName, "-"), p.VersionID, or(p.SpecHash, "-"))
	if len(rec.Images) == 0 {
		line(false, "images", "(none recorded)")
	}
	for i, im := range rec.Images {
		label := ""
		if i == 0 {
			label = "images"
		}
		if i == 0 {
			line(false, label, "%s %s", im.Component, im.Image)
		} else {
			fmt.Fprintf(&b, "    %-15s %s %s\n", label, im.Component, im.Image)
		}
	}
	r := rec.Run
	line(false, "run", "%s in experiment %s: %s, %s → %s", r.ID, or(r.Experiment, "-"), or(r.State, "-"), ts(r.StartedAt), ts(r.FinishedAt))
	if len(r.Parameters) > 0 {
		fmt.Fprintf(&b, "    %-15s parameters %s\n", "", flat(r.Parameters))
	}
	line(false, "data snapshot", "%s", snap(rec.Data))
	line(false, "model snapshot", "%s", snap(rec.Model.Snapshot))
	line(false, "model version", "%s version %d at %s", or(rec.Model.Name, "-"), rec.Model.Version, or(rec.Model.Path, "-"))
	if len(rec.Metrics) > 0 {
		fmt.Fprintf(&b, "    %-15s %s\n", "metrics", flat(headline(rec.Metrics)))
	}
	if rec.StartedBy.User != "" || rec.StartedBy.BuildURL != "" {
		fmt.Fprintf(&b, "    %-15s %s %s\n", "started by", or(rec.StartedBy.User, "-"), rec.StartedBy.BuildURL)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func snap(s SnapshotRef) string {
	out := s.Snapshot + " of volume " + s.Volume
	if s.Namespace != "" {
		out += " in namespace " + s.Namespace
	}
	if s.Handle != "" {
		out += ", handle " + s.Handle
	}
	if !s.CreatedAt.IsZero() {
		out += ", taken " + ts(s.CreatedAt)
	}
	return out
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// flat renders a JSON-like map as "a.b=1 c=x", keys sorted.
func flat(m map[string]any) string {
	kv := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, x := range t {
				key := k
				if prefix != "" {
					key = prefix + "." + k
				}
				walk(key, x)
			}
		case string:
			kv[prefix] = t
		default:
			js, _ := json.Marshal(t)
			kv[prefix] = string(js)
		}
	}
	walk("", m)
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + kv[k]
	}
	return strings.Join(parts, " ")
}

// Graph formats.
const (
	FormatDOT     = "dot"
	FormatMermaid = "mermaid"
)

type node struct{ id, label string }

type graph struct {
	nodes []node
	seen  map[string]bool
	edges [][2]string
	eseen map[[2]string]bool
}

func (g *graph) node(key, label string) string {
	sum := sha256.Sum256([]byte(key))
	id := "n" + hex.EncodeToString(sum[:])[:10]
	if !g.seen[id] {
		g.seen[id] = true
		g.nodes = append(g.nodes, node{id, label})
	}
	return id
}

func (g *graph) edge(a, b string) {
	e := [2]string{a, b}
	if !g.eseen[e] {
		g.eseen[e] = true
		g.edges = append(g.edges, e)
	}
}

// Graph writes the lineage of recs as one graph in format "dot" (Graphviz)
// or "mermaid" (a flowchart). Nodes shared by several records (a commit,
// a pipeline version, an image, a data snapshot) appear once.
func Graph(w io.Writer, recs []*Record, format string) error {
	if format != FormatDOT && format != FormatMermaid {
		return fmt.Errorf("graph format %q: use dot or mermaid", format)
	}
	g := &graph{seen: map[string]bool{}, eseen: map[[2]string]bool{}}
	for _, r := range recs {
		commit := g.node("commit:"+r.Source.Commit, "commit "+short(r.Source.Commit))
		cfg := g.node("config:"+r.Config.Hash, "config "+short(strings.TrimPrefix(r.Config.Hash, "sha256:")))
		pipe := g.node("pipeline:"+r.Pipeline.ID+"/"+r.Pipeline.VersionID, "pipeline "+or(r.Pipeline.Name, r.Pipeline.ID)+"\\nversion "+or(r.Pipeline.VersionName, r.Pipeline.VersionID))
		run := g.node("run:"+r.Run.ID, "run "+r.Run.ID)
		data := g.node("snap:"+r.Data.Namespace+"/"+r.Data.Snapshot, "data snapshot\\n"+r.Data.Snapshot)
		msnap := g.node("snap:"+r.Model.Snapshot.Namespace+"/"+r.Model.Snapshot.Snapshot, "model snapshot\\n"+r.Model.Snapshot.Snapshot)
		model := g.node(fmt.Sprintf("model:%s/%d", r.Model.Name, r.Model.Version), fmt.Sprintf("model %s v%d", r.Model.Name, r.Model.Version))
		g.edge(commit, cfg)
		g.edge(cfg, pipe)
		for _, im := range r.Images {
			img := g.node("image:"+im.Digest, "image "+im.Component+"\\n"+short(strings.TrimPrefix(im.Digest, "sha256:")))
			g.edge(pipe, img)
			g.edge(img, run)
		}
		if len(r.Images) == 0 {
			g.edge(pipe, run)
		}
		g.edge(data, run)
		g.edge(run, msnap)
		g.edge(msnap, model)
	}
	var b strings.Builder
	if format == FormatDOT {
		b.WriteString("digraph lineage {\n  rankdir=LR;\n  node [shape=box];\n")
		for _, n := range g.nodes {
			fmt.Fprintf(&b, "  %s [label=%s];\n", n.id, dotQuote(n.label))
		}
		for _, e := range g.edges {
			fmt.Fprintf(&b, "  %s -> %s;\n", e[0], e[1])
		}
		b.WriteString("}\n")
	} else {
		b.WriteString("flowchart LR\n")
		for _, n := range g.nodes {
			fmt.Fprintf(&b, "  %s[\"%s\"]\n", n.id, mermaidText(n.label))
		}
		for _, e := range g.edges {
			fmt.Fprintf(&b, "  %s --> %s\n", e[0], e[1])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// dotQuote quotes a label for DOT; "\n" sequences stay line breaks.
func dotQuote(s string) string {
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

// mermaidText escapes a label for a Mermaid quoted node ("\n" → <br/>).
func mermaidText(s string) string {
	s = strings.ReplaceAll(s, `"`, "#quot;")
	return strings.ReplaceAll(s, `\n`, "<br/>")
}

// headline keeps the model's own accuracy and AUC per split when metrics
// has the shape of the example's metrics.json (the whole file, baselines
// included, stays in the record); other shapes are shown whole.
func headline(m map[string]any) map[string]any {
	out := map[string]any{}
	for _, split := range []string{"train", "validation", "test"} {
		sm, ok := m[split].(map[string]any)
		if !ok {
			continue
		}
		keep := map[string]any{}
		for _, k := range []string{"accuracy", "auc"} {
			if v, ok := sm[k]; ok {
				keep[k] = v
			}
		}
		if len(keep) > 0 {
			out[split] = keep
		}
	}
	if len(out) == 0 {
		return m
	}
	return out
}
