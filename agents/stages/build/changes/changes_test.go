package changes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/config"
)

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func repo(t *testing.T) string {
	root := t.TempDir()
	write(t, root, map[string]string{
		"go.mod":                              "module example.com/ml\n\ngo 1.22\n",
		"internal/shared/shared.go":           "package shared\n\nconst Greeting = \"hi\"\n",
		"internal/unused/unused.go":           "package unused\n",
		"components/a/main.go":                "package main\n\nimport \"example.com/ml/internal/shared\"\n\nfunc main() { println(shared.Greeting) }\n",
		"components/a/testdata/in.txt":        "x\n",
		"components/a/a_test.go":              "package main\n\nimport \"testing\"\n\nfunc TestA(t *testing.T) {}\n",
		"components/a/NOTES.md":               "no build reads this\n",
		"internal/shared/banner.go":           "package shared\n\nimport _ \"embed\"\n\n//go:embed static/banner.txt\nvar Banner string\n",
		"internal/shared/static/banner.txt":   "welcome\n",
		"internal/shared/shared_arm64.go":     "package shared\n\nconst Arch = \"arm64\"\n",
		"internal/shared/zero.syso":           "\x00",
		"internal/shared/shared_test.go":      "package shared\n\nimport (\n\t\"os\"\n\t\"testing\"\n\n\t\"example.com/ml/internal/testutil\"\n)\n\nfunc TestGolden(t *testing.T) { os.ReadFile(\"testdata/golden.txt\"); testutil.Help() }\n",
		"internal/testutil/testutil.go":       "package testutil\n\n// Help is imported by tests only.\nfunc Help() {}\n",
		"internal/shared/testdata/golden.txt": "hi\n",
		"internal/unused/unused_test.go":      "package unused\n",
		"components/b/main.go":                "package main\n\nfunc main() {}\n",
		"components/web/Dockerfile":           "FROM scratch\n",
		"components/web/index.html":           "<p>hi</p>\n",
		"README.md":                           "not hashed\n",
	})
	return root
}

var (
	compA   = config.Component{Name: "a", Path: "components/a", Kind: "go", Image: "ml/a"}
	compB   = config.Component{Name: "b", Path: "components/b", Kind: "go", Image: "ml/b"}
	compWeb = config.Component{Name: "web", Path: "components/web", Kind: "dockerfile", Image: "ml/web"}
)

func TestHashFilesAndValue(t *testing.T) {
	ctx := context.Background()
	root := repo(t)
	a, err := Hash(ctx, root, compA)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(a.Files, ","), "components/a/a_test.go,components/a/main.go,components/a/testdata/in.txt,go.mod,"+
		"internal/shared/banner.go,internal/shared/shared.go,internal/shared/shared_test.go,internal/shared/static/banner.txt,"+
		"internal/shared/testdata/golden.txt,internal/shared/zero.syso,internal/testutil/testutil.go"; got != want {
		t.Fatalf("files of a = %s, want %s", got, want)
	}
	if got := strings.Join(a.Packages, ","); got != "example.com/ml/components/a,example.com/ml/internal/shared" {
		t.Fatalf("packages of a = %s", got)
	}
	if len(a.Platforms) != 1 || a.Platforms[0] != DefaultPlatform() {
		t.Fatalf("platforms %v", a.Platforms)
	}
	if a.Package != "./components/a" || a.ModuleDir != root {
		t.Fatalf("package %q module %q", a.Package, a.ModuleDir)
	}
	b, err := Hash(ctx, root, compB)
	if err != nil {
		t.Fatal(err)
	}
	// The documented formula, recomputed.
	h := sha256.New()
	fmt.Fprintf(h, "kind=go\nbase=\nbinary=\ntest=[]\ndockerfile=\ngo=%s\nplatforms=%s\n", b.GoVersion, DefaultPlatform())
	for _, f := range []string{"components/b/main.go", "go.mod"} {
		raw, _ := os.ReadFile(filepath.Join(root, f))
		sum := sha256.Sum256(raw)
		fmt.Fprintf(h, "%s\x00-\x00%s\n", f, hex.EncodeToString(sum[:]))
	}
	if want := "sha256:" + hex.EncodeToString(h.Sum(nil)); b.Hash != want {
		t.Fatalf("hash of b = %s, want %s", b.Hash, want)
	}
	if !strings.HasPrefix(b.GoVersion, "go1.") {
		t.Fatalf("go version %q", b.GoVersion)
	}
}

func TestOnlyDependentsChange(t *testing.T) {
	ctx := context.Background()
	root := repo(t)
	hash := func(c config.Component) string {
		s, err := Hash(ctx, root, c)
		if err != nil {
			t.Fatal(err)
		}
		return s.Hash
	}
	a0, b0, w0 := hash(compA), hash(compB), hash(compWeb)
	if a0 != hash(compA) {
		t.Fatal("hash is not stable")
	}
	write(t, root, map[string]string{"internal/shared/shared.go": "package shared\n\nconst Greeting = \"hello\"\n"})
	a1, b1 := hash(compA), hash(compB)
	if a1 == a0 || b1 != b0 {
		t.Fatalf("shared package changed: a changed %v (want true), b changed %v (want false)", a1 != a0, b1 != b0)
	}
	write(t, root, map[string]string{"internal/unused/unused.go": "package unused\n\nvar X = 1\n", "README.md": "changed\n"})
	if hash(compA) != a1 || hash(compB) != b0 {
		t.Fatal("a change to an unused package or the README changed a hash")
	}
	os.Chmod(filepath.Join(root, "components/b/main.go"), 0o755)
	if hash(compB) == b0 {
		t.Fatal("the executable bit is not hashed")
	}
	write(t, root, map[string]string{"components/web/index.html": "<p>hello</p>\n"})
	if hash(compWeb) == w0 {
		t.Fatal("dockerfile component: a change in its tree did not change the hash")
	}
	withBase := compB
	withBase.Base = "gcr.io/distroless/static"
	if hash(withBase) == hash(compB) {
		t.Fatal("the base image is not part of the hash")
	}
}

// TestHashReadsWhatTheBuildReads: an embedded file in a subdirectory of a
// shared package, a test's testdata, assembly and a file of another target
// platform count; a file no build reads (cgo ones with CGO_ENABLED=0 among
// them) does not.
func TestHashReadsWhatTheBuildReads(t *testing.T) {
	ctx := context.Background()
	root := repo(t)
	hash := func(c config.Component, opts ...Option) string {
		t.Helper()
		s, err := Hash(ctx, root, c, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return s.Hash
	}
	multi := []Option{WithPlatforms("linux/amd64", "linux/arm64")}
	a0, am0, b0 := hash(compA), hash(compA, multi...), hash(compB)
	if am0 == a0 {
		t.Fatal("the platforms are not part of the hash")
	}
	for _, c := range []struct {
		file, content string
		changes       bool // the hash of a (for its platform)
		multiChanges  bool // for linux/amd64+linux/arm64
	}{
		{"internal/shared/static/banner.txt", "welcome back\n", true, true},
		{"internal/shared/testdata/golden.txt", "hello\n", true, true},
		// A package only the tests of a shared package import.
		{"internal/testutil/testutil.go", "package testutil\n\n// Help helps.\nfunc Help() {}\n", true, true},
		{"components/a/NOTES.md", "still not read\n", false, false},
		{"internal/shared/shared_arm64.go", "package shared\n\nconst Arch = \"aarch64\"\n", DefaultPlatform() == "linux/arm64", true},
		{"internal/shared/static/unembedded.txt", "not matched by the pattern\n", false, false},
		// Assembly is compiled into the package.
		{"internal/shared/nothing.s", "TEXT ·nothing(SB),0,$0-0\n\tRET\n", true, true},
		// cgo files and C sources are not: the tests and the images are
		// built with CGO_ENABLED=0, and go list leaves them out then.
		{"internal/shared/cgo.go", "package shared\n\n// int one(void);\nimport \"C\"\n", false, false},
		{"internal/shared/one.c", "int one(void) { return 1; }\n", false, false},
	} {
		write(t, root, map[string]string{c.file: c.content})
		a1, am1 := hash(compA), hash(compA, multi...)
		if (a1 != a0) != c.changes || (am1 != am0) != c.multiChanges {
			t.Errorf("%s: a's hash changed %v (want %v), for two platforms %v (want %v)", c.file, a1 != a0, c.changes, am1 != am0, c.multiChanges)
		}
		a0, am0 = a1, am1
		if hash(compB) != b0 {
			t.Errorf("%s changed the hash of b, which does not import it", c.file)
		}
	}
	if _, err := Hash(ctx, root, compA, WithPlatforms("linux")); err == nil || !strings.Contains(err.Error(), `platform "linux": want os/arch`) {
		t.Errorf("bad platform: %v", err)
	}
}

func TestHashErrors(t *testing.T) {
	ctx := context.Background()
	root := repo(t)
	cases := []struct {
		c    config.Component
		want string
	}{
		{config.Component{Name: "x", Path: "nope", Kind: "go"}, `component x: path "nope" is not a directory`},
		{config.Component{Name: "x", Path: "components/b", Kind: "rust"}, `component x: kind "rust" is unknown`},
		{config.Component{Name: "x", Path: "components/b", Kind: "dockerfile"}, `component x: Dockerfile "components/b/Dockerfile"`},
	}
	for _, c := range cases {
		_, err := Hash(ctx, root, c.c)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
	os.Remove(filepath.Join(root, "go.mod"))
	if _, err := Hash(ctx, root, compB); err == nil || !strings.Contains(err.Error(), "no go.mod") {
		t.Errorf("err = %v, want no go.mod", err)
	}
}

func TestExclude(t *testing.T) {
	ctx := context.Background()
	root := repo(t)
	whole := config.Component{Name: "all", Path: ".", Kind: "dockerfile", Dockerfile: "components/web/Dockerfile"}
	before, err := Hash(ctx, root, whole, WithExclude(filepath.Join(root, "build/junit.xml")))
	if err != nil {
		t.Fatal(err)
	}
	write(t, root, map[string]string{"build/junit.xml": "<testsuites/>\n"})
	after, err := Hash(ctx, root, whole, WithExclude(filepath.Join(root, "build/junit.xml")))
	if err != nil || after.Hash != before.Hash {
		t.Fatalf("an excluded file changed the hash: %v", err)
	}
	with, _ := Hash(ctx, root, whole)
	if with.Hash == before.Hash {
		t.Fatal("without the exclusion the new file should change the hash")
	}
}
