package records

import (
	"errors"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/internal/agent"
)

func TestParseJSONCorruptedIsStateError(t *testing.T) {
	good := `{"apiVersion":"branchml.dev/v1","kind":"ComponentsLock","components":{"train":{"image":"r/t@sha256:00"}}}`
	var lock ComponentsLock
	if err := ParseJSON("build-components:"+ComponentsLockPath, []byte(good), &lock); err != nil || lock.Components["train"].Image != "r/t@sha256:00" {
		t.Fatalf("good lock: %+v, %v", lock, err)
	}
	for name, raw := range map[string]string{
		"truncated":  good[:len(good)/2],
		"empty":      "",
		"two values": good + good,
		"other kind": `{"kind":"RunRecord"}`,
		"not object": `[1]`,
	} {
		file := "build-components:" + ComponentsLockPath
		err := ParseJSON(file, []byte(raw), &ComponentsLock{})
		var se *agent.StateError
		if !errors.As(err, &se) || se.File != file || agent.CodeOf(agent.Failed("read", err, "other fix")) != agent.ExitUsage ||
			agent.FixOf(agent.Failed("read", err, "other fix")) != Repair(file) || !strings.HasPrefix(err.Error(), "corrupted state: "+file+": ") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if f := Repair("training:" + TrainingLockPath); !strings.Contains(f, "copy the newest record of .branchml/runs/ on training") {
		t.Errorf("training lock repair: %s", f)
	}
}

// ParseJSON never panics, and what it refuses is always corrupted state.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{"kind":"RunRecord","runId":"r","state":"SUCCEEDED"}`, `{"kind":"Run`, ``, `null`, `[]`, `{"model":{"version":"x"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var rec RunRecord
		err := ParseJSON("training:"+TrainingLockPath, raw, &rec)
		var se *agent.StateError
		if err != nil && (!errors.As(err, &se) || agent.CodeOf(err) != agent.ExitUsage) {
			t.Fatalf("%T %v", err, err)
		}
	})
}
