package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/branchml/branchml/agents/internal/agent"
)

// ParseJSON decodes raw, the content of the record at file, into v. file
// is "<branch>:<path>" for a record read from a branch (git's rev:path), or
// a local path. A record that is empty, truncated, not one JSON object, or
// of another kind than v's (when v has a Kind field and raw names one) is
// corrupted state: a *agent.StateError naming file and how to repair it,
// which every agent answers with exit code 2. Unknown fields are allowed
// (a newer agent may have written them).
func ParseJSON(file string, raw []byte, v any) error {
	err := decodeOne(raw, v)
	if err == nil {
		err = checkKind(raw, v)
	}
	if err != nil {
		return &agent.StateError{File: file, Err: err, Fix: Repair(file)}
	}
	return nil
}

func decodeOne(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return errors.New("the file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a JSON record: %w", err)
	}
	if dec.More() {
		return errors.New("not one JSON record: more follows it")
	}
	return nil
}

// checkKind compares the kind raw names with the Kind v was decoded into
// (records of this package carry one, e.g. "ComponentsLock").
func checkKind(raw []byte, v any) error {
	want, ok := kindOf[fmt.Sprintf("%T", v)]
	if !ok {
		return nil
	}
	var k struct {
		Kind string `json:"kind"`
	}
	_ = json.Unmarshal(raw, &k)
	if k.Kind != "" && k.Kind != want {
		return fmt.Errorf("kind %q, want %q", k.Kind, want)
	}
	return nil
}

var kindOf = map[string]string{
	"*records.ComponentsLock": "ComponentsLock",
	"*records.PipelineLock":   "PipelineLock",
	"*records.RunRecord":      "RunRecord",
	"*records.DeployStatus":   "DeployStatus",
	"*records.DeploySpec":     "DeploySpec",
}

// Repair says how to repair the record at file ("<branch>:<path>" or a
// local path): restore its last good version from the branch's history,
// or let the stage that owns it write it again, in ways that lose nothing.
func Repair(file string) string {
	branch, p, onBranch := strings.Cut(file, ":")
	if !onBranch {
		return "restore " + file + " from a backup, or remove it if it is only a cache, then run again"
	}
	restore := fmt.Sprintf("restore the last good version from the history of %s (git log -p %s -- %s), commit it to %s", branch, branch, p, branch)
	switch {
	case p == ComponentsLockPath:
		return restore + ", then run again; or delete the file on " + branch + " and rerun branchml-build there, which rebuilds and rewrites it"
	case p == PipelineLockPath:
		return restore + ", then run again; or rerun branchml-pipeline on " + branch + ": it finds the uploaded version by its spec hash and rewrites the lock"
	case p == TrainingLockPath:
		return "copy the newest record of " + RunsDir + "/ on " + branch + " over " + p + " (it is the latest run record), or " + restore + "; then run again"
	case strings.HasPrefix(p, RunsDir+"/"), strings.HasPrefix(p, LineageDir+"/"):
		return restore + ", then run again"
	case p == DeployStatusPath:
		return restore + ", then run again (branchml-deploy status shows what serves)"
	case path.Base(p) == path.Base(DeploySpecPath):
		return "fix " + p + " on " + branch + " (revert the commit that broke it), then run again"
	}
	return restore + ", then run again"
}
