package secrets

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
)

// Mask is what a secret value is replaced with.
const Mask = "***"

// ErrNotSet is returned (wrapped) by Require when neither NAME nor NAME_FILE is set.
var ErrNotSet = errors.New("secret not set")

var (
	mu     sync.RWMutex
	values = map[string]bool{}
)

// Register adds v to the values masked everywhere. Values shorter than 4
// bytes are not registered: masking them would garble ordinary text.
func Register(v string) {
	v = strings.TrimSpace(v)
	if len(v) < 4 {
		return
	}
	mu.Lock()
	values[v] = true
	mu.Unlock()
}

// Get returns the secret called name: the variable name itself, or else the
// trimmed content of the file that name+"_FILE" points at. It returns "" and
// no error when neither is set. The value is registered for masking.
func Get(name string) (string, error) {
	return GetFrom(os.Getenv, name)
}

// GetFrom is Get with an injected environment lookup (for tests).
func GetFrom(getenv func(string) string, name string) (string, error) {
	if v := getenv(name); v != "" {
		Register(v)
		return v, nil
	}
	file := getenv(name + "_FILE")
	if file == "" {
		return "", nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read %s from %s_FILE=%s: %w", name, name, file, err)
	}
	v := strings.TrimSpace(string(raw))
	Register(v)
	return v, nil
}

// Require is Get that fails with ErrNotSet, naming both variables, when the
// secret is absent.
func Require(name string) (string, error) {
	v, err := Get(name)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", fmt.Errorf("%w: set %s, or %s_FILE to a file holding it", ErrNotSet, name, name)
	}
	return v, nil
}

// Redact replaces every registered secret value in s with Mask, longest first
// so that a secret containing another is masked whole.
func Redact(s string) string {
	mu.RLock()
	defer mu.RUnlock()
	if len(values) == 0 {
		return s
	}
	vs := make([]string, 0, len(values))
	for v := range values {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return len(vs[i]) > len(vs[j]) })
	for _, v := range vs {
		s = strings.ReplaceAll(s, v, Mask)
	}
	return RedactURLs(s)
}

// urlUserinfo matches "scheme://user:password@" (the password is group 2).
var urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/@\s:'"]*):([^/@\s'"]+)@`)

// RedactURLs masks the password of every "scheme://user:password@" in s as
// "scheme://user:***@" (what net/url's Redacted does), registered or not.
func RedactURLs(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return urlUserinfo.ReplaceAllString(s, "${1}:"+Mask+"@")
}

// userinfo matches "user:password@host" with or without a scheme, as an
// endpoint, a remote or a registry host may be written.
var userinfo = regexp.MustCompile(`(?:^|[\s"'=(,]|://)[^/@\s:'"=(,]+:([^/@\s'"]+)@[A-Za-z0-9\[]`)

// RegisterUserinfo registers the password of every "user:password@host"
// in s (a configuration value, an environment variable) as a secret, so
// that it is masked wherever it appears later, with or without its URL.
func RegisterUserinfo(s string) {
	if !strings.Contains(s, "@") {
		return
	}
	for _, m := range userinfo.FindAllStringSubmatch(s, -1) {
		if p, err := url.PathUnescape(m[1]); err == nil && p != m[1] {
			Register(p)
		}
		Register(m[1])
	}
}

// Hook is a logrus hook that masks registered secrets in the message and in
// every string, error or Stringer field of each entry.
type Hook struct{}

var _ logrus.Hook = Hook{}

// Levels returns every level: masking applies to all of them.
func (Hook) Levels() []logrus.Level { return logrus.AllLevels }

// Fire masks the entry in place.
func (Hook) Fire(e *logrus.Entry) error {
	e.Message = Redact(e.Message)
	for k, v := range e.Data {
		switch t := v.(type) {
		case string:
			e.Data[k] = Redact(t)
		case error:
			e.Data[k] = Redact(t.Error())
		case fmt.Stringer:
			e.Data[k] = Redact(t.String())
		}
	}
	return nil
}

// Reset forgets every registered value (for tests).
func Reset() {
	mu.Lock()
	values = map[string]bool{}
	mu.Unlock()
}

// Known are the environment variables that hold secrets for some agent
// (each may also be given as NAME_FILE). RegisterKnown masks them all at
// process start, before any configuration error could print one.
var Known = []string{
	"GITHUB_TOKEN", "KFP_TOKEN", "JENKINS_API_TOKEN", "REGISTRY_PASSWORD", "KAGGLE_KEY",
}

// RegisterKnown registers the values of every Known variable (and the
// content of its _FILE) that getenv sees; unreadable files are skipped
// here and reported by Get when the secret is used.
func RegisterKnown(getenv func(string) string) {
	for _, name := range Known {
		_, _ = GetFrom(getenv, name)
	}
}

// RegisterEnvUserinfo registers the URL passwords (RegisterUserinfo) of
// every variable in environ (KEY=VALUE entries): an endpoint set through
// BRANCHML_* with user:password@ is masked before it is ever printed.
func RegisterEnvUserinfo(environ []string) {
	for _, kv := range environ {
		if _, v, ok := strings.Cut(kv, "="); ok {
			RegisterUserinfo(v)
		}
	}
}
