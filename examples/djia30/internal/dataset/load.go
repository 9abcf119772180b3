package dataset

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Load reads the input at path: either a folder of per-ticker CSVs in the
// Kaggle archive layout (<TICKER>_2006-01-01_to_2018-01-01.csv; the merged
// all_stocks_*.csv files in the same folder are ignored when per-ticker files
// exist, else the widest all_stocks_*.csv is used) or one merged CSV (such as
// all_stocks_2006-01-01_to_2018-01-01.csv or djia30-2017.csv). It returns the
// rows in file order, not yet cleaned. Errors in the data are *InputError values
// naming the file and line; a missing path is an *InputError too.
func Load(path string) ([]Row, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &InputError{File: path, Msg: "cannot read input: " + err.Error()}
	}
	var files []string
	if fi.IsDir() {
		files, err = inputFiles(path)
		if err != nil {
			return nil, err
		}
	} else {
		files = []string{path}
	}
	parsed := make([][]Row, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b, err := os.ReadFile(f)
			if err != nil {
				errs[i] = fmt.Errorf("read %s: %w", f, err)
				return
			}
			parsed[i], errs[i] = ParseFile(f, b)
		}()
	}
	wg.Wait()
	n := 0
	for i := range files {
		if errs[i] != nil {
			return nil, errs[i]
		}
		n += len(parsed[i])
	}
	all := make([]Row, 0, n)
	for _, p := range parsed {
		all = append(all, p...)
	}
	return all, nil
}

// inputFiles lists the CSVs to read in a folder, sorted by name.
func inputFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, &InputError{File: dir, Msg: "cannot list input folder: " + err.Error()}
	}
	var perTicker, merged []string
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.EqualFold(filepath.Ext(name), ".csv") {
			continue
		}
		if strings.HasPrefix(name, "all_stocks_") {
			merged = append(merged, filepath.Join(dir, name))
		} else {
			perTicker = append(perTicker, filepath.Join(dir, name))
		}
	}
	sort.Strings(perTicker)
	sort.Strings(merged)
	if len(perTicker) > 0 {
		return perTicker, nil
	}
	if len(merged) > 0 {
		// all_stocks_2006-01-01_to_2018-01-01.csv sorts before all_stocks_2017-...
		return merged[:1], nil
	}
	return nil, &InputError{File: dir, Msg: "no CSV files in folder"}
}
