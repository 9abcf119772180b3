package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/internal/filelock"
)

var (
	_ storage.Backend   = (*Backend)(nil)
	_ storage.Restorer  = (*Backend)(nil)
	_ storage.Annotator = (*Backend)(nil)
	_ storage.Verifier  = (*Backend)(nil)
)

// DefaultWorkers is how many files are hashed and copied at once.
var DefaultWorkers = min(runtime.NumCPU(), 4)

type options struct {
	now     func() time.Time
	workers int
}

// Option configures a Backend.
type Option func(*options)

// WithClock sets the clock that stamps snapshot creation times (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithWorkers sets how many files are ingested concurrently (at least 1).
func WithWorkers(n int) Option { return func(o *options) { o.workers = max(n, 1) } }

// Backend is the local storage backend rooted at a state directory.
type Backend struct {
	root string
	opt  options
	// noReflink is set once the file system refused FICLONE: copy instead.
	noReflink atomic.Bool
}

// New returns the local backend keeping its data under stateDir (created
// when absent).
func New(stateDir string, opts ...Option) (*Backend, error) {
	o := options{now: time.Now, workers: DefaultWorkers}
	for _, f := range opts {
		f(&o)
	}
	if stateDir == "" {
		return nil, errors.New("local storage: empty state directory; set backends.stateDir")
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"volumes", "volmeta", "cas/sha256", "cas/tmp", "snapshots", "index"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("local storage: %w", err)
		}
	}
	return &Backend{root: abs, opt: o}, nil
}

// Root is the state directory.
func (b *Backend) Root() string { return b.root }

func (b *Backend) volumeDir(name string) string { return filepath.Join(b.root, "volumes", name) }

// VolumePath is the directory of volume name (it may not exist yet).
func (b *Backend) VolumePath(name string) string { return b.volumeDir(name) }
func (b *Backend) volMetaPath(name string) string {
	return filepath.Join(b.root, "volmeta", name+".json")
}
func (b *Backend) snapDir(name string) string  { return filepath.Join(b.root, "snapshots", name) }
func (b *Backend) indexPath(vol string) string { return filepath.Join(b.root, "index", vol+".json") }
func (b *Backend) blobPath(hexsum string) string {
	return filepath.Join(b.root, "cas", "sha256", hexsum[:2], hexsum[2:])
}

// lock takes the state directory's exclusive lock; the returned func releases it.
func (b *Backend) lock(ctx context.Context) (func(), error) {
	unlock, err := filelock.Lock(ctx, filepath.Join(b.root, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("wait for the lock of %s: %w", b.root, err)
	}
	return unlock, nil
}

// volumeMeta is volmeta/<name>.json.
type volumeMeta struct {
	Name       string            `json:"name"`
	Size       string            `json:"size,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	ClonedFrom string            `json:"clonedFrom,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
}

func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func notFound(kind, name string) error {
	return &storage.ObjectError{Op: "get", Kind: kind, Name: name, Status: 404, Err: storage.ErrNotFound}
}

// EnsureVolume creates the directory volumes/<spec.Name> when absent. The
// size is recorded, not enforced (directories have no quota).
func (b *Backend) EnsureVolume(ctx context.Context, spec storage.VolumeSpec) (*storage.Volume, error) {
	if err := storage.ValidName(spec.Name); err != nil {
		return nil, err
	}
	unlock, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := b.volumeDir(spec.Name)
	vol := &storage.Volume{Name: spec.Name, Size: spec.Size, Path: dir}
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return nil, fmt.Errorf("volume %s: %s is not a directory", spec.Name, dir)
		}
		var m volumeMeta
		if readJSON(b.volMetaPath(spec.Name), &m) == nil && m.Size != "" {
			vol.Size = m.Size
		}
		return vol, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m := volumeMeta{Name: spec.Name, Size: spec.Size, Labels: spec.Labels, CreatedAt: b.opt.now().UTC()}
	if err := atomicfile.WriteJSON(b.volMetaPath(spec.Name), m); err != nil {
		return nil, err
	}
	vol.Created = true
	return vol, nil
}
