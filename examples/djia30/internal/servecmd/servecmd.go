// Package servecmd is the serve command: tensorflow_model_server-style flags,
// the listener and graceful shutdown around package tfserving.
package servecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/branchml/djia30/internal/tfserving"
)

// Exit codes of the command.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Main runs the server until ctx is done and returns the exit code. With
// --rest_api_port 0 it picks a free port. Once listening it prints
// "listening on HOST:PORT" to stderr (tests and the deploy stage read it).
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("rest_api_port", 8501, "REST API port (0 picks a free port)")
	host := fs.String("rest_api_host", "0.0.0.0", "REST API bind address")
	name := fs.String("model_name", "", "model name (with --model_base_path)")
	base := fs.String("model_base_path", "", "model base path holding version directories <base>/<version>/")
	cfgFile := fs.String("model_config_file", "", "TF Serving model config file (text protobuf); replaces --model_name/--model_base_path")
	cfgPoll := fs.Int("model_config_file_poll_wait_seconds", 0, "re-read --model_config_file every N seconds (0 = never)")
	fsPoll := fs.Int("file_system_poll_wait_seconds", 1, "scan base paths for new or removed versions every N seconds (0 = never)")
	grpcPort := fs.Int("port", 0, "gRPC port of tensorflow_model_server: accepted for compatibility, not served (must differ from --rest_api_port)")
	monFile := fs.String("monitoring_config_file", "", "TF Serving MonitoringConfig (text protobuf): prometheus_config { enable: true path: \"...\" } serves the metrics at that path and no other; without it they are at "+tfserving.DefaultMetricsPath)
	allowLabels := fs.Bool("allow_version_labels_for_unavailable_models", false, "let a new version label name a version that is not loaded yet (without it a config with labels is refused at start-up, as TF Serving refuses it)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve: unexpected arguments %q\n", fs.Args())
		return ExitUsage
	}
	if *port < 0 || *port > 65535 || *cfgPoll < 0 || *fsPoll < 0 {
		fmt.Fprintln(stderr, "serve: bad port or poll interval")
		return ExitUsage
	}
	if *grpcPort != 0 && *grpcPort == *port {
		fmt.Fprintf(stderr, "serve: --rest_api_port %d cannot be the same as --port (gRPC); give them different ports\n", *port)
		return ExitUsage
	}
	metricsPath := tfserving.DefaultMetricsPath
	if *monFile != "" {
		b, err := os.ReadFile(*monFile)
		if err != nil {
			fmt.Fprintln(stderr, "serve: --monitoring_config_file:", err)
			return ExitUsage
		}
		mc, err := tfserving.ParseMonitoringConfig(string(b))
		if err != nil {
			fmt.Fprintf(stderr, "serve: %s: %v\n", *monFile, err)
			return ExitUsage
		}
		metricsPath = mc.PrometheusPath
		if !mc.PrometheusEnable {
			metricsPath = ""
		}
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s serve: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, a...))
	}
	if *grpcPort != 0 {
		logf("--port %d: gRPC is not served by this example server; REST only", *grpcPort)
	}
	opts := tfserving.Options{FSPollWait: time.Duration(*fsPoll) * time.Second, Logf: logf, MetricsPath: metricsPath, AllowLabelsForUnavailable: *allowLabels}
	switch {
	case *cfgFile != "" && (*name != "" || *base != ""):
		fmt.Fprintln(stderr, "serve: give either --model_config_file or --model_name/--model_base_path")
		return ExitUsage
	case *cfgFile != "":
		opts.ConfigFile, opts.ConfigPollWait = *cfgFile, time.Duration(*cfgPoll)*time.Second
	case *name != "" && *base != "":
		opts.Models = []tfserving.ModelConfig{{Name: *name, BasePath: *base, NumVersions: 1}}
	default:
		fmt.Fprintln(stderr, "serve: --model_name and --model_base_path (or --model_config_file) are required")
		return ExitUsage
	}
	srv, err := tfserving.New(opts)
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return ExitUsage
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return ExitFailure
	}
	fmt.Fprintf(stderr, "listening on %s\n", ln.Addr())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go srv.Run(ctx)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintln(stderr, "serve:", err)
		return ExitFailure
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, "serve: shutdown:", err)
	}
	return ExitOK
}
