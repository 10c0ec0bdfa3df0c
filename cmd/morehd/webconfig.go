package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
)

// webAuth is what checkWebConfig needs to know of a --web-config-file: the
// exporter-toolkit format that Prometheus exporters share.
type webAuth struct {
	TLS   map[string]any    `yaml:"tls_server_config"`
	Users map[string]string `yaml:"basic_auth_users"`
}

// checkWebConfig refuses, at start, a --web-config-file that the toolkit
// would refuse at the first scrape, and --metrics-tokens without both TLS
// and basic auth: every token's names and devices must not reach anyone
// who can reach the port, nor cross the network in clear.
func checkWebConfig(c config) error {
	switch {
	case c.webConfig != "" && c.metricsAddr == "":
		return errors.New("--web-config-file goes with --metrics-addr")
	case c.metricsTokens && c.metricsAddr == "":
		return errors.New("--metrics-tokens goes with --metrics-addr")
	case c.metricsTokens && c.webConfig == "":
		return errors.New("--metrics-tokens serves every token's names and devices, so only behind authentication: give --web-config-file with tls_server_config and basic_auth_users (the Prometheus exporter-toolkit format)")
	case c.webConfig == "":
		return nil
	}
	if err := web.Validate(c.webConfig); err != nil {
		// yaml's errors span lines; the refusal is one line.
		return fmt.Errorf("--web-config-file %s: %s", c.webConfig, strings.Join(strings.Fields(err.Error()), " "))
	}
	raw, err := os.ReadFile(c.webConfig)
	if err != nil {
		return fmt.Errorf("--web-config-file: %w", err)
	}
	var auth webAuth
	if err := yaml.Unmarshal(raw, &auth); err != nil {
		return fmt.Errorf("--web-config-file %s: %w", c.webConfig, err)
	}
	if c.metricsTokens && (len(auth.TLS) == 0 || len(auth.Users) == 0) {
		return fmt.Errorf("--metrics-tokens needs both tls_server_config and basic_auth_users in --web-config-file %s", c.webConfig)
	}
	return nil
}

// serveMetrics serves h at /metrics on addr (TLS and basic auth as
// webConfig says, if given) until stop, which lets scrapes in flight finish
// (for a while) and joins the server.
func serveMetrics(addr, webConfig string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	noSocket := false
	flags := &web.FlagConfig{WebListenAddresses: &[]string{addr}, WebSystemdSocket: &noSocket, WebConfigFile: &webConfig}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := web.Serve(ln, srv, flags, log.With("part", "metrics")); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "tls_and_auth", webConfig != "", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-served
	}, nil
}
