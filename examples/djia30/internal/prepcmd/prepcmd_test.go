package prepcmd

import (
	"archive/zip"
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/djia30/internal/datadir"
	"github.com/branchml/djia30/internal/dataset"
)

func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	code := Main(args, &buf)
	return code, buf.String()
}

func TestUsageAndInputErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("Date,Open,High,Low,Close,Volume,Name\n2010-01-04,1,2,x,1.5,100,X\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--output", dir}, "exactly one of --data or --kaggle-download"},
		{[]string{"--data", bad}, "--output is required"},
		{[]string{"--data", bad, "--output", dir}, bad + ":2: bad Low"},
		{[]string{"--data", bad, "--output", dir, "--train-end", "2015-13-01"}, "bad Date"},
		{[]string{"--bogus"}, "flag provided but not defined"},
	} {
		code, out := run(t, c.args...)
		if code != ExitUsage || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, output %q; want 2 and %q", c.args, code, out, c.want)
		}
	}
}

func TestKaggleDownloadEndToEnd(t *testing.T) {
	d, ok := datadir.TickerDir()
	if !ok {
		t.Skip(datadir.SkipMessage)
	}
	// an archive with two real tickers, in the Kaggle layout
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, tk := range []string{"AAPL", "KO"} {
		b, err := os.ReadFile(filepath.Join(d, tk+"_2006-01-01_to_2018-01-01.csv"))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := zw.Create(tk + "_2006-01-01_to_2018-01-01.csv")
		w.Write(b)
	}
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, k, ok := r.BasicAuth(); !ok || u != "alice" || k != "topsecret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/api/v1/datasets/download/szrlee/stock-time-series-20050101-to-20171231" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Write(buf.Bytes())
	}))
	defer srv.Close()
	out := t.TempDir()
	t.Setenv("KAGGLE_USERNAME", "alice")
	t.Setenv("KAGGLE_KEY", "topsecret")
	code, log := run(t, "--kaggle-download", "--kaggle-api", srv.URL+"/api/v1", "--output", out)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, log)
	}
	if strings.Contains(log, "topsecret") {
		t.Error("the Kaggle key was logged")
	}
	s, err := dataset.ReadSplit(out, "train")
	if err != nil || s.Rows() != 2467+2468 {
		t.Fatalf("train split: %v rows, %v", s, err)
	}
	// 404 and 401 paths
	code, log = run(t, "--kaggle-download", "--kaggle-api", srv.URL+"/api/v1", "--kaggle-dataset", "szrlee/missing", "--output", out)
	if code != ExitUsage || !strings.Contains(log, "HTTP 404") {
		t.Errorf("404: exit %d %s", code, log)
	}
	t.Setenv("KAGGLE_KEY", "wrong")
	code, log = run(t, "--kaggle-download", "--kaggle-api", srv.URL+"/api/v1", "--output", out)
	if code != ExitUsage || !strings.Contains(log, "HTTP 401") || strings.Contains(log, "wrong") {
		t.Errorf("401: exit %d %s", code, log)
	}
	t.Setenv("KAGGLE_KEY", "")
	if code, _ := run(t, "--kaggle-download", "--output", out); code != ExitUsage {
		t.Errorf("missing credentials: exit %d", code)
	}
}
