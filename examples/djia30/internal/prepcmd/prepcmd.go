// Package prepcmd is the prepare-data command: flag parsing, the optional
// Kaggle download and the call into package dataset.
package prepcmd

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/branchml/djia30/internal/dataset"
	"github.com/branchml/djia30/internal/kaggle"
)

// Exit codes of the command.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2 // bad usage or bad input data
)

// Main runs prepare-data with args (without the program name), logging to
// stderr, and returns the exit code. Flags:
//
//	--data PATH           folder of per-ticker CSVs or one merged CSV
//	--kaggle-download     download the data set with KAGGLE_USERNAME/KAGGLE_KEY
//	--kaggle-api URL      Kaggle API base (default https://www.kaggle.com/api/v1)
//	--kaggle-dataset O/D  default szrlee/stock-time-series-20050101-to-20171231
//	--output DIR          where the splits, schema.json and stats.json go
//	--train-end DATE      last train date, default 2015-12-31
//	--validation-end DATE last validation date, default 2016-12-31
//	--tickers A,B         keep only these tickers
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("prepare-data", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "folder of per-ticker CSVs (Kaggle archive layout) or one merged CSV")
	dl := fs.Bool("kaggle-download", false, "download the data set through the Kaggle API (needs env KAGGLE_USERNAME and KAGGLE_KEY)")
	api := fs.String("kaggle-api", kaggle.DefaultBaseURL, "Kaggle API base URL")
	ds := fs.String("kaggle-dataset", kaggle.DefaultDataset, "Kaggle dataset owner/name")
	out := fs.String("output", "", "output folder (required)")
	trainEnd := fs.String("train-end", "2015-12-31", "last date of the train split (inclusive)")
	valEnd := fs.String("validation-end", "2016-12-31", "last date of the validation split (inclusive); later dates are test")
	tickers := fs.String("tickers", "", "comma-separated tickers to keep (default all)")
	timeout := fs.Duration("timeout", 10*time.Minute, "overall deadline for the download")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "prepare-data: unexpected arguments %q\n", fs.Args())
		return ExitUsage
	}
	if *out == "" {
		fmt.Fprintln(stderr, "prepare-data: --output is required")
		return ExitUsage
	}
	if (*data == "") == !*dl {
		fmt.Fprintln(stderr, "prepare-data: give exactly one of --data or --kaggle-download")
		return ExitUsage
	}
	input := *data
	if *dl {
		user, key := os.Getenv("KAGGLE_USERNAME"), os.Getenv("KAGGLE_KEY")
		if user == "" || key == "" {
			fmt.Fprintln(stderr, "prepare-data: --kaggle-download needs env KAGGLE_USERNAME and KAGGLE_KEY")
			return ExitUsage
		}
		tmp, err := os.MkdirTemp("", "djia30-kaggle-")
		if err != nil {
			fmt.Fprintln(stderr, "prepare-data:", err)
			return ExitFailure
		}
		defer os.RemoveAll(tmp)
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		fmt.Fprintf(stderr, "prepare-data: downloading %s from %s as %s\n", *ds, *api, user)
		n, err := kaggle.Download(ctx, kaggle.Options{BaseURL: *api, Dataset: *ds, Username: user, Key: key, Dest: tmp})
		if err != nil {
			fmt.Fprintln(stderr, "prepare-data:", err)
			if kaggle.IsClientError(err) {
				return ExitUsage
			}
			return ExitFailure
		}
		fmt.Fprintf(stderr, "prepare-data: extracted %d CSV files\n", n)
		input = tmp
	}
	opts := dataset.Options{Input: input, Output: *out, TrainEnd: *trainEnd, ValidationEnd: *valEnd}
	if *tickers != "" {
		for _, t := range strings.Split(*tickers, ",") {
			if t = strings.TrimSpace(t); t != "" {
				opts.Tickers = append(opts.Tickers, t)
			}
		}
	}
	start := time.Now()
	res, err := dataset.Prepare(opts)
	if err != nil {
		fmt.Fprintln(stderr, "prepare-data:", err)
		if dataset.IsInputError(err) {
			return ExitUsage
		}
		return ExitFailure
	}
	sum, _ := json.Marshal(res.Stats.Rows)
	fmt.Fprintf(stderr, "prepare-data: wrote %s in %s: rows %s\n", *out, time.Since(start).Round(time.Millisecond), sum)
	return ExitOK
}
