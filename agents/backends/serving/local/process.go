package local

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/branchml/branchml/agents/records"
)

// procFile is what <stateDir>/serving/<model>/<variant>.json records about
// one running model server, so that another process can find it.
type procFile struct {
	Variant   serving.Variant  `json:"variant"`
	PID       int              `json:"pid"`
	URL       string           `json:"url"`
	Model     records.ModelRef `json:"model"`
	Argv      []string         `json:"argv"`
	Log       string           `json:"log"`
	StartedAt time.Time        `json:"startedAt"`
}

// proc is one model server process.
type proc struct {
	procFile
	up   *Upstream
	done chan struct{} // closed when our child exited; nil for an adopted process
}

var listeningRE = regexp.MustCompile(`listening on ([0-9.:\[\]a-zA-Z-]+:[0-9]+)`)

// startProc starts command for model m with a model config file listing
// only m.Version, waits for "listening on HOST:PORT" on stderr and for the
// version to report AVAILABLE.
func startProc(ctx context.Context, command []string, dir string, v serving.Variant, m records.ModelRef, readyTimeout time.Duration) (*proc, error) {
	if len(command) == 0 {
		return nil, &serving.Error{Op: "start " + string(v), Err: errors.New("no serving command: set deploy.serving.command or deploy.serving.component")}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base, err := filepath.Abs(m.Path)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "models.config")
	cfg := tfserving.FormatModelConfig(tfserving.ModelConfig{Name: m.Name, BasePath: base, Versions: []int64{m.Version}})
	if err := atomicfile.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	argv := append(append([]string(nil), command...), "--rest_api_port=0", "--model_config_file="+cfgPath, "--file_system_poll_wait_seconds=1")
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Output goes to a file, not a pipe, so the server outlives this process.
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, &serving.Error{Op: fmt.Sprintf("start %s %s v%d", v, m.Name, m.Version), Err: err}
	}
	logf.Close()
	p := &proc{procFile: procFile{Variant: v, PID: cmd.Process.Pid, Model: m, Argv: argv, Log: logPath, StartedAt: time.Now().UTC()}, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		_ = cmd.Wait()
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
		_ = p.stop(context.Background(), 2*time.Second)
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 800 {
			tail = tail[len(tail)-800:]
		}
		return nil, &serving.Error{Op: fmt.Sprintf("start %s %s v%d (%s)", v, m.Name, m.Version, argv[0]), Err: fmt.Errorf("%w; server log %s: %s", err, logPath, tail)}
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	select {
	case a := <-addr:
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
	if err := c.WaitAvailable(rctx, m.Name, m.Version, 20*time.Millisecond); err != nil {
		return fail(err)
	}
	p.up = NewUpstream(p.URL)
	return p, nil
}

// alive reports whether pid runs.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// stop sends SIGTERM, waits up to grace, then SIGKILL.
func (p *proc) stop(ctx context.Context, grace time.Duration) error {
	if p.PID <= 0 {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.done != nil {
			select {
			case <-p.done:
				return nil
			default:
			}
		} else if !alive(p.PID) {
			return nil
		}
		select {
		case <-deadline.C:
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			if p.done != nil {
				<-p.done
			}
			return nil
		case <-ctx.Done():
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (p *proc) String() string {
	return p.Model.Name + " v" + strconv.FormatInt(p.Model.Version, 10) + " (" + string(p.Variant) + ", pid " + strconv.Itoa(p.PID) + ", " + p.URL + ")"
}
