// Package datadir locates the real DJIA 30 data set for tests and benchmarks.
//
// The data set is not committed to the repository. On the development machines
// the repository is /work/main and the data is /work/shared/data; in CI the
// repository is cloned elsewhere with a copy of shared/ beside the clone, i.e.
// <clone>/../shared/data. The environment variable BRANCHML_DATA_DIR, when set,
// names the data directory (the one holding djia30/ and djia30-2017.csv) and
// wins over the search.
package datadir

import (
	"os"
	"path/filepath"
)

// EnvVar is the environment variable that overrides the search: it names the
// directory that contains djia30/ (per-ticker CSVs) and djia30-2017.csv.
const EnvVar = "BRANCHML_DATA_DIR"

// Find returns the data directory (the one that contains djia30/) and true, or
// "" and false when it cannot be found. It honours BRANCHML_DATA_DIR first, then
// walks up from the current working directory looking for shared/data/djia30 in
// each ancestor (which finds both /work/shared/data from /work/main/... and
// <clone>/../shared/data from inside a clone).
func Find() (string, bool) {
	if d := os.Getenv(EnvVar); d != "" {
		if isDir(filepath.Join(d, "djia30")) {
			return d, true
		}
		return "", false
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for dir := wd; ; {
		cand := filepath.Join(dir, "shared", "data")
		if isDir(filepath.Join(cand, "djia30")) {
			return cand, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// TickerDir returns the folder of per-ticker CSVs (<data>/djia30) and true, or
// "" and false when the data set is absent.
func TickerDir() (string, bool) {
	d, ok := Find()
	if !ok {
		return "", false
	}
	return filepath.Join(d, "djia30"), true
}

// Merged2017 returns the path of the merged 2017-only CSV (<data>/djia30-2017.csv)
// and true, or "" and false when it is absent.
func Merged2017() (string, bool) {
	d, ok := Find()
	if !ok {
		return "", false
	}
	p := filepath.Join(d, "djia30-2017.csv")
	if _, err := os.Stat(p); err != nil {
		return "", false
	}
	return p, true
}

// SkipMessage is the message tests pass to t.Skip when the data set is absent.
const SkipMessage = "real DJIA 30 data not found: set BRANCHML_DATA_DIR or place shared/data/djia30 beside the repository"

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
