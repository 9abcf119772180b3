package junit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// Suites is the <testsuites> document. Counts are totals over Suites.
//
// The document follows the JUnit schema of Jenkins' xunit plugin
// (junit-10.xsd), which the junit step also reads: <testsuites> carries
// name, tests, failures, errors and time only (so Skipped is not written
// there; each <testsuite> has its own skipped count), an errored case has
// an <error> element, a failed one a <failure>.
type Suites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Name     string   `xml:"name,attr,omitempty"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	// Skipped is the total of the suites' skipped cases (not an attribute
	// of <testsuites> in the schema).
	Skipped int `xml:"-"`
	// Time is in seconds.
	Time   Seconds `xml:"time,attr"`
	Suites []Suite `xml:"testsuite"`
}

// Seconds is a duration in seconds, written with at most three decimals
// and never in exponent notation (the schema's SUREFIRE_TIME pattern).
type Seconds float64

// MarshalXMLAttr writes s as "12.345".
func (s Seconds) MarshalXMLAttr(name xml.Name) (xml.Attr, error) {
	return xml.Attr{Name: name, Value: strconv.FormatFloat(round(float64(s)), 'f', -1, 64)}, nil
}

// Suite is one <testsuite>: a Go package, or one test command.
type Suite struct {
	Name      string  `xml:"name,attr"`
	Tests     int     `xml:"tests,attr"`
	Failures  int     `xml:"failures,attr"`
	Errors    int     `xml:"errors,attr"`
	Skipped   int     `xml:"skipped,attr"`
	Time      Seconds `xml:"time,attr"`
	Cases     []Case  `xml:"testcase"`
	SystemOut string  `xml:"system-out,omitempty"`
	// BuildFailed is, when the package's tests could not be built, the ID
	// of the package that did not compile (as `go list` names it, e.g.
	// "example.com/ml/a [example.com/ml/a.test]"); its one case is an error
	// named "(build)" with the compiler's output.
	BuildFailed string `xml:"-"`
}

// Case is one <testcase>; at most one of Failure, Error and Skipped is set.
type Case struct {
	Classname string   `xml:"classname,attr"`
	Name      string   `xml:"name,attr"`
	Time      Seconds  `xml:"time,attr"`
	Failure   *Failure `xml:"failure,omitempty"`
	Error     *Failure `xml:"error,omitempty"`
	Skipped   *Skipped `xml:"skipped,omitempty"`
	SystemOut string   `xml:"system-out,omitempty"`
}

// Failure is a failed (<failure>) or errored (<error>) test: Message is a
// one-line summary, Type a kind ("build" for a compile error), Text the output.
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
	s.Time = Seconds(round(float64(s.Time)))
}

// BuildFailures lists the packages whose tests could not be built (see
// Suite.BuildFailed), in document order.
func (s *Suites) BuildFailures() []string {
	var out []string
	for _, x := range s.Suites {
		if x.BuildFailed != "" {
			out = append(out, x.BuildFailed)
		}
	}
	return out
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
	// FailedBuild is set on a package's fail event when the failure was a
	// build failure: the ImportPath of the build-fail that caused it.
	FailedBuild string `json:"FailedBuild"`
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
	// build is the output of a failed build (build-output events);
	// failedBuild the ID of the build that made this package fail.
	build       strings.Builder
	buildFailed bool
	failedBuild string
	// consumed marks a build (an ImportPath of build events) reported in
	// the suite of the package it failed.
	consumed bool
}

// FromGoTestJSON converts a `go test -json` stream into suites, one per
// package, named prefix+package (prefix "" for none). A package whose tests
// could not be built (its fail event names a FailedBuild; Go 1.24+) has one
// error case "(build)" of type "build" carrying the compiler's output, and
// Suite.BuildFailed set; a build failure no package's fail event names gets
// a suite of its own in the same shape. Lines that are not JSON (a build
// error printed by an older go command) go into a suite named
// prefix+"(build)" as an error. A package that failed otherwise without a
// failing test (TestMain, a panic, a timeout) gets an error case named
// "(package)". Tests still running at the end (the stream was cut) are errors.
func FromGoTestJSON(r io.Reader, prefix string) ([]Suite, error) {
	pkgs := map[string]*pkgState{}
	var order []string
	builds := map[string]*pkgState{} // by the ImportPath of build events
	var buildOrder []string
	buildAt := map[string]int{} // a build's place: len(order) when it first showed
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
			b := builds[ev.ImportPath]
			if b == nil {
				b = &pkgState{name: ev.ImportPath}
				builds[ev.ImportPath] = b
				buildOrder = append(buildOrder, ev.ImportPath)
				buildAt[ev.ImportPath] = len(order)
			}
			appendTail(&b.build, ev.Output)
			if ev.Action == "build-fail" {
				b.buildFailed = true
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
				if ev.FailedBuild != "" {
					p.failedBuild = ev.FailedBuild
				}
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
	for _, name := range order {
		if p := pkgs[name]; p.failedBuild != "" {
			if b := builds[p.failedBuild]; b != nil {
				p.build.WriteString(b.build.String())
				b.consumed = true
			}
		}
	}
	// Suites in the order their package (or unclaimed build) first showed.
	var suites []Suite
	next := 0
	flushBuilds := func(upTo int) {
		for ; next < len(buildOrder) && buildAt[buildOrder[next]] <= upTo; next++ {
			if b := builds[buildOrder[next]]; b.buildFailed && !b.consumed {
				b.failedBuild = b.name
				suites = append(suites, b.suite(prefix))
			}
		}
	}
	for i, name := range order {
		flushBuilds(i)
		suites = append(suites, pkgs[name].suite(prefix))
	}
	flushBuilds(len(order))
	if stray.Len() > 0 {
		suites = append(suites, Suite{Name: prefix + "(build)", Tests: 1, Errors: 1, Cases: []Case{{
			Classname: prefix + "(build)", Name: "(build)",
			Error: &Failure{Message: firstLine(stray.String()), Type: "error", Text: clean(stray.String())},
		}}})
	}
	return suites, nil
}

func (p *pkgState) suite(prefix string) Suite {
	s := Suite{Name: prefix + p.name, Time: Seconds(round(p.elapsed))}
	if p.failedBuild != "" {
		out := p.build.String()
		msg := p.failedBuild + " does not compile"
		if first := firstDiagnostic(out); first != "" {
			msg += ": " + first
		}
		s.BuildFailed, s.Tests, s.Errors = p.failedBuild, 1, 1
		s.Cases = []Case{{Classname: prefix + p.name, Name: "(build)", Error: &Failure{Message: msg, Type: "build", Text: clean(out)}}}
		return s
	}
	failedCase := false
	for _, name := range p.order {
		c := p.cases[name]
		tc := Case{Classname: prefix + p.name, Name: name, Time: Seconds(round(c.elapsed))}
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
			tc.Error = &Failure{Message: name + " did not finish", Type: "error", Text: clean(c.out.String())}
			s.Errors++
		}
		s.Tests++
		s.Cases = append(s.Cases, tc)
	}
	if p.action == "fail" && !failedCase {
		s.Cases = append(s.Cases, Case{Classname: prefix + p.name, Name: "(package)",
			Error: &Failure{Message: "package " + p.name + " failed", Type: "error", Text: clean(p.out.String())}})
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
	c := Case{Classname: suite, Name: cmd, Time: Seconds(round(d.Seconds()))}
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

// firstDiagnostic is the first line of compiler output that is not a
// "# package" header.
func firstDiagnostic(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return clean(l)
		}
	}
	return ""
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
