package junit

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stream is what `go test -json ./...` printed for a module with one
// passing, one failing and one skipped test, a package with a build error
// (Go 1.24+ build-output events) and a package without tests.
const stream = `{"Time":"2026-11-29T12:00:00Z","Action":"start","Package":"example.com/ml/a"}
{"Time":"2026-11-29T12:00:00Z","Action":"run","Package":"example.com/ml/a","Test":"TestOK"}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/a","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"pass","Package":"example.com/ml/a","Test":"TestOK","Elapsed":0.001}
{"Time":"2026-11-29T12:00:00Z","Action":"run","Package":"example.com/ml/a","Test":"TestBad"}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/a","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/a","Test":"TestBad","Output":"    a_test.go:9: got 1, want 2\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/a","Test":"TestBad","Output":"--- FAIL: TestBad (0.25s)\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"fail","Package":"example.com/ml/a","Test":"TestBad","Elapsed":0.25}
{"Time":"2026-11-29T12:00:00Z","Action":"run","Package":"example.com/ml/a","Test":"TestLater"}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/a","Test":"TestLater","Output":"=== RUN   TestLater\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/a","Test":"TestLater","Output":"    a_test.go:14: needs data\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/a","Test":"TestLater","Output":"--- SKIP: TestLater (0.00s)\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"skip","Package":"example.com/ml/a","Test":"TestLater","Elapsed":0}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/a","Output":"FAIL\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"fail","Package":"example.com/ml/a","Elapsed":0.262}
{"ImportPath":"example.com/ml/b","Action":"build-output","Output":"b/b.go:3:1: syntax error\n"}
{"ImportPath":"example.com/ml/b","Action":"build-fail"}
{"Time":"2026-11-29T12:00:00Z","Action":"output","Package":"example.com/ml/c","Output":"?   \texample.com/ml/c\t[no test files]\n"}
{"Time":"2026-11-29T12:00:00Z","Action":"skip","Package":"example.com/ml/c","Elapsed":0}
`

const want = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="build" tests="4" failures="1" errors="1" time="0.262">
  <testsuite name="a/example.com/ml/a" tests="3" failures="1" errors="0" skipped="1" time="0.262">
    <testcase classname="a/example.com/ml/a" name="TestOK" time="0.001">
      <system-out>=== RUN   TestOK&#xA;--- PASS: TestOK (0.00s)&#xA;</system-out>
    </testcase>
    <testcase classname="a/example.com/ml/a" name="TestBad" time="0.25">
      <failure message="TestBad failed">=== RUN   TestBad&#xA;    a_test.go:9: got 1, want 2&#xA;--- FAIL: TestBad (0.25s)&#xA;</failure>
    </testcase>
    <testcase classname="a/example.com/ml/a" name="TestLater" time="0">
      <skipped message="a_test.go:14: needs data"></skipped>
    </testcase>
    <system-out>FAIL&#xA;</system-out>
  </testsuite>
  <testsuite name="a/example.com/ml/b" tests="1" failures="0" errors="1" skipped="0" time="0">
    <testcase classname="a/example.com/ml/b" name="(build)" time="0">
      <error message="example.com/ml/b does not compile: b/b.go:3:1: syntax error" type="build">b/b.go:3:1: syntax error&#xA;</error>
    </testcase>
  </testsuite>
  <testsuite name="a/example.com/ml/c" tests="0" failures="0" errors="0" skipped="0" time="0">
    <system-out>?   &#x9;example.com/ml/c&#x9;[no test files]&#xA;</system-out>
  </testsuite>
</testsuites>
`

func TestFromGoTestJSON(t *testing.T) {
	suites, err := FromGoTestJSON(strings.NewReader(stream), "a/")
	if err != nil {
		t.Fatal(err)
	}
	doc := &Suites{Name: "build"}
	doc.Add(suites...)
	got, err := doc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if !doc.Failed() {
		t.Fatal("Failed() = false")
	}
	path := filepath.Join(t.TempDir(), "build", "junit.xml")
	if err := Write(path, doc); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(path); string(raw) != want {
		t.Fatal("written file differs from Marshal")
	}
	checkSchema(t, got)
}

// compileError is what Go 1.26's `go test -json ./...` prints for a module
// whose package tj/a has a test file that does not compile, beside a
// package tj/b with one skipped and one passing test.
const compileError = `{"ImportPath":"tj/a [tj/a.test]","Action":"build-output","Output":"# tj/a [tj/a.test]\n"}
{"ImportPath":"tj/a [tj/a.test]","Action":"build-output","Output":"a/a_test.go:3:28: undefined: undefinedThing\n"}
{"ImportPath":"tj/a [tj/a.test]","Action":"build-fail"}
{"Time":"2026-12-01T21:45:50.92744307Z","Action":"start","Package":"tj/a"}
{"Time":"2026-12-01T21:45:50.927488261Z","Action":"output","Package":"tj/a","Output":"FAIL\ttj/a [build failed]\n"}
{"Time":"2026-12-01T21:45:50.927494097Z","Action":"fail","Package":"tj/a","Elapsed":0,"FailedBuild":"tj/a [tj/a.test]"}
{"Time":"2026-12-01T21:45:51.284879384Z","Action":"start","Package":"tj/b"}
{"Time":"2026-12-01T21:45:51.288904129Z","Action":"run","Package":"tj/b","Test":"TestB"}
{"Time":"2026-12-01T21:45:51.288927756Z","Action":"output","Package":"tj/b","Test":"TestB","Output":"=== RUN   TestB\n"}
{"Time":"2026-12-01T21:45:51.28945129Z","Action":"output","Package":"tj/b","Test":"TestB","Output":"    b_test.go:3: why\n"}
{"Time":"2026-12-01T21:45:51.28946251Z","Action":"output","Package":"tj/b","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Time":"2026-12-01T21:45:51.28946535Z","Action":"skip","Package":"tj/b","Test":"TestB","Elapsed":0}
{"Time":"2026-12-01T21:45:51.289469826Z","Action":"run","Package":"tj/b","Test":"TestC"}
{"Time":"2026-12-01T21:45:51.289472716Z","Action":"output","Package":"tj/b","Test":"TestC","Output":"=== RUN   TestC\n"}
{"Time":"2026-12-01T21:45:51.289475525Z","Action":"output","Package":"tj/b","Test":"TestC","Output":"--- PASS: TestC (0.00s)\n"}
{"Time":"2026-12-01T21:45:51.289478373Z","Action":"pass","Package":"tj/b","Test":"TestC","Elapsed":0}
{"Time":"2026-12-01T21:45:51.289480647Z","Action":"output","Package":"tj/b","Output":"PASS\n"}
{"Time":"2026-12-01T21:45:51.289515077Z","Action":"output","Package":"tj/b","Output":"ok  \ttj/b\t0.004s\n"}
{"Time":"2026-12-01T21:45:51.290013528Z","Action":"pass","Package":"tj/b","Elapsed":0.005}
`

// TestCompileError: a test file that does not compile is one build error
// of its package (not a failed test, not two), with the compiler's output.
func TestCompileError(t *testing.T) {
	suites, err := FromGoTestJSON(strings.NewReader(compileError), "")
	if err != nil {
		t.Fatal(err)
	}
	doc := &Suites{}
	doc.Add(suites...)
	if len(suites) != 2 || doc.Tests != 3 || doc.Failures != 0 || doc.Errors != 1 || doc.Skipped != 1 {
		t.Fatalf("%d suites, tests %d failures %d errors %d skipped %d: %+v", len(suites), doc.Tests, doc.Failures, doc.Errors, doc.Skipped, suites)
	}
	a := suites[0]
	if a.Name != "tj/a" || a.BuildFailed != "tj/a [tj/a.test]" || len(a.Cases) != 1 {
		t.Fatalf("suite a = %+v", a)
	}
	c := a.Cases[0]
	if c.Name != "(build)" || c.Failure != nil || c.Error == nil || c.Error.Type != "build" ||
		c.Error.Message != "tj/a [tj/a.test] does not compile: a/a_test.go:3:28: undefined: undefinedThing" ||
		c.Error.Text != "# tj/a [tj/a.test]\na/a_test.go:3:28: undefined: undefinedThing\n" {
		t.Fatalf("build case = %+v %+v", c, c.Error)
	}
	if got := doc.BuildFailures(); len(got) != 1 || got[0] != "tj/a [tj/a.test]" {
		t.Fatalf("BuildFailures() = %q", got)
	}
	raw, err := doc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	checkSchema(t, raw)
}

func TestStrayLinesAndCutStream(t *testing.T) {
	in := "# example.com/ml/b\nb.go:1: bad\n" +
		`{"Action":"run","Package":"p","Test":"TestHang"}` + "\n"
	suites, err := FromGoTestJSON(strings.NewReader(in), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(suites) != 2 || suites[0].Errors != 1 || suites[0].Cases[0].Error.Message != "TestHang did not finish" {
		t.Fatalf("suites = %+v", suites)
	}
	if b := suites[1]; b.Name != "(build)" || b.Cases[0].Error.Message != "# example.com/ml/b" || b.Cases[0].Error.Text != "# example.com/ml/b\nb.go:1: bad\n" {
		t.Fatalf("build suite = %+v", b)
	}
}

func TestCommandSuite(t *testing.T) {
	s := CommandSuite("web", []string{"npm", "test"}, false, "1 failing\n", 1500*time.Millisecond)
	if s.Failures != 1 || s.Tests != 1 || s.Time != 1.5 || s.Cases[0].Name != "npm test" || s.Cases[0].Failure.Text != "1 failing\n" {
		t.Fatalf("suite = %+v", s)
	}
}

func FuzzFromGoTestJSON(f *testing.F) {
	f.Add(stream)
	f.Add("not json\n{\"Action\":\"fail\",\"Package\":\"p\",\"Test\":\"T\x01\xff\"}\n")
	f.Fuzz(func(t *testing.T, in string) {
		suites, err := FromGoTestJSON(strings.NewReader(in), "x/")
		if err != nil {
			return
		}
		doc := &Suites{}
		doc.Add(suites...)
		raw, err := doc.Marshal()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Suites
		if err := xml.Unmarshal(raw, &back); err != nil {
			t.Fatalf("output is not well-formed XML: %v\n%s", err, raw)
		}
		if back.Tests != doc.Tests || len(back.Suites) != len(doc.Suites) {
			t.Fatalf("round trip lost data")
		}
	})
}
