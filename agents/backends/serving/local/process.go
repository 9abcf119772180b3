package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/internal/procid"
	"github.com/branchml/branchml/agents/records"
)

// procFile is what the plane records about one running model server in
// its state file, so that another process can see it and a later plane
// can stop it should this plane die without stopping it.
type procFile struct {
	Variant serving.Variant `json:"variant"`
	// ID is the server's PID and start time: nothing is signalled unless both match.
	ID        procid.ID        `json:"process"`
	URL       string           `json:"url"`
	Model     records.ModelRef `json:"model"`
	Argv      []string         `json:"argv"`
	Log       string           `json:"log"`
	StartedAt time.Time        `json:"startedAt"`
	// Since is when the server took its current weight.
	Since time.Time `json:"since,omitzero"`
}

// proc is one model server process, a child of the plane.
type proc struct {
	procFile
	up   *Upstream
	done chan struct{} // closed when the child exited
	// exitErr is what Wait returned (read after done).
	exitErr error
}

var listeningRE = regexp.MustCompile(`listening on ([0-9.:\[\]a-zA-Z-]+:[0-9]+)`)

// LoopbackHost is the address every model server is told to listen on
// (--rest_api_host, the example server's flag) and checked to listen on.
const LoopbackHost = "127.0.0.1"

// startProc starts command for model m with a model config file listing
// only m.Version, waits for "listening on HOST:PORT" on stderr (HOST must
// be loopback) and for the version to report AVAILABLE. A missing version
// directory, and a version the server reports as failed to load, wrap
// serving.ErrLoadFailed and are reported at once. The server gets SIGKILL
// when the plane dies (Pdeathsig), so none outlives it unseen.
func startProc(ctx context.Context, command []string, dir string, v serving.Variant, m records.ModelRef, readyTimeout time.Duration) (*proc, error) {
	op := fmt.Sprintf("start %s %s v%d", v, m.Name, m.Version)
	if len(command) == 0 {
		return nil, &serving.Error{Op: op, Err: errors.New("no serving command: set deploy.serving.command or deploy.serving.component")}
	}
	base, err := filepath.Abs(m.Path)
	if err != nil {
		return nil, &serving.Error{Op: op, Err: err}
	}
	vdir := filepath.Join(base, strconv.FormatInt(m.Version, 10))
	if st, err := os.Stat(vdir); err != nil || !st.IsDir() {
		return nil, &serving.Error{Op: op, Err: fmt.Errorf("%w: no version directory %s", serving.ErrLoadFailed, vdir)}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &serving.Error{Op: op, Err: err}
	}
	cfgPath := filepath.Join(dir, "models.config")
	cfg := tfserving.FormatModelConfig(tfserving.ModelConfig{Name: m.Name, BasePath: base, Versions: []int64{m.Version}})
	if err := atomicfile.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, &serving.Error{Op: op, Err: err}
	}
	argv := append(append([]string(nil), command...), "--rest_api_host="+LoopbackHost, "--rest_api_port=0",
		"--model_config_file="+cfgPath, "--file_system_poll_wait_seconds=1")
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, &serving.Error{Op: op, Err: err}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, &serving.Error{Op: op + " (" + argv[0] + ")", Err: err}
	}
	logf.Close()
	id, _ := procid.Of(cmd.Process.Pid)
	if id.PID == 0 {
		id = procid.ID{PID: cmd.Process.Pid}
	}
	p := &proc{procFile: procFile{Variant: v, ID: id, Model: m, Argv: argv, Log: logPath, StartedAt: time.Now().UTC()}, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	go func() {
		for {
			raw, _ := os.ReadFile(logPath)
			if mm := listeningRE.FindSubmatch(raw); mm != nil {
				addr <- string(mm[1])
				return
			}
			select {
			case <-p.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	fail := func(err error) (*proc, error) {
		p.stop(2 * time.Second)
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 800 {
			tail = tail[len(tail)-800:]
		}
		tail = bytes.TrimSpace(tail)
		return nil, &serving.Error{Op: op + " (" + argv[0] + ")", Err: fmt.Errorf("%w; server log %s: %s", err, logPath, tail)}
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	select {
	case a := <-addr:
		host, _, _ := net.SplitHostPort(a)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fail(fmt.Errorf("the server listens on %s, not on loopback: it must take --rest_api_host=%s", a, LoopbackHost))
		}
		p.URL = "http://" + a
	case <-p.done:
		return fail(errors.New("exited before listening"))
	case <-rctx.Done():
		return fail(fmt.Errorf("no \"listening on HOST:PORT\" line on stderr: %w", rctx.Err()))
	}
	c, err := tfserving.New(p.URL, tfserving.WithTimeout(2*time.Second))
	if err != nil {
		return fail(err)
	}
	werr := make(chan error, 1)
	go func() { werr <- c.WaitAvailable(rctx, m.Name, m.Version, 20*time.Millisecond) }()
	select {
	case err := <-werr:
		var le *tfserving.LoadError
		if errors.As(err, &le) {
			return fail(fmt.Errorf("%w: %v", serving.ErrLoadFailed, err))
		}
		if err != nil {
			return fail(err)
		}
	case <-p.done:
		cancel()
		<-werr
		return fail(fmt.Errorf("exited while loading version %d (%v)", m.Version, p.exitErr))
	}
	p.up = NewUpstream(p.URL)
	return p, nil
}

// alive reports whether the child still runs.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the child (it is ours: the PID cannot have been
// reused while we have not reaped it), waits up to grace, then SIGKILL.
func (p *proc) stop(grace time.Duration) {
	if !p.alive() {
		return
	}
	_ = syscall.Kill(p.ID.PID, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(p.ID.PID, syscall.SIGKILL)
	<-p.done
}

func (p *proc) String() string {
	return p.Model.Name + " v" + strconv.FormatInt(p.Model.Version, 10) + " (" + string(p.Variant) + ", pid " + strconv.Itoa(p.ID.PID) + ", " + p.URL + ")"
}
