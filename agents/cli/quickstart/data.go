package quickstart

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrNoData is returned when no DJIA 30 data was given or found.
var ErrNoData = errors.New("no DJIA 30 data found")

// dataHelp says how to get the data set.
const dataHelp = `pass --data DIR (a folder of the Kaggle per-ticker CSVs, or the merged all_stocks_*.csv),
or download the Kaggle dataset "szrlee/stock-time-series-20050101-to-20171231"
(https://www.kaggle.com/datasets/szrlee/stock-time-series-20050101-to-20171231, public domain)
and unzip it into a folder`

// findData returns the data path: explicit when given (it must exist), else
// shared/data/djia30 beside the repository (../shared/data/djia30 of the
// branchml checkout or of any parent of the working directory).
func findData(explicit string, starts ...string) (string, error) {
	if explicit != "" {
		abs, err := filepath.Abs(explicit)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("--data %s: %w; %s", explicit, err, dataHelp)
		}
		return abs, nil
	}
	for _, start := range starts {
		dir, err := filepath.Abs(start)
		if err != nil {
			continue
		}
		for {
			cand := filepath.Join(dir, "..", "shared", "data", "djia30")
			if st, err := os.Stat(cand); err == nil && st.IsDir() {
				return filepath.Clean(cand), nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("%w: %s", ErrNoData, dataHelp)
}

// findExample returns the examples/djia30 folder of the branchml checkout
// found from the starting directories.
func findExample(explicit string, starts ...string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(filepath.Join(explicit, "branchml.yaml")); err != nil {
			return "", fmt.Errorf("--example %s: no branchml.yaml there: %w", explicit, err)
		}
		return filepath.Abs(explicit)
	}
	for _, start := range starts {
		dir, err := filepath.Abs(start)
		if err != nil {
			continue
		}
		for {
			cand := filepath.Join(dir, "examples", "djia30")
			if _, err := os.Stat(filepath.Join(cand, "branchml.yaml")); err == nil {
				return cand, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("examples/djia30 not found: run from the branchml checkout, or pass --example DIR")
}
