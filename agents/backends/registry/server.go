package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// IDHeader is the response header with which the embedded registry names its
// data directory's identity (the content of <dir>/id), so that a process
// finding an address in <dir>/addr can tell its own registry from another
// server that took the port.
const IDHeader = "Branchml-Registry-Id"

// Files in a registry directory besides blobs/ and manifests/.
const (
	// AddrFile holds the host:port the registry last listened on.
	AddrFile = "addr"
	// IDFile holds the registry directory's random identity (hex).
	IDFile = "id"
)

type serverOptions struct {
	requestLog io.Writer
}

// ServerOption configures NewHandler and Start.
type ServerOption func(*serverOptions)

// WithRequestLog writes one line per request to w (default: discarded).
func WithRequestLog(w io.Writer) ServerOption { return func(o *serverOptions) { o.requestLog = w } }

// NewHandler returns an http.Handler that speaks the OCI distribution API
// (go-containerregistry's pkg/registry) with its data in dir:
//
//	dir/blobs/sha256/<hex>                       layers, configs and manifest bodies
//	dir/manifests/<repository>/<reference>.json  {"mediaType","digest"} per tag or digest
//	dir/id                                       the directory's identity (IDHeader)
//
// go-containerregistry v0.22 keeps manifests in memory only; the handler
// persists every manifest PUT and DELETE itself and replays the stored ones
// on start, so a registry restarted on the same dir serves the same
// manifests, tags and catalog. It returns an error when dir cannot be
// created or a stored manifest cannot be restored.
func NewHandler(dir string, opts ...ServerOption) (http.Handler, error) {
	o := serverOptions{requestLog: io.Discard}
	for _, opt := range opts {
		opt(&o)
	}
	for _, d := range []string{filepath.Join(dir, blobsDir), filepath.Join(dir, refsDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("registry dir: %w", err)
		}
	}
	id, err := ensureID(dir)
	if err != nil {
		return nil, err
	}
	inner := ggcrregistry.New(
		ggcrregistry.WithBlobHandler(ggcrregistry.NewDiskBlobHandler(filepath.Join(dir, blobsDir))),
		ggcrregistry.Logger(log.New(o.requestLog, "registry: ", log.LstdFlags)),
	)
	p := &persistent{dir: dir, inner: inner, id: id}
	if err := p.replay(); err != nil {
		return nil, fmt.Errorf("registry %s: %w", dir, err)
	}
	return p, nil
}

// ensureID reads dir/id, creating it with 16 random bytes (hex) when missing.
func ensureID(dir string) (string, error) {
	path := filepath.Join(dir, IDFile)
	raw, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(raw))) > 0 {
		return strings.TrimSpace(string(raw)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	if err := atomicfile.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", err
	}
	return id, nil
}

// Server is a running embedded registry.
type Server struct {
	// Addr is the host:port it listens on, e.g. "127.0.0.1:40123".
	Addr string
	// Dir is its data directory.
	Dir  string
	srv  *http.Server
	done chan error
	// fresh are the connections accepted that have not begun a request
	// (http.StateNew), which Close closes as Shutdown closes idle ones.
	mu    sync.Mutex
	fresh map[net.Conn]bool
}

// connState tracks the connections that have not begun a request.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateNew {
		s.fresh[c] = true
	} else {
		delete(s.fresh, c)
	}
}

// closeFresh closes the connections that have not begun a request.
func (s *Server) closeFresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.fresh {
		c.Close()
		delete(s.fresh, c)
	}
}

// Start serves the registry of dir on addr ("127.0.0.1:0" picks a free
// port) in a goroutine and records the address in dir/addr. addr must be a
// loopback address: the embedded registry has no authentication.
func Start(dir, addr string, opts ...ServerOption) (*Server, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	h, err := NewHandler(dir, opts...)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry listen on %s: %w", addr, err)
	}
	s := &Server{Addr: ln.Addr().String(), Dir: dir, done: make(chan error, 1), fresh: map[net.Conn]bool{},
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	s.srv.ConnState = s.connState
	if err := atomicfile.WriteFile(filepath.Join(dir, AddrFile), []byte(s.Addr+"\n"), 0o644); err != nil {
		ln.Close()
		return nil, err
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server, waiting up to 5 s for requests in flight. A
// connection that has not begun a request (a client's spare dial) is closed
// like an idle one: http.Server.Shutdown alone would wait 5 s for it. The
// addr file stays, so that the next start reuses the port.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.srv.Shutdown(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
	for waiting := true; waiting; {
		select {
		case err = <-shut:
			waiting = false
		case <-tick.C:
			// Shutdown closes the listener first: no connection is new after it.
			s.closeFresh()
		}
	}
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Done is closed (receives the Serve error) when the server stops.
func (s *Server) Done() <-chan error { return s.done }

// CheckLoopback returns an error unless addr is HOST:PORT with a loopback
// HOST (127.0.0.0/8, ::1 or localhost): the embedded registry never listens
// on another interface.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("registry address %q: %w (use host:port, e.g. 127.0.0.1:0)", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("registry address %q is not loopback: the embedded registry has no authentication; use 127.0.0.1:PORT", addr)
	}
	return nil
}

// RecordedAddr returns the address in dir/addr ("" when there is none).
func RecordedAddr(dir string) string {
	raw, err := os.ReadFile(filepath.Join(dir, AddrFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}

// Probe reports whether the registry of dir answers at addr: GET /v2/ gives
// 200 with dir's identity in IDHeader, within timeout.
func Probe(ctx context.Context, dir, addr string, timeout time.Duration) bool {
	if addr == "" {
		return false
	}
	raw, err := os.ReadFile(filepath.Join(dir, IDFile))
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get(IDHeader) == strings.TrimSpace(string(raw))
}

// LocalDir is the embedded registry's directory below a state directory
// (see agents/internal/statedir): <stateDir>/registry.
func LocalDir(stateDir string) string { return filepath.Join(stateDir, "registry") }

// EnsureLocal makes the embedded registry of stateDir reachable and returns
// its host:port. When the address recorded in <stateDir>/registry/addr
// answers as this registry (a `branchml registry serve` or another command
// running), it is reused and stop does nothing. Otherwise a registry is
// started in this process, on the recorded port when it is free (so that
// addresses stay stable across restarts), else on a free loopback port
// (recorded for the next start); stop shuts it down. Other processes find it
// through the addr file while it runs. preferred, when not "", is the
// address to listen on instead of the recorded one (config backends.registry.addr).
func EnsureLocal(ctx context.Context, stateDir string, preferred ...string) (addr string, stop func(), err error) {
	dir := LocalDir(stateDir)
	want := RecordedAddr(dir)
	if len(preferred) > 0 && preferred[0] != "" {
		want = preferred[0]
	}
	if Probe(ctx, dir, want, 2*time.Second) {
		return want, func() {}, nil
	}
	var s *Server
	if want != "" {
		s, err = Start(dir, want)
		if err != nil && len(preferred) > 0 && preferred[0] != "" {
			return "", nil, err
		}
	}
	if s == nil {
		s, err = Start(dir, "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
	}
	return s.Addr, func() { _ = s.Close() }, nil
}
