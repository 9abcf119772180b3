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
<testsuites name="build" tests="4" failures="1" errors="1" skipped="1" time="0.262">
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
    <testcase classname="a/example.com/ml/b" name="(package)" time="0">
      <failure message="package example.com/ml/b failed" type="error">b/b.go:3:1: syntax error&#xA;</failure>
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
}

func TestStrayLinesAndCutStream(t *testing.T) {
	in := "# example.com/ml/b\nb.go:1: bad\n" +
		`{"Action":"run","Package":"p","Test":"TestHang"}` + "\n"
	suites, err := FromGoTestJSON(strings.NewReader(in), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(suites) != 2 || suites[0].Errors != 1 || suites[0].Cases[0].Failure.Message != "TestHang did not finish" {
		t.Fatalf("suites = %+v", suites)
	}
	if b := suites[1]; b.Name != "(build)" || b.Cases[0].Failure.Message != "# example.com/ml/b" || b.Cases[0].Failure.Text != "# example.com/ml/b\nb.go:1: bad\n" {
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
