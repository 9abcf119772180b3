package imagecache

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func layer(t testing.TB, ents ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Size: int64(len(e.body))}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUnpackFilesLinksAndWhiteouts(t *testing.T) {
	dir := t.TempDir()
	l1 := layer(t,
		entry{name: "./", typ: tar.TypeDir, mode: 0o755},
		entry{name: "/ko-app/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "/ko-app/train", typ: tar.TypeReg, body: "#bin", mode: 0o755},
		entry{name: "etc/old.conf", typ: tar.TypeReg, body: "old"},
		entry{name: "etc/keep.conf", typ: tar.TypeReg, body: "keep"},
		entry{name: "var/cache/a", typ: tar.TypeReg, body: "a"},
		entry{name: "var/cache/b", typ: tar.TypeReg, body: "b"},
		entry{name: "bin/train", typ: tar.TypeSymlink, link: "../ko-app/train"},
		entry{name: "bin/hard", typ: tar.TypeLink, link: "/ko-app/train"},
	)
	if err := Unpack(dir, l1); err != nil {
		t.Fatal(err)
	}
	l2 := layer(t,
		entry{name: "etc/.wh.old.conf", typ: tar.TypeReg},
		entry{name: "var/cache/.wh..wh..opq", typ: tar.TypeReg},
		entry{name: "var/cache/c", typ: tar.TypeReg, body: "c"},
		entry{name: "etc/keep.conf", typ: tar.TypeReg, body: "new"},
	)
	if err := Unpack(dir, l2); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "bin/train")); got != "#bin" {
		t.Errorf("symlink reads %q, want #bin", got)
	}
	if got := read(t, filepath.Join(dir, "bin/hard")); got != "#bin" {
		t.Errorf("hard link reads %q, want #bin", got)
	}
	fi, err := os.Stat(filepath.Join(dir, "ko-app/train"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("ko-app/train mode = %v, %v; want 0755", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc/old.conf")); !os.IsNotExist(err) {
		t.Errorf("whiteout left etc/old.conf: %v", err)
	}
	if got := read(t, filepath.Join(dir, "etc/keep.conf")); got != "new" {
		t.Errorf("etc/keep.conf = %q, want new", got)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "var/cache"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "c" {
		t.Errorf("var/cache after opaque whiteout = %v, want [c]", names)
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	cases := []struct {
		name   string
		ents   []entry
		reason string
	}{
		{"dotdot", []entry{{name: "../evil", typ: tar.TypeReg, body: "x"}}, `escapes the root through ".."`},
		{"dotdot inside", []entry{{name: "a/../../evil", typ: tar.TypeReg, body: "x"}}, `escapes the root through ".."`},
		{"absolute symlink", []entry{{name: "etc/passwd", typ: tar.TypeSymlink, link: "/etc/passwd"}}, `absolute symbolic link to "/etc/passwd" would point outside the image root`},
		{"relative symlink out", []entry{{name: "a/b", typ: tar.TypeSymlink, link: "../../outside"}}, `symbolic link to "../../outside" points outside the image root`},
		{"hardlink out", []entry{{name: "a", typ: tar.TypeLink, link: "../outside"}}, `hard link to "../outside" points outside the image root`},
		{"hardlink missing", []entry{{name: "a", typ: tar.TypeLink, link: "etc/shadow"}}, `hard link to "etc/shadow", which the layer has not created`},
		{"char device", []entry{{name: "dev/null", typ: tar.TypeChar}}, "device file"},
		{"block device", []entry{{name: "dev/sda", typ: tar.TypeBlock}}, "device file"},
		{"fifo", []entry{{name: "p", typ: tar.TypeFifo}}, "named pipe"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "root")
			os.Mkdir(dir, 0o755)
			os.WriteFile(filepath.Join(parent, "outside"), []byte("host"), 0o644)
			err := Unpack(dir, layer(t, tc.ents...))
			var ue *UnsafeEntryError
			if !errors.As(err, &ue) {
				t.Fatalf("Unpack = %v, want *UnsafeEntryError", err)
			}
			if ue.Reason != tc.reason {
				t.Errorf("reason = %q, want %q", ue.Reason, tc.reason)
			}
			if got := read(t, filepath.Join(parent, "outside")); got != "host" {
				t.Errorf("outside file changed to %q", got)
			}
		})
	}
}

// A symlink that stays inside the root lexically but is then written
// through must still not reach outside: os.Root stops it.
func TestUnpackWriteThroughSymlinkStaysInside(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "root")
	os.Mkdir(dir, 0o755)
	err := Unpack(dir, layer(t,
		entry{name: "a", typ: tar.TypeSymlink, link: "."},
		entry{name: "a/b/l", typ: tar.TypeSymlink, link: "../../x"},
	))
	if err == nil {
		if _, serr := os.Lstat(filepath.Join(parent, "x")); serr == nil {
			t.Fatal("wrote outside the root")
		}
	}
	err = Unpack(dir, layer(t,
		entry{name: "up", typ: tar.TypeSymlink, link: "a"},
		entry{name: "up/../../escape", typ: tar.TypeReg, body: "x"},
	))
	if err == nil {
		t.Fatal("want an error for up/../../escape")
	}
	if _, serr := os.Stat(filepath.Join(parent, "escape")); serr == nil {
		t.Fatal("wrote outside the root")
	}
}

func TestEntryPath(t *testing.T) {
	for in, want := range map[string]string{
		"./":            ".",
		"/":             ".",
		"/ko-app/train": "ko-app/train",
		"a//b/./c":      "a/b/c",
		"./etc/x.conf":  "etc/x.conf",
	} {
		got, err := EntryPath(in)
		if err != nil || got != want {
			t.Errorf("EntryPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "../x", "a/../../x", "a/..", "x\x00y", `a\..\b`} {
		if got, err := EntryPath(in); err == nil {
			t.Errorf("EntryPath(%q) = %q, want an error", in, got)
		}
	}
}

func FuzzEntryPath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "/abs", "./a/../b", "a/./../..", "..\\x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := EntryPath(name)
		if err != nil {
			return
		}
		if !filepath.IsLocal(p) && p != "." {
			t.Fatalf("EntryPath(%q) = %q, not local", name, p)
		}
		if strings.HasPrefix(p, "/") || p == ".." || strings.HasPrefix(p, "../") {
			t.Fatalf("EntryPath(%q) = %q escapes", name, p)
		}
		if filepath.Join("/root", p) != "/root" && !strings.HasPrefix(filepath.Join("/root", p), "/root/") {
			t.Fatalf("EntryPath(%q) = %q leaves /root", name, p)
		}
	})
}

func FuzzLinkTarget(f *testing.F) {
	f.Add("a/b", "../c")
	f.Add("a", "../../x")
	f.Add("a/b/c", "/etc")
	f.Fuzz(func(t *testing.T, entry, target string) {
		p, err := EntryPath(entry)
		if err != nil || p == "." {
			return
		}
		if linkTarget(entry, p, target) != nil {
			return
		}
		res := filepath.Join("/root", filepath.Dir(p), target)
		if res != "/root" && !strings.HasPrefix(res, "/root/") {
			t.Fatalf("link %q -> %q accepted but resolves to %q", p, target, res)
		}
	})
}
