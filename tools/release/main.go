package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	version := fs.String("version", "", "the release version, e.g. v0.1.0 (default: the pinned one)")
	commit := fs.String("commit", "HEAD", "the source commit")
	pinsPath := fs.String("pins", "resources/branchml/agents.sha256", "the pins file")
	out := fs.String("out", "dist", "where the archives are written (with -check: kept there only when -out is given)")
	goVersion := fs.String("go", runtime.Version(), "the Go toolchain to build with (GOTOOLCHAIN)")
	check := fs.Bool("check", false, "rebuild what the pins name and compare; change nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo, _ := os.Getwd()
	if *check {
		keep := ""
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "out" {
				keep = *out
			}
		})
		return checkPins(ctx, repo, *pinsPath, keep)
	}
	if *version == "" {
		raw, err := os.ReadFile(*pinsPath)
		if err == nil {
			if p, perr := ParsePins(string(raw)); perr == nil {
				*version = p.Version
			}
		}
	}
	if *version == "" {
		fmt.Fprintln(os.Stderr, "release: give -version vX.Y.Z")
		return 2
	}
	sha, err := ResolveCommit(ctx, repo, *commit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 2
	}
	if dirty, _ := gitOutput(ctx, repo, "status", "--porcelain", "--untracked-files=no"); dirty != "" && *commit == "HEAD" {
		fmt.Fprintln(os.Stderr, "release: note: uncommitted changes are not in the release; it is built from "+short(sha))
	}
	digests, err := Build(ctx, Options{Repo: repo, Commit: sha, Version: *version, Go: *goVersion, Out: *out, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 1
	}
	p := &Pins{Version: *version, URL: ReleaseURL(*version), Source: sha, Go: *goVersion, Digests: digests}
	var sums strings.Builder
	for _, arch := range Platforms {
		n := Archive(*version, arch)
		fmt.Fprintf(&sums, "%s  %s\n", digests[n], n)
	}
	if err := os.WriteFile(filepath.Join(*out, "SHA256SUMS"), []byte(sums.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 1
	}
	if err := writeFileAtomic(*pinsPath, []byte(p.Format())); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 1
	}
	fmt.Print(sums.String())
	fmt.Fprintf(os.Stderr, "release: %s pinned in %s (source %s, %s); commit it, and publish %s/* at %s\n",
		*version, *pinsPath, short(sha), *goVersion, *out, p.URL)
	return 0
}

// checkPins rebuilds the archives the pins name and reports every digest
// that differs; keep, when not "", receives the archives (make image uses
// them).
func checkPins(ctx context.Context, repo, pinsPath, keep string) int {
	raw, err := os.ReadFile(pinsPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 2
	}
	p, err := ParsePins(string(raw))
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "branchml-release-check-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	dest := tmp
	if keep != "" {
		dest = keep
	}
	got, err := Build(ctx, Options{Repo: repo, Commit: p.Source, Version: p.Version, Go: p.Go, Out: dest, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 1
	}
	if diff := Compare(p.Digests, got); diff != "" {
		fmt.Fprint(os.Stderr, diff)
		return 1
	}
	fmt.Printf("release: the pins of %s match a rebuild from %s\n", p.Version, short(p.Source))
	return 0
}

// Compare lists every archive whose pinned digest differs from the built one ("" when all match).
func Compare(pinned, built map[string]string) string {
	var b strings.Builder
	for name, want := range pinned {
		if got, ok := built[name]; !ok {
			fmt.Fprintf(&b, "%s is pinned but no release build makes it\n", name)
		} else if got != want {
			fmt.Fprintf(&b, "%s: pinned sha256 %s, a release build gives %s\n", name, want, got)
		}
	}
	for name := range built {
		if _, ok := pinned[name]; !ok {
			fmt.Fprintf(&b, "%s is built but not pinned\n", name)
		}
	}
	return b.String()
}

func gitOutput(ctx context.Context, repo string, args ...string) (string, error) {
	out, err := execCommand(ctx, repo, args...)
	return strings.TrimSpace(out), err
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
