package junit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// Suites is the <testsuites> document. Counts are totals over Suites.
type Suites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Name     string   `xml:"name,attr,omitempty"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	// Time is in seconds.
	Time   float64 `xml:"time,attr"`
	Suites []Suite `xml:"testsuite"`
}

// Suite is one <testsuite>: a Go package, or one test command.
type Suite struct {
	Name      string  `xml:"name,attr"`
	Tests     int     `xml:"tests,attr"`
	Failures  int     `xml:"failures,attr"`
	Errors    int     `xml:"errors,attr"`
	Skipped   int     `xml:"skipped,attr"`
	Time      float64 `xml:"time,attr"`
	Cases     []Case  `xml:"testcase"`
	SystemOut string  `xml:"system-out,omitempty"`
}

// Case is one <testcase>; at most one of Failure and Skipped is set.
type Case struct {
	Classname string   `xml:"classname,attr"`
	Name      string   `xml:"name,attr"`
	Time      float64  `xml:"time,attr"`
	Failure   *Failure `xml:"failure,omitempty"`
	Skipped   *Skipped `xml:"skipped,omitempty"`
	SystemOut string   `xml:"system-out,omitempty"`
}

// Failure is a failed test: Message is a one-line summary, Text the output.
type Failure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// Skipped is a skipped test.
type Skipped struct {
	Message string `xml:"message,attr,omitempty"`
}

// Failed reports whether any test failed or errored.
func (s *Suites) Failed() bool { return s.Failures > 0 || s.Errors > 0 }

// Add appends suites and updates the totals.
func (s *Suites) Add(suites ...Suite) {
	for _, x := range suites {
		s.Suites = append(s.Suites, x)
		s.Tests += x.Tests
		s.Failures += x.Failures
		s.Errors += x.Errors
		s.Skipped += x.Skipped
		s.Time += x.Time
	}
	s.Time = round(s.Time)
}

// Marshal returns the document with an XML header and a trailing newline.
func (s *Suites) Marshal() ([]byte, error) {
	body, err := xml.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(append([]byte(xml.Header), body...), '\n'), nil
}

// Write writes s to path atomically.
func Write(path string, s *Suites) error {
	data, err := s.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o644)
}

// Event is one line of `go test -json` (see `go doc cmd/test2json`).
// Action is one of start, run, pause, cont, pass, bench, fail, output, skip,
// and since Go 1.24 build-output and build-fail (with ImportPath).
type Event struct {
	Time       time.Time `json:"Time"`
	Action     string    `json:"Action"`
	Package    string    `json:"Package"`
	ImportPath string    `json:"ImportPath"`
	Test       string    `json:"Test"`
	Elapsed    float64   `json:"Elapsed"`
	Output     string    `json:"Output"`
}

// maxOutput bounds the output kept per test (bytes); the tail is kept.
const maxOutput = 64 << 10

type caseState struct {
	name    string
	out     strings.Builder
	action  string
	elapsed float64
}

type pkgState struct {
	name    string
	cases   map[string]*caseState
	order   []string
	out     strings.Builder
	action  string
	elapsed float64
}

// FromGoTestJSON converts a `go test -json` stream into suites, one per
// package, named prefix+package (prefix "" for none). Lines that are not JSON
// (a build error printed by an older go command) go into a suite named
// prefix+"(build)" as an error. A package that failed without a failing
// test (build failure, TestMain, a panic) gets an error case named
// "(package)". Tests still running at the end (the stream was cut) are errors.
func FromGoTestJSON(r io.Reader, prefix string) ([]Suite, error) {
	pkgs := map[string]*pkgState{}
	var order []string
	var stray strings.Builder
	get := func(name string) *pkgState {
		p, ok := pkgs[name]
		if !ok {
			p = &pkgState{name: name, cases: map[string]*caseState{}}
			pkgs[name] = p
			order = append(order, name)
		}
		return p
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev Event
		if line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			appendTail(&stray, string(line)+"\n")
			continue
		}
		if ev.Action == "build-output" || ev.Action == "build-fail" {
			p := get(ev.ImportPath)
			appendTail(&p.out, ev.Output)
			if ev.Action == "build-fail" {
				p.action = "fail"
			}
			continue
		}
		if ev.Package == "" {
			appendTail(&stray, ev.Output)
			continue
		}
		p := get(ev.Package)
		if ev.Test == "" {
			switch ev.Action {
			case "output":
				appendTail(&p.out, ev.Output)
			case "pass", "fail", "skip":
				p.action, p.elapsed = ev.Action, ev.Elapsed
			}
			continue
		}
		c, ok := p.cases[ev.Test]
		if !ok {
			c = &caseState{name: ev.Test, action: "run"}
			p.cases[ev.Test] = c
			p.order = append(p.order, ev.Test)
		}
		switch ev.Action {
		case "output":
			appendTail(&c.out, ev.Output)
		case "pass", "fail", "skip":
			c.action, c.elapsed = ev.Action, ev.Elapsed
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read go test -json output: %w", err)
	}
	var suites []Suite
	for _, name := range order {
		suites = append(suites, pkgs[name].suite(prefix))
	}
	if stray.Len() > 0 {
		suites = append(suites, Suite{Name: prefix + "(build)", Tests: 1, Errors: 1, Cases: []Case{{
			Classname: prefix + "(build)", Name: "(build)",
			Failure: &Failure{Message: firstLine(stray.String()), Type: "error", Text: clean(stray.String())},
		}}})
	}
	return suites, nil
}

func (p *pkgState) suite(prefix string) Suite {
	s := Suite{Name: prefix + p.name, Time: round(p.elapsed)}
	failedCase := false
	for _, name := range p.order {
		c := p.cases[name]
		tc := Case{Classname: prefix + p.name, Name: name, Time: round(c.elapsed)}
		switch c.action {
		case "fail":
			tc.Failure = &Failure{Message: name + " failed", Text: clean(c.out.String())}
			s.Failures++
			failedCase = true
		case "skip":
			tc.Skipped = &Skipped{Message: firstSkipLine(c.out.String())}
			s.Skipped++
		case "pass":
			tc.SystemOut = clean(c.out.String())
		default:
			tc.Failure = &Failure{Message: name + " did not finish", Type: "error", Text: clean(c.out.String())}
			s.Errors++
		}
		s.Tests++
		s.Cases = append(s.Cases, tc)
	}
	if p.action == "fail" && !failedCase {
		s.Cases = append(s.Cases, Case{Classname: prefix + p.name, Name: "(package)",
			Failure: &Failure{Message: "package " + p.name + " failed", Type: "error", Text: clean(p.out.String())}})
		s.Tests++
		s.Errors++
	} else if p.out.Len() > 0 {
		s.SystemOut = clean(p.out.String())
	}
	return s
}

// CommandSuite is the suite of one test command (a configured component
// test command): one case named after the command, failed when ok is false,
// with its output.
func CommandSuite(suite string, argv []string, ok bool, output string, d time.Duration) Suite {
	cmd := strings.Join(argv, " ")
	c := Case{Classname: suite, Name: cmd, Time: round(d.Seconds())}
	s := Suite{Name: suite, Tests: 1, Time: c.Time}
	if ok {
		c.SystemOut = clean(tail(output))
	} else {
		c.Failure = &Failure{Message: cmd + " failed", Text: clean(tail(output))}
		s.Failures = 1
	}
	s.Cases = []Case{c}
	return s
}

// SortCases orders each suite's cases by name (for stable files).
func SortCases(suites []Suite) {
	for i := range suites {
		sort.SliceStable(suites[i].Cases, func(a, b int) bool { return suites[i].Cases[a].Name < suites[i].Cases[b].Name })
	}
}

func appendTail(b *strings.Builder, s string) {
	if b.Len()+len(s) > maxOutput {
		keep := tail(b.String() + s)
		b.Reset()
		b.WriteString(keep)
		return
	}
	b.WriteString(s)
}

func tail(s string) string {
	if len(s) <= maxOutput {
		return s
	}
	return "…(truncated)\n" + s[len(s)-maxOutput:]
}

// clean drops bytes XML 1.0 cannot carry (control characters, invalid UTF-8).
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError:
			return '\uFFFD'
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20 || (r >= 0xFFFE && r <= 0xFFFF) || (r >= 0xD800 && r <= 0xDFFF):
			return -1
		}
		return r
	}, s)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return clean(s)
}

func firstSkipLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- ") {
			return clean(l)
		}
	}
	return ""
}

func round(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
