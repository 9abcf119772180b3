package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Platforms are the GOARCH values of the archives (all GOOS linux).
var Platforms = []string{"amd64", "arm64"}

// Module is the Go module path the -X version flag names.
const Module = "github.com/branchml/branchml"

// Pins is the content of resources/branchml/agents.sha256.
type Pins struct {
	// Version is the release ("v0.1.0"); URL the base the archives are downloaded from (ends in "/").
	Version, URL string
	// Source is the commit the archives are built from; Go the toolchain ("go1.26.8").
	Source, Go string
	// Digests maps an archive name to its lower-case hex sha256.
	Digests map[string]string
}

// Archive is the file name of the archive of version for GOARCH arch.
func Archive(version, arch string) string {
	return fmt.Sprintf("branchml-agents-%s-linux-%s.tar.gz", version, arch)
}

// ReleaseURL is the GitHub release download base of version.
func ReleaseURL(version string) string {
	return "https://github.com/branchml/branchml/releases/download/" + version + "/"
}

var (
	pinLine    = regexp.MustCompile(`^#\s*(version|url|source|go):\s*(\S+)\s*$`)
	digestLine = regexp.MustCompile(`^([0-9a-f]{64})\s+(\S+)$`)
	versionRe  = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
)

// ParsePins reads a pins file. Every field must be present: an error names the missing one.
func ParsePins(text string) (*Pins, error) {
	p := &Pins{Digests: map[string]string{}}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if m := pinLine.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "version":
				p.Version = m[2]
			case "url":
				p.URL = m[2]
			case "source":
				p.Source = m[2]
			case "go":
				p.Go = m[2]
			}
		} else if m := digestLine.FindStringSubmatch(line); m != nil {
			p.Digests[m[2]] = m[1]
		}
	}
	for name, v := range map[string]string{"version": p.Version, "url": p.URL, "source": p.Source, "go": p.Go} {
		if v == "" {
			return nil, fmt.Errorf("pins: no %q line", "# "+name+": …")
		}
	}
	if len(p.Digests) == 0 {
		return nil, errors.New("pins: no \"<sha256>  <archive>\" line")
	}
	return p, nil
}

// Format renders p as the pins file.
func (p *Pins) Format() string {
	var b strings.Builder
	b.WriteString(`# Pinned branchml agent archives, read by vars/branchmlAgent.groovy with
# libraryResource('branchml/agents.sha256') when the agents are not on PATH
# (a node without the agents image): it downloads the archive of its platform
# from the url below (or from BRANCHML_AGENTS_URL, a mirror) and checks its
# sha256. Written by 'make release' (tools/release), which builds the archives
# reproducibly from the source commit with the Go toolchain named here; a test
# (go test ./tools/release) rebuilds them and fails on another digest.
# Publish the archives of dist/ at the url before a library of this version
# is used on nodes without the agents image.
#
`)
	fmt.Fprintf(&b, "# version: %s\n# url: %s\n# source: %s\n# go: %s\n#\n", p.Version, p.URL, p.Source, p.Go)
	names := make([]string, 0, len(p.Digests))
	for n := range p.Digests {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", p.Digests[n], n)
	}
	return b.String()
}

// Options of Build.
type Options struct {
	// Repo is the git repository (a work tree) the source commit is read from.
	Repo string
	// Commit is the source commit; Version the release version.
	Commit, Version string
	// Go is the toolchain to build with ("go1.26.8"), set as GOTOOLCHAIN.
	Go string
	// Out receives the archives; Log progress lines (nil: none).
	Out string
	Log io.Writer
}

// Build builds the archive of every platform from o.Commit's tree into o.Out
// and returns their digests by archive name.
func Build(ctx context.Context, o Options) (map[string]string, error) {
	if !versionRe.MatchString(o.Version) {
		return nil, fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH, e.g. v0.1.0", o.Version)
	}
	src, err := os.MkdirTemp("", "branchml-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(src)
	if err := exportTree(ctx, o.Repo, o.Commit, src); err != nil {
		return nil, err
	}
	epoch, err := commitTime(ctx, o.Repo, o.Commit)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	digests := map[string]string{}
	for _, arch := range Platforms {
		bin := filepath.Join(src, ".bin", arch)
		if o.Log != nil {
			fmt.Fprintf(o.Log, "release: building %s linux/%s from %s with %s\n", o.Version, arch, short(o.Commit), o.Go)
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-mod=readonly",
			"-ldflags", "-s -w -buildid= -X "+Module+"/agents/cli.Version="+o.Version, "-o", bin+"/", "./agents/cmd/...")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOTOOLCHAIN="+o.Go, "GOFLAGS=", "GOAMD64=v1", "GOARM64=v8.0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build linux/%s: %v\n%s", arch, err, stderr.String())
		}
		name := Archive(o.Version, arch)
		sum, err := writeArchive(filepath.Join(o.Out, name), bin, epoch)
		if err != nil {
			return nil, err
		}
		digests[name] = sum
	}
	return digests, nil
}

// writeArchive packs the files of dir (sorted, mode 0755, owner 0, mtime
// epoch) into a gzip-compressed tar at path and returns its sha256.
func writeArchive(path, dir string, epoch time.Time) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "", fmt.Errorf("archive %s: no binaries in %s", path, dir)
	}
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(gz)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return "", err
		}
		hdr := &tar.Header{Name: n, Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", err
		}
		if _, err := tw.Write(data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return hex.EncodeToString(sum[:]), nil
}

// exportTree writes commit's tree of repo into dir (git archive | tar).
func exportTree(ctx context.Context, repo, commit, dir string) error {
	cmd := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", commit)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	tr := tar.NewReader(bufio.NewReader(out))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			cmd.Wait()
			return fmt.Errorf("git archive %s: %v %s", commit, err, stderr.String())
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(os.PathSeparator)) {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %s in %s: %v: %s (is the commit in this clone? a shallow clone lacks it: git fetch --unshallow)", commit, repo, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func commitTime(ctx context.Context, repo, commit string) (time.Time, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "show", "-s", "--format=%ct", commit).Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("time of commit %s: %w", commit, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(n, 0).UTC(), nil
}

// ResolveCommit is the full SHA of rev in repo.
func ResolveCommit(ctx context.Context, repo, rev string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--verify", rev+"^{commit}").Output()
	if err != nil {
		return "", fmt.Errorf("resolve %s in %s: %w", rev, repo, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func execCommand(ctx context.Context, repo string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...).Output()
	return string(out), err
}
