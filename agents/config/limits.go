package config

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Size limits of every input the agents read (documented in
// agents/README.md, "Input limits"). They sit in this package because it is
// the one every other may import (config imports nothing of ours). A larger
// input is refused with a *TooLargeError before it is parsed, so that a
// huge file costs no memory beyond the limit.
const (
	// MaxConfigBytes bounds branchml.yaml and the --params JSON file.
	MaxConfigBytes = 1 << 20
	// MaxSpecBytes bounds a compiled pipeline spec (KFP v2 IR YAML) and
	// deploy.yaml.
	MaxSpecBytes = 8 << 20
	// MaxRecordBytes bounds a record or lock the stages write back
	// (components, pipeline and training locks, run and lineage records,
	// deploy status, pull-request records) and local state files.
	MaxRecordBytes = 4 << 20
	// MaxMetricsBytes bounds metrics.json of a training run.
	MaxMetricsBytes = 16 << 20
)

// TooLargeError is an input over its size limit.
type TooLargeError struct {
	// Name is the file or object read.
	Name  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %s, the limit for this input (see agents/README.md, Input limits)", e.Name, sizeString(e.Limit))
}

// ErrTooLarge matches every *TooLargeError with errors.Is.
var ErrTooLarge = errors.New("input too large")

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// ReadLimited reads all of r, named name in the error, but at most limit
// bytes: more is a *TooLargeError.
func ReadLimited(r io.Reader, name string, limit int64) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > limit {
		return nil, &TooLargeError{Name: name, Limit: limit}
	}
	return raw, nil
}

// ReadFileLimited reads the file at path, of at most limit bytes: a larger
// one is a *TooLargeError (found from its size before it is read, when it
// has one); a missing one an *os.PathError as from os.ReadFile.
func ReadFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > limit {
		return nil, &TooLargeError{Name: path, Limit: limit}
	}
	return ReadLimited(f, path, limit)
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
