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
