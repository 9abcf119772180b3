// Package kaggle downloads a Kaggle dataset archive through the Kaggle public
// API and extracts its CSV files.
//
// The API call is GET {base}/datasets/download/{owner}/{dataset} with HTTP
// basic authentication (user name and API key from kaggle.json or the
// KAGGLE_USERNAME/KAGGLE_KEY environment variables); the response body is a zip
// archive of the dataset's files. The key is never logged or put in errors.
package kaggle

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// DefaultBaseURL is the Kaggle API base URL.
const DefaultBaseURL = "https://www.kaggle.com/api/v1"

// DefaultDataset is the DJIA 30 Stock Time Series dataset (owner/name).
const DefaultDataset = "szrlee/stock-time-series-20050101-to-20171231"

// MaxArchiveBytes bounds the downloaded archive (the real one is about 3 MB).
const MaxArchiveBytes = 512 << 20

// Options configures Download.
type Options struct {
	BaseURL  string // default DefaultBaseURL
	Dataset  string // "owner/name", default DefaultDataset
	Username string // Kaggle user name (required)
	Key      string // Kaggle API key (required; never logged)
	Dest     string // folder that receives the extracted *.csv files (created if missing)
	Client   *http.Client
}

// HTTPError is a non-200 answer from the API. Status is the HTTP status code.
type HTTPError struct {
	Status int
	URL    string
	Msg    string
}

// Error describes the status without echoing credentials.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("kaggle: GET %s: HTTP %d: %s", e.URL, e.Status, e.Msg)
}

// IsClientError reports whether err is an HTTP 4xx answer (bad credentials,
// unknown dataset): a problem with the input rather than a transient failure.
func IsClientError(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status >= 400 && he.Status < 500
}

// Download fetches the dataset archive and extracts every *.csv entry
// (flattened to its base name) into o.Dest. It returns the number of CSV files
// extracted. 401/403 and 404 answers are *HTTPError values with a hint.
func Download(ctx context.Context, o Options) (int, error) {
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if o.Dataset == "" {
		o.Dataset = DefaultDataset
	}
	if o.Username == "" || o.Key == "" {
		return 0, errors.New("kaggle: user name and key are required")
	}
	owner, name, ok := strings.Cut(o.Dataset, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return 0, fmt.Errorf("kaggle: dataset %q: want owner/name", o.Dataset)
	}
	client := o.Client
	if client == nil {
		client = http.DefaultClient
	}
	url := strings.TrimRight(o.BaseURL, "/") + "/datasets/download/" + owner + "/" + name
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("kaggle: %w", err)
	}
	req.SetBasicAuth(o.Username, o.Key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("kaggle: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg := http.StatusText(resp.StatusCode)
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			msg = "unauthorized: check KAGGLE_USERNAME and KAGGLE_KEY"
		case http.StatusNotFound:
			msg = "dataset " + o.Dataset + " not found"
		}
		return 0, &HTTPError{Status: resp.StatusCode, URL: url, Msg: msg}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxArchiveBytes+1))
	if err != nil {
		return 0, fmt.Errorf("kaggle: read archive: %w", err)
	}
	if len(body) > MaxArchiveBytes {
		return 0, fmt.Errorf("kaggle: archive larger than %d bytes", MaxArchiveBytes)
	}
	return Extract(body, o.Dest)
}

// Extract writes every *.csv entry of the zip archive data into dest,
// flattened to its base name (so entries cannot escape dest). It returns the
// number of files written; an archive without CSVs is an error.
func Extract(data []byte, dest string) (int, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return 0, fmt.Errorf("kaggle: archive is not a zip: %w", err)
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return 0, err
	}
	n := 0
	for _, f := range zr.File {
		base := path.Base(strings.ReplaceAll(f.Name, "\\", "/"))
		if f.FileInfo().IsDir() || !strings.EqualFold(path.Ext(base), ".csv") || base == "." || base == ".." {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return n, fmt.Errorf("kaggle: %s: %w", f.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, MaxArchiveBytes))
		rc.Close()
		if err != nil {
			return n, fmt.Errorf("kaggle: %s: %w", f.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dest, base), b, 0o644); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 {
		return 0, errors.New("kaggle: archive has no CSV files")
	}
	return n, nil
}
