package deploy

import (
	"fmt"
	"strings"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/records"
)

// Weight is the percent of requests variant v of s takes: the canary its
// CanaryWeight, the stable the rest (100 when no canary runs).
func Weight(s serving.State, v serving.Variant) int {
	switch {
	case v == serving.Canary:
		return s.CanaryWeight
	case s.Get(serving.Canary) == nil:
		return 100
	}
	return 100 - s.CanaryWeight
}

// Headline is the result in one line: the model, the phase and what
// serves, e.g. "djia30: Succeeded; stable v2 (v2 promoted after 4 steps)",
// or "djia30: Succeeded (recorded), not serving: no model server runs; the
// status records stable v2" when nothing serves.
func (r *Result) Headline() string {
	model := r.Status.Model
	if model == "" {
		model = r.Serving.Model
	}
	st := r.Status
	stable, canary := r.Serving.Get(serving.Stable), r.Serving.Get(serving.Canary)
	if r.DryRun {
		h := model + ": plan (dry run, nothing changed)"
		if st.Phase != "" {
			h += fmt.Sprintf("; recorded %s", st.Phase)
		}
		if stable == nil && canary == nil {
			h += "; not serving"
		}
		return h
	}
	if stable == nil && canary == nil {
		if st.Phase == "" {
			return model + ": not serving: no model server runs and no deploy status was recorded"
		}
		h := fmt.Sprintf("%s: %s (recorded), not serving: no model server runs", model, st.Phase)
		if st.StableVersion > 0 {
			h += fmt.Sprintf("; the status records stable v%d", st.StableVersion)
		}
		return h
	}
	h := model + ": "
	if st.Phase == "" {
		h += "no deploy status recorded"
	} else {
		h += st.Phase
	}
	if stable != nil {
		h += fmt.Sprintf("; stable v%d", stable.Model.Version)
	}
	if canary != nil {
		h += fmt.Sprintf(", canary v%d at %d%%", canary.Model.Version, r.Serving.CanaryWeight)
	}
	if st.Message != "" {
		h += " (" + st.Message + ")"
	}
	return h
}

// Text is the result for people, several lines: the headline, what serves
// which version at which weight, the recorded status, the plan (what was or
// would be done) and the history, one line per event. Zero times are left
// out.
func (r *Result) Text() string {
	var b strings.Builder
	b.WriteString(r.Headline())
	b.WriteByte('\n')

	// What serves.
	if len(r.Serving.Variants) == 0 {
		b.WriteString("serving: nothing (no model server runs)\n")
	} else {
		b.WriteString("serving")
		var where []string
		if r.Serving.Backend != "" {
			where = append(where, r.Serving.Backend)
		}
		if r.Serving.Endpoint != "" {
			where = append(where, r.Serving.Endpoint)
		}
		if len(where) > 0 {
			b.WriteString(" (" + strings.Join(where, ", ") + ")")
		}
		b.WriteString(":\n")
		for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
			vs := r.Serving.Get(v)
			if vs == nil {
				continue
			}
			line := fmt.Sprintf("  %-6s %s v%d at %d%%", v, vs.Model.Name, vs.Model.Version, Weight(r.Serving, v))
			var extra []string
			if vs.PID > 0 {
				extra = append(extra, fmt.Sprintf("pid %d", vs.PID))
			} else if vs.Replicas > 0 {
				extra = append(extra, fmt.Sprintf("%d replicas", vs.Replicas))
			}
			if vs.Endpoint != "" {
				extra = append(extra, vs.Endpoint)
			}
			if !vs.Since.IsZero() {
				extra = append(extra, "since "+vs.Since.UTC().Format(time.RFC3339))
			}
			if len(extra) > 0 {
				line += " (" + strings.Join(extra, ", ") + ")"
			}
			b.WriteString(line + "\n")
		}
	}

	for _, o := range r.Serving.Orphans {
		fmt.Fprintf(&b, "  orphan %s v%d (pid %d, %s): runs but nothing routes to it (its serving plane died); the next plane stops it\n", o.Model.Name, o.Model.Version, o.PID, o.Endpoint)
	}
	// The status.
	st := r.Status
	if st.Phase == "" {
		b.WriteString("status: none recorded\n")
	} else {
		label := "status"
		if r.DryRun {
			label = "recorded status"
		}
		line := fmt.Sprintf("%s: %s", label, st.Phase)
		if st.StableVersion > 0 {
			line += fmt.Sprintf(", stable v%d", st.StableVersion)
		}
		if st.CanaryVersion > 0 {
			line += fmt.Sprintf(", canary v%d at %d%%", st.CanaryVersion, st.CanaryWeight)
		}
		if st.SourceCommit != "" {
			line += ", commit " + short(st.SourceCommit)
		}
		if !st.UpdatedAt.IsZero() {
			line += ", updated " + st.UpdatedAt.UTC().Format(time.RFC3339)
		}
		b.WriteString(line + "\n")
		if st.Message != "" {
			b.WriteString("  " + st.Message + "\n")
		}
	}

	// The plan.
	if len(r.Plan) > 0 {
		if r.DryRun {
			b.WriteString("would:\n")
		} else {
			b.WriteString("done:\n")
		}
		for _, p := range r.Plan {
			b.WriteString("  - " + p + "\n")
		}
	}
	if r.WriteBack != "" {
		b.WriteString("status written back: " + short(r.WriteBack) + "\n")
	}

	// The history.
	if n := len(st.History); n > 0 {
		fmt.Fprintf(&b, "history (%d events, oldest first):\n", n)
		for _, ev := range st.History {
			b.WriteString("  " + eventLine(ev) + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// eventLine is one history event: time (when known), version, weight,
// event and message.
func eventLine(ev records.DeployEvent) string {
	var parts []string
	if !ev.Time.IsZero() {
		parts = append(parts, ev.Time.UTC().Format(time.RFC3339))
	}
	parts = append(parts, fmt.Sprintf("v%d", ev.Version), fmt.Sprintf("%3d%%", ev.Weight), fmt.Sprintf("%-15s", ev.Event))
	line := strings.Join(parts, "  ")
	if ev.Message != "" {
		line += "  " + ev.Message
	}
	if ev.By != "" {
		line += " (by " + ev.By + ")"
	}
	return strings.TrimRight(line, " ")
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// HistoryText is the deploy history for people: a header line, then one
// line per event, oldest first (time, version, weight, event, message).
func HistoryText(model string, h []records.DeployEvent) string {
	if model == "" {
		model = "the model"
	}
	if len(h) == 0 {
		return model + ": no deploy history recorded"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d events, oldest first; served as stable: %s\n", model, len(h), versionList(ServedVersions(h)))
	for _, ev := range h {
		b.WriteString("  " + eventLine(ev) + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
