package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestGetFromEnvAndFile(t *testing.T) {
	Reset()
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("file-secret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"A_TOKEN": "env-secret-value", "B_TOKEN_FILE": file, "C_TOKEN_FILE": filepath.Join(dir, "missing")}
	get := func(k string) string { return env[k] }
	if v, err := GetFrom(get, "A_TOKEN"); v != "env-secret-value" || err != nil {
		t.Errorf("A_TOKEN = %q, %v", v, err)
	}
	if v, err := GetFrom(get, "B_TOKEN"); v != "file-secret-value" || err != nil {
		t.Errorf("B_TOKEN = %q, %v", v, err)
	}
	if _, err := GetFrom(get, "C_TOKEN"); err == nil || !strings.Contains(err.Error(), "C_TOKEN_FILE=") {
		t.Errorf("C_TOKEN error = %v", err)
	}
	if v, err := GetFrom(get, "D_TOKEN"); v != "" || err != nil {
		t.Errorf("D_TOKEN = %q, %v", v, err)
	}
	if got := Redact("a env-secret-value b file-secret-value"); got != "a *** b ***" {
		t.Errorf("Redact = %q", got)
	}
}

func TestRequire(t *testing.T) {
	t.Setenv("BRANCHML_TEST_ABSENT", "")
	_, err := Require("BRANCHML_TEST_ABSENT")
	if !errors.Is(err, ErrNotSet) || err.Error() != "secret not set: set BRANCHML_TEST_ABSENT, or BRANCHML_TEST_ABSENT_FILE to a file holding it" {
		t.Errorf("err = %v", err)
	}
}

func TestLongestFirstAndShortValues(t *testing.T) {
	Reset()
	Register("abcd")
	Register("abcdefgh")
	Register("xy") // too short to mask
	if got := Redact("abcdefgh abcd xy"); got != "*** *** xy" {
		t.Errorf("Redact = %q", got)
	}
}

// A token never appears in log output at any level, in the message, in
// fields, or inside wrapped errors.
func TestHookMasksEveryLevel(t *testing.T) {
	Reset()
	t.Setenv("GITHUB_TOKEN", "ghp_0123456789abcdefSECRET")
	tok, err := Require("GITHUB_TOKEN")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, format := range []logrus.Formatter{&logrus.TextFormatter{DisableColors: true}, &logrus.JSONFormatter{}} {
		log := logrus.New()
		log.SetOutput(&buf)
		log.SetFormatter(format)
		log.SetLevel(logrus.TraceLevel)
		log.AddHook(Hook{})
		wrapped := fmt.Errorf("push: %w", fmt.Errorf("remote said: bad credentials %s", tok))
		for _, lvl := range []logrus.Level{logrus.TraceLevel, logrus.DebugLevel, logrus.InfoLevel, logrus.WarnLevel, logrus.ErrorLevel} {
			log.WithError(wrapped).WithField("auth", "token "+tok).WithField("url", stringer("https://x:"+tok+"@host")).Logf(lvl, "calling with %s", tok)
		}
	}
	out := buf.String()
	if strings.Contains(out, tok) || strings.Contains(out, "SECRET") {
		t.Fatalf("token leaked:\n%s", out)
	}
	if n := strings.Count(out, Mask); n != 2*5*4 {
		t.Errorf("mask count = %d, want 40:\n%s", n, out)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// Credentials in URLs: registered from configuration values (with or
// without a scheme) and masked wherever they appear later; any
// scheme://user:password@ is masked even unregistered.
func TestURLUserinfo(t *testing.T) {
	Reset()
	for _, v := range []string{
		`{"host":"robot:r3g1stryPass@127.0.0.1:5000","endpoint":"https://kfp:kfpS3cret@kfp.example.com","remote":"ssh://git:g1tPass@forge/r.git"}`,
		"BRANCHML_BACKENDS_FORGE_APIURL=https://u:ap1%21Pass@ghe.example.com/api/v3",
	} {
		RegisterUserinfo(v)
	}
	for in, want := range map[string]string{
		"push 127.0.0.1:5000/djia30/train: 401 for robot:r3g1stryPass@127.0.0.1:5000": "push 127.0.0.1:5000/djia30/train: 401 for robot:***@127.0.0.1:5000",
		"dial kfp.example.com: password kfpS3cret":                                    "dial kfp.example.com: password ***",
		"git push ssh://git:g1tPass@forge/r.git failed":                               "git push ssh://git:***@forge/r.git failed",
		"https://u:ap1%21Pass@ghe.example.com/api/v3 and the decoded ap1!Pass":        "https://u:***@ghe.example.com/api/v3 and the decoded ***",
		"never registered: http://x:unknownPw@h/ and image r/t@sha256:00, host:5000":  "never registered: http://x:***@h/ and image r/t@sha256:00, host:5000",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}

// Whatever the text, a registered URL password never survives Redact.
func FuzzRedactUserinfo(f *testing.F) {
	for _, s := range []string{"https://u:p4ssw0rd@h/x", "robot:s3cretPw@127.0.0.1:5000", "a@b:c@d", "::@@//", "x://:@"} {
		f.Add(s, "see %s here")
	}
	f.Fuzz(func(t *testing.T, value, text string) {
		Reset()
		RegisterUserinfo(value)
		for _, m := range userinfo.FindAllStringSubmatch(value, -1) {
			if len(strings.TrimSpace(m[1])) >= 4 && strings.Contains(Redact(strings.ReplaceAll(text, "%s", value)), m[1]) {
				t.Fatalf("password %q of %q survives Redact", m[1], value)
			}
		}
	})
}
