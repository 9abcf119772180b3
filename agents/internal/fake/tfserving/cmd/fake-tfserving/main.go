package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	tfs "github.com/branchml/branchml/agents/backends/serving/tfserving"
	fake "github.com/branchml/branchml/agents/internal/fake/tfserving"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fake-tfserving:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("fake-tfserving", flag.ContinueOnError)
	_ = fs.Int("port", 8500, "gRPC port (ignored)")
	restPort := fs.Int("rest_api_port", 8501, "REST port (0: any free port)")
	restHost := fs.String("rest_api_host", "127.0.0.1", "REST bind address (the example server's flag)")
	name := fs.String("model_name", "default", "model name")
	base := fs.String("model_base_path", "", "model base path")
	cfgFile := fs.String("model_config_file", "", "model config file (text format)")
	_ = fs.Int("file_system_poll_wait_seconds", 1, "poll interval (ignored)")
	_ = fs.String("monitoring_config_file", "", "monitoring config (ignored: metrics are always on)")
	loadDelay := fs.Duration("load_delay", 0, "time before versions become AVAILABLE (test knob)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	srv := fake.New(*name)
	var versions []int64
	var labels map[string]int64
	if *cfgFile != "" {
		raw, err := os.ReadFile(*cfgFile)
		if err != nil {
			return err
		}
		cfgs, err := tfs.ParseModelConfig(string(raw))
		if err != nil {
			return err
		}
		if len(cfgs) != 1 {
			return fmt.Errorf("%s: want exactly one model config, got %d", *cfgFile, len(cfgs))
		}
		srv = fake.New(cfgs[0].Name)
		*base, versions, labels = cfgs[0].BasePath, cfgs[0].Versions, cfgs[0].Labels
	}
	if *base == "" {
		return errors.New("give --model_base_path or --model_config_file")
	}
	load := func() error {
		if err := srv.LoadDir(*base, versions); err != nil {
			return err
		}
		for l, v := range labels {
			if err := srv.SetLabel(l, v); err != nil {
				return err
			}
		}
		return nil
	}
	if *loadDelay == 0 {
		if err := load(); err != nil {
			return err
		}
	} else {
		go func() {
			time.Sleep(*loadDelay)
			if err := load(); err != nil {
				fmt.Fprintln(os.Stderr, "fake-tfserving: load:", err)
			}
		}()
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*restHost, strconv.Itoa(*restPort)))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "listening on %s\n", ln.Addr())
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
