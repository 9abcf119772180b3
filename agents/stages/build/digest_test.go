package build

import (
	"context"
	"strings"
	"testing"
)

// TestTestOnlyChangeKeepsDigest: a test-only change and a comment-only
// change run the tests again but keep the image's digest (and its revision
// label): nothing pushed, the lock records the new source hash only.
func TestTestOnlyChangeKeepsDigest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	e.cfg.Components = e.cfg.Components[:1] // hello
	res, err := Run(ctx, e.opts(t, "1111111111111111111111111111111111111111"))
	if err != nil {
		t.Fatal(err)
	}
	first := res.Components[0]
	pushes := e.reg.pushes.Load()

	for i, change := range []map[string]string{
		{"components/hello/hello_test.go": "package main\n\nimport \"testing\"\n\nfunc TestGreet(t *testing.T) {}\n\nfunc TestMore(t *testing.T) {}\n"},
		// The comment's text changes, not the lines of code (a comment that
		// moves code changes the binary's line table, so its content).
		{"internal/greet/greet.go": "package greet\n\n// Hello greets name politely.\nfunc Hello(name string) string { return \"hello, \" + name }\n"},
	} {
		writeFiles(t, e.root, change)
		commit := strings.Repeat(string(rune('2'+i)), 40)
		o := e.opts(t, commit)
		res, err := Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		c := res.Components[0]
		if c.Action != ActionBuilt || c.Tests != TestsPassed || !c.ImageUnchanged || c.Digest != first.Digest || c.Image != first.Image {
			t.Fatalf("change %d: %+v, want the first digest %s kept", i, c, first.Digest)
		}
		if !strings.Contains(c.Reason, "image content unchanged: the lock's image (revision 111111111111) is kept, nothing pushed") {
			t.Fatalf("reason %q", c.Reason)
		}
		if e.reg.pushes.Load() != pushes {
			t.Fatalf("change %d pushed", i)
		}
		if res.Summary(false) != "built 1 of 1 components (1 image unchanged), 0 unchanged" || !res.LockChanged || res.LockCommit == "" {
			t.Fatalf("summary %q, lock changed %v", res.Summary(false), res.LockChanged)
		}
		lock := e.lockFile(t)
		if !strings.Contains(lock, `"digest": "`+first.Digest+`"`) || !strings.Contains(lock, `"sourceHash": "`+hashOf(t, e, "hello")+`",
      "sourceCommit": "1111111111111111111111111111111111111111"`) || !strings.Contains(lock, `"sourceCommit": "`+commit+`",
  "registry"`) {
			t.Fatalf("lock after change %d:\n%s", i, lock)
		}
		// The same sources again: skipped.
		if res, err := Run(ctx, e.opts(t, commit)); err != nil || actions(res) != "hello=skipped" {
			t.Fatalf("again: %v %v", err, res)
		}
	}

	// A change of what the program does: a new digest, the new revision.
	writeFiles(t, e.root, map[string]string{"internal/greet/greet.go": "package greet\n\n// Hello greets name politely.\nfunc Hello(name string) string { return \"hi, \" + name }\n",
		"components/hello/hello_test.go": "package main\n\nimport \"testing\"\n\nfunc TestGreet(t *testing.T) {}\n"})
	res, err = Run(ctx, e.opts(t, "9999999999999999999999999999999999999999"))
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Components[0]; c.ImageUnchanged || c.Digest == first.Digest || e.reg.pushes.Load() != pushes+1 {
		t.Fatalf("a real change kept the digest: %+v", c)
	}
	img, _ := e.local.Pull(ctx, res.Components[0].Image)
	cf, _ := img.ConfigFile()
	if cf.Config.Labels["org.opencontainers.image.revision"] != "9999999999999999999999999999999999999999" {
		t.Fatalf("labels %v", cf.Config.Labels)
	}
}

// TestForceReportsLockTruthfully: --force rebuilds and tests everything,
// and, the images being the same, writes nothing and says so.
func TestForceReportsLockTruthfully(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	if _, err := Run(ctx, e.opts(t, "1111111111111111111111111111111111111111")); err != nil {
		t.Fatal(err)
	}
	before := e.lockFile(t)
	o := e.opts(t, "2222222222222222222222222222222222222222")
	o.Force = true
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if actions(res) != "hello=built,other=built" || res.LockChanged || res.LockCommit != "" || res.JUnit == "" {
		t.Fatalf("forced: %s, lock changed %v, commit %q, junit %q", actions(res), res.LockChanged, res.LockCommit, res.JUnit)
	}
	if e.lockFile(t) != before {
		t.Fatal("a forced rebuild to the same images rewrote the lock")
	}
}

func TestSourceURL(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/git/ml.git":                    "file:///srv/git/ml.git",
		"https://github.com/acme/ml":         "https://github.com/acme/ml",
		"git@github.com:acme/ml.git":         "ssh://git@github.com/acme/ml.git",
		"ssh://git@example.com:2222/ml.git":  "ssh://git@example.com:2222/ml.git",
		"file:///work/quickstart/remote.git": "file:///work/quickstart/remote.git",
		"/path with spaces/ml.git":           "file:///path%20with%20spaces/ml.git",
	} {
		if got, err := SourceURL(in); err != nil || got != want {
			t.Errorf("SourceURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ml.git", "relative/path", "https://"} {
		if got, err := SourceURL(bad); err == nil {
			t.Errorf("SourceURL(%q) = %q, want an error", bad, got)
		}
	}
}
