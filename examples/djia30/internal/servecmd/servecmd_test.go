package servecmd

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/djia30/internal/model"
)

func writeModel(t *testing.T, base string) {
	t.Helper()
	f := model.File{Format: model.Format, FormatVersion: model.FormatVersion, Features: []string{"a", "b"},
		Normalization: model.Normalization{Mean: []float64{0, 0}, Std: []float64{1, 1}},
		Layers:        []model.Layer{{Activation: "sigmoid", Inputs: 2, Outputs: 1, Weights: [][]float64{{1}, {1}}, Bias: []float64{0}}}}
	mj, _ := json.Marshal(f)
	sig, _ := model.Signature(f.Features)
	if _, err := model.WriteVersion(base, 1, map[string][]byte{model.ModelFile: mj, model.SignatureFile: sig}); err != nil {
		t.Fatal(err)
	}
}

func TestMainListensOnFreePort(t *testing.T) {
	base := t.TempDir()
	writeModel(t, base)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"--rest_api_port", "0", "--rest_api_host", "127.0.0.1", "--model_name", "djia30", "--model_base_path", base}, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			addr = a
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("no listening line (got %q)", addr)
	}
	resp, err := http.Post("http://"+addr+"/v1/models/djia30:predict", "application/json", strings.NewReader(`{"instances":[[0,0]]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(b)) != `{"predictions":[[0.5]]}` {
		t.Errorf("predict: %s", b)
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}
}

func TestUsage(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.config")
	os.WriteFile(cfg, []byte("model_config_list { bogus {} }"), 0o644)
	for _, args := range [][]string{
		{},
		{"--model_name", "x"},
		{"--model_config_file", cfg},
		{"--model_config_file", cfg, "--model_name", "x", "--model_base_path", "/y"},
		{"--rest_api_port", "70000", "--model_name", "x", "--model_base_path", "/y"},
		{"--nope"},
	} {
		var sb strings.Builder
		if code := Main(context.Background(), args, &sb); code != ExitUsage {
			t.Errorf("%v: exit %d (%s)", args, code, sb.String())
		}
	}
}

// startServe runs Main with args and returns its address (or "" and the
// exit code when it ended before listening).
func startServe(t *testing.T, args []string) (string, *strings.Builder, chan int) {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var log strings.Builder
	go func() {
		done <- Main(ctx, args, pw)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			go io.Copy(io.Discard, pr)
			return a, &log, done
		}
	}
	return "", &log, done
}

// The Kubernetes serving backend's pods run the image with exactly these
// flags (agents/backends/serving/kubernetes); tensorflow/serving takes them
// the same way.
func TestKubernetesBackendsCommandLine(t *testing.T) {
	base := t.TempDir()
	writeModel(t, base)
	dir := t.TempDir()
	cfg, mon := filepath.Join(dir, "canary.config"), filepath.Join(dir, "monitoring.config")
	os.WriteFile(cfg, []byte(`model_config_list { config { name: "djia30" base_path: "`+base+`" model_platform: "tensorflow"
  model_version_policy { specific { versions: 1 } }
  version_labels { key: "canary" value: 1 } } }`), 0o644)
	os.WriteFile(mon, []byte("prometheus_config {\n  enable: true\n  path: \"/monitoring/prometheus/metrics\"\n}\n"), 0o644)
	args := []string{"--port=8500", "--rest_api_port=0", "--rest_api_host=127.0.0.1", "--model_config_file=" + cfg,
		"--model_config_file_poll_wait_seconds=10", "--monitoring_config_file=" + mon}

	// Without --allow_version_labels_for_unavailable_models TF Serving
	// refuses a label at start-up (it checks labels before loading).
	addr, log, done := startServe(t, args)
	if addr != "" {
		t.Fatalf("started with a label on a version not loaded yet, without the flag")
	}
	if code := <-done; code != ExitUsage || !strings.Contains(log.String(), "Request to assign label to version 1 of model djia30, which is not currently available for inference") {
		t.Fatalf("exit %d: %s", code, log)
	}
	done <- ExitUsage // for the cleanup

	addr, log, _ = startServe(t, append(args, "--allow_version_labels_for_unavailable_models=true"))
	if addr == "" {
		t.Fatalf("did not start: %s", log)
	}
	resp, err := http.Post("http://"+addr+"/v1/models/djia30/labels/canary:predict", "application/json", strings.NewReader(`{"instances":[[0,0]]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(b)) != `{"predictions":[[0.5]]}` {
		t.Fatalf("predict by label: %s", b)
	}
	resp, err = http.Get("http://" + addr + "/monitoring/prometheus/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `:tensorflow:serving:request_count{model_name="djia30",model_version="1",status="OK"} 1`) {
		t.Fatalf("metrics %d: %s", resp.StatusCode, b)
	}

	// The monitoring config decides the path (and whether there is one).
	os.WriteFile(mon, []byte("prometheus_config { enable: true path: \"/metrics\" }"), 0o644)
	addr, log, _ = startServe(t, append(args, "--allow_version_labels_for_unavailable_models"))
	if addr == "" {
		t.Fatalf("did not start: %s", log)
	}
	for path, want := range map[string]int{"/metrics": 200, "/monitoring/prometheus/metrics": 404} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	var sb strings.Builder
	if code := Main(context.Background(), []string{"--port=8501", "--rest_api_port=8501", "--model_config_file=" + cfg}, &sb); code != ExitUsage || !strings.Contains(sb.String(), "cannot be the same as --port") {
		t.Errorf("same ports: exit %d %s", code, sb.String())
	}
}
