package kaggle

import (
	"archive/zip"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// zipOf builds a zip archive with the given entries (name → content).
func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(content))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FakeKaggle serves archive at /api/v1/datasets/download/szrlee/stock-time-series-20050101-to-20171231
// to user "u" with key "k".
func fakeKaggle(t *testing.T, archive []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, k, ok := r.BasicAuth()
		if !ok || u != "u" || k != "k" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"code":401,"message":"Unauthenticated"}`))
			return
		}
		if r.URL.Path != "/api/v1/datasets/download/"+DefaultDataset {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/zip")
		w.Write(archive)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDownload(t *testing.T) {
	archive := zipOf(t, map[string]string{
		"AAPL_2006-01-01_to_2018-01-01.csv":   "Date,Open,High,Low,Close,Volume,Name\n",
		"sub/KO_2006-01-01_to_2018-01-01.csv": "x\n",
		"../evil.csv":                         "y\n",
		"README.txt":                          "ignored",
	})
	srv := fakeKaggle(t, archive)
	dest := t.TempDir()
	n, err := Download(context.Background(), Options{BaseURL: srv.URL + "/api/v1", Username: "u", Key: "k", Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("extracted %d files, want 3", n)
	}
	ents, _ := os.ReadDir(dest)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "AAPL_2006-01-01_to_2018-01-01.csv,KO_2006-01-01_to_2018-01-01.csv,evil.csv" {
		t.Errorf("files %v", names)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dest), "evil.csv")); err == nil {
		t.Error("zip entry escaped the destination")
	}
}

func TestDownloadErrors(t *testing.T) {
	srv := fakeKaggle(t, zipOf(t, map[string]string{"a.csv": "x"}))
	_, err := Download(context.Background(), Options{BaseURL: srv.URL + "/api/v1", Username: "u", Key: "secret-key", Dest: t.TempDir()})
	if !IsClientError(err) || !strings.Contains(err.Error(), "HTTP 401") || strings.Contains(err.Error(), "secret-key") {
		t.Errorf("401: %v", err)
	}
	_, err = Download(context.Background(), Options{BaseURL: srv.URL + "/api/v1", Dataset: "szrlee/nope", Username: "u", Key: "k", Dest: t.TempDir()})
	if !IsClientError(err) || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "szrlee/nope not found") {
		t.Errorf("404: %v", err)
	}
	if _, err := Download(context.Background(), Options{Username: "u", Key: "k", Dataset: "bad", Dest: t.TempDir()}); err == nil {
		t.Error("bad dataset name accepted")
	}
	if _, err := Extract([]byte("not a zip"), t.TempDir()); err == nil {
		t.Error("non-zip accepted")
	}
	if _, err := Extract(zipOf(t, map[string]string{"a.txt": "x"}), t.TempDir()); err == nil {
		t.Error("archive without CSVs accepted")
	}
}
