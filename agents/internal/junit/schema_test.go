package junit

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
)

// element is what the JUnit schema of Jenkins' xunit plugin (junit-10.xsd,
// the schema its JUnit input type validates against) allows for one element:
// its attributes, which of them are required, its child elements, and
// whether it may hold text.
type element struct {
	attrs    []string
	required []string
	children []string
	text     bool
}

var junit10 = map[string]element{
	"testsuites": {attrs: []string{"name", "time", "tests", "failures", "errors"}, children: []string{"testsuite"}},
	"testsuite": {
		attrs:    []string{"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp", "hostname", "id", "package", "file", "log", "url"},
		required: []string{"name", "tests", "failures", "errors"},
		children: []string{"testsuite", "properties", "testcase", "system-out", "system-err"},
	},
	"testcase": {
		attrs: []string{"name", "time", "classname", "group"}, required: []string{"name"},
		children: []string{"skipped", "error", "failure", "rerunFailure", "rerunError", "flakyFailure", "flakyError", "system-out", "system-err"},
	},
	"failure":    {attrs: []string{"type", "message"}, text: true},
	"error":      {attrs: []string{"type", "message"}, text: true},
	"skipped":    {attrs: []string{"type", "message"}, text: true},
	"system-out": {text: true},
	"system-err": {text: true},
	"properties": {children: []string{"property"}},
	"property":   {attrs: []string{"name", "value"}, required: []string{"name", "value"}},
}

// surefireTime is the schema's SUREFIRE_TIME pattern for time attributes.
var surefireTime = regexp.MustCompile(`^(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?$`)

// checkSchema fails t when doc is not valid against junit-10.xsd's rules above.
func checkSchema(t *testing.T, doc []byte) {
	t.Helper()
	if err := validate(doc); err != nil {
		t.Fatalf("not valid for the xunit plugin's junit-10.xsd: %v\n%s", err, doc)
	}
}

func validate(doc []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var stack []string
	root := true
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			name := tok.Name.Local
			el, ok := junit10[name]
			if !ok {
				return errors.New("element <" + name + "> is not in the schema")
			}
			if root && name != "testsuites" && name != "testsuite" {
				return errors.New("root element <" + name + ">")
			}
			root = false
			if len(stack) > 0 {
				parent := junit10[stack[len(stack)-1]]
				if !contains(parent.children, name) {
					return errors.New("<" + name + "> inside <" + stack[len(stack)-1] + ">")
				}
			}
			seen := map[string]bool{}
			for _, a := range tok.Attr {
				if !contains(el.attrs, a.Name.Local) {
					return errors.New("attribute " + name + "@" + a.Name.Local + " is outside the schema")
				}
				if a.Name.Local == "time" && (name == "testsuite" || name == "testsuites") && !surefireTime.MatchString(a.Value) {
					return errors.New(name + "@time=" + a.Value + " does not match SUREFIRE_TIME")
				}
				seen[a.Name.Local] = true
			}
			for _, r := range el.required {
				if !seen[r] {
					return errors.New("<" + name + "> lacks required attribute " + r)
				}
			}
			stack = append(stack, name)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 && !junit10[stack[len(stack)-1]].text && strings.TrimSpace(string(tok)) != "" {
				return errors.New("text inside <" + stack[len(stack)-1] + ">")
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestValidatorRejects keeps the checker honest: the old document shape
// (testsuites@skipped) and stray elements fail it.
func TestValidatorRejects(t *testing.T) {
	for _, bad := range []string{
		`<testsuites tests="1" skipped="1"></testsuites>`,
		`<testsuites><testcase name="x"/></testsuites>`,
		`<testsuite name="s" tests="1" failures="0"></testsuite>`,
		`<testsuite name="s" tests="1" failures="0" errors="0" time="1e+06"></testsuite>`,
		`<testsuite name="s" tests="1" failures="0" errors="0"><testcase name="c"><failure><b/></failure></testcase></testsuite>`,
	} {
		if err := validate([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	if err := validate([]byte(`<testsuites tests="1"><testsuite name="s" tests="1" failures="0" errors="0" skipped="0" time="1.5"><testcase name="c" classname="k" time="0.1"><error type="build" message="m">text</error></testcase></testsuite></testsuites>`)); err != nil {
		t.Errorf("rejected a valid document: %v", err)
	}
}
