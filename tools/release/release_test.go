package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPinnedDigestsMatchARelease rebuilds the archives the shipped pins
// name (their version, from their source commit, with their Go toolchain)
// and fails when a digest differs: no pin can be a placeholder or stale.
// The rebuild runs as its own process (`release -check`), so that gzip does
// not run under the race detector of this test binary.
func TestPinnedDigestsMatchARelease(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "resources/branchml/agents.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePins(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	if p.URL != ReleaseURL(p.Version) {
		t.Errorf("url %s, want %s", p.URL, ReleaseURL(p.Version))
	}
	want := map[string]bool{Archive(p.Version, "amd64"): true, Archive(p.Version, "arm64"): true}
	for name := range p.Digests {
		if !want[name] {
			t.Errorf("pinned archive %s is not one of the release's", name)
		}
	}
	if len(p.Digests) != len(want) {
		t.Errorf("pinned %d archives, want %d", len(p.Digests), len(want))
	}
	tool := filepath.Join(t.TempDir(), "release")
	build := exec.Command("go", "build", "-o", tool, "./tools/release")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./tools/release: %v\n%s", err, out)
	}
	check := exec.Command(tool, "-check")
	check.Dir = root
	var stdout, stderr bytes.Buffer
	check.Stdout, check.Stderr = &stdout, &stderr
	if err := check.Run(); err != nil {
		t.Fatalf("resources/branchml/agents.sha256 does not match a release build of %s from %s (make release): %v\n%s", p.Version, p.Source, err, stderr.String())
	}
	if got := stdout.String(); got != "release: the pins of "+p.Version+" match a rebuild from "+short(p.Source)+"\n" {
		t.Fatalf("release -check printed %q", got)
	}
}

func TestArchiveIsReproducibleAndPlain(t *testing.T) {
	epoch := time.Unix(1764547200, 0).UTC()
	var sums []string
	var data []byte
	for i, mtime := range []time.Time{time.Now(), time.Unix(1000, 0)} {
		dir := t.TempDir()
		for _, n := range []string{"branchml-train", "branchml", "branchml-build"} {
			p := filepath.Join(dir, n)
			if err := os.WriteFile(p, []byte("#!/bin/true "+n+"\n"), 0o700); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(p, mtime, mtime)
		}
		out := filepath.Join(t.TempDir(), "a.tar.gz")
		sum, err := writeArchive(out, dir, epoch)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sum)
		if i == 0 {
			data, _ = os.ReadFile(out)
		}
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds of the same files differ: %v", sums)
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() {
		t.Errorf("gzip header name %q time %v, want none", gz.Name, gz.ModTime)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: mode %o uid %d gid %d uname %q mtime %v", h.Name, h.Mode, h.Uid, h.Gid, h.Uname, h.ModTime)
		}
	}
	if strings.Join(names, " ") != "branchml branchml-build branchml-train" {
		t.Errorf("entries %v, want sorted binaries at the top level", names)
	}
}

func TestPinsRoundTripAndMissingFields(t *testing.T) {
	p := &Pins{Version: "v1.2.3", URL: ReleaseURL("v1.2.3"), Source: strings.Repeat("a", 40), Go: "go1.26.8",
		Digests: map[string]string{Archive("v1.2.3", "arm64"): strings.Repeat("2", 64), Archive("v1.2.3", "amd64"): strings.Repeat("1", 64)}}
	text := p.Format()
	if !strings.HasSuffix(text, "# version: v1.2.3\n# url: https://github.com/branchml/branchml/releases/download/v1.2.3/\n# source: "+
		strings.Repeat("a", 40)+"\n# go: go1.26.8\n#\n"+strings.Repeat("1", 64)+"  branchml-agents-v1.2.3-linux-amd64.tar.gz\n"+
		strings.Repeat("2", 64)+"  branchml-agents-v1.2.3-linux-arm64.tar.gz\n") {
		t.Fatalf("format:\n%s", text)
	}
	q, err := ParsePins(text)
	if err != nil || q.Version != p.Version || q.Source != p.Source || q.Go != p.Go || len(q.Digests) != 2 {
		t.Fatalf("parse: %+v, %v", q, err)
	}
	if _, err := ParsePins(strings.Replace(text, "# go: go1.26.8\n", "", 1)); err == nil || !strings.Contains(err.Error(), `"# go: …"`) {
		t.Errorf("missing go line: %v", err)
	}
	if _, err := Build(context.Background(), Options{Version: "0.1"}); err == nil || !strings.Contains(err.Error(), "want vMAJOR.MINOR.PATCH") {
		t.Errorf("bad version: %v", err)
	}
}

func TestCompare(t *testing.T) {
	if d := Compare(map[string]string{"a": "1"}, map[string]string{"a": "1"}); d != "" {
		t.Errorf("equal: %q", d)
	}
	d := Compare(map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "3", "c": "4"})
	for _, want := range []string{"a: pinned sha256 1, a release build gives 3", "b is pinned but no release build makes it", "c is built but not pinned"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
}
