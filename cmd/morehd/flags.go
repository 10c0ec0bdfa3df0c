package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/moreh-io/moreh/store"
	"github.com/spf13/pflag"
)

// config is the daemon's settings from its flags.
type config struct {
	mount       string
	db          string
	gpus        string
	maxDevices  int
	firstID     uint64
	allowOther  bool
	readyFD     int
	debug       bool
	tokenFile   string
	metricsAddr string
	node        string

	metricsTokens bool // --metrics-tokens: per-token series over HTTP too

	store         string
	etcdEndpoints []string
	etcdCACert    string
	etcdCert      string
	etcdKey       string
	etcdLeaseTTL  time.Duration

	unitMiB        uint64
	sampleInterval time.Duration
	idleTimeout    time.Duration
	resetGrace     time.Duration
}

// errHelp means --help was asked for and printed.
var errHelp = errors.New("help requested")

func parseFlags(args []string, stdout io.Writer) (config, error) {
	var c config
	f := pflag.NewFlagSet("morehd", pflag.ContinueOnError)
	f.SetOutput(io.Discard)
	f.StringVar(&c.mount, "mount", "/moreh", "directory to mount the tree on (created if missing)")
	f.StringVar(&c.db, "db", defaultDB(), "bbolt state file (created if missing)")
	f.StringVar(&c.gpus, "gpus", "auto", "GPU probe: auto (nvml, then amdgpu, else sim), nvml, amdgpu, sim, sim:N, sim:NxSIZE (e.g. sim:8x80GB) or none")
	intFlag(f, &c.maxDevices, "max-devices", 5, "device limit of the token")
	uint64Flag(f, &c.firstID, "first-id", 2026, "first device id handed out; ids are never reused")
	uint64Flag(f, &c.unitMiB, "unit-mib", store.UnitMiB, "GPU memory per pool unit: a GPU gives floor(memory / unit) units")
	f.DurationVar(&c.sampleInterval, "sample-interval", time.Second, "how often GPU figures are refreshed")
	f.DurationVar(&c.idleTimeout, "idle-timeout", 0, "remove a device that had no job for this long (0: never)")
	f.DurationVar(&c.resetGrace, "reset-grace", 5*time.Second, "how long a reset job gets between SIGTERM and SIGKILL")
	f.BoolVar(&c.allowOther, "allow-other", true, "let users other than the one running morehd use the mount (each sees only their token)")
	host, _ := os.Hostname()
	f.StringVar(&c.node, "node", host, "this machine's name in the pool")
	f.StringVar(&c.store, "store", "bolt", "state store: bolt (one machine) or etcd (a pool shared by several)")
	f.StringSliceVar(&c.etcdEndpoints, "etcd-endpoints", []string{"127.0.0.1:2379"}, "etcd endpoints, comma-separated (--store etcd)")
	f.StringVar(&c.etcdCACert, "etcd-cacert", "", "CA certificate that signed etcd's (enables TLS)")
	f.StringVar(&c.etcdCert, "etcd-cert", "", "client certificate for etcd")
	f.StringVar(&c.etcdKey, "etcd-key", "", "client key for etcd")
	f.DurationVar(&c.etcdLeaseTTL, "etcd-lease-ttl", 10*time.Second, "how long a dead node's GPUs stay in the pool (--store etcd)")
	f.StringVar(&c.metricsAddr, "metrics-addr", "", "also serve the metrics over HTTP at this address (e.g. 127.0.0.1:9400), path /metrics")
	f.BoolVar(&c.metricsTokens, "metrics-tokens", false, "also serve every token's series (names, devices, limits) at --metrics-addr, to anyone who reaches it")
	f.StringVar(&c.tokenFile, "token-file", "", "serve one token, whose secret is this file's first line, and bind every caller to it")
	intFlag(f, &c.readyFD, "ready-fd", -1, "write \"ready\\n\" to this inherited fd once the mount answers")
	f.BoolVar(&c.debug, "debug", false, "log every FUSE request")
	help := f.BoolP("help", "h", false, "show this help")
	version := f.Bool("version", false, "print the version")
	if err := f.Parse(args); err != nil {
		return c, err
	}
	switch {
	case *help:
		fmt.Fprintf(stdout, "Usage: morehd [flags]\n\nServes virtual accelerator devices as files under --mount.\n"+
			"Runs in the foreground; SIGINT, SIGTERM or SIGHUP unmounts and exits.\n\nFlags:\n%s", f.FlagUsages())
		return c, errHelp
	case *version:
		fmt.Fprintf(stdout, "morehd %s\n", Version)
		return c, errHelp
	case f.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q: morehd takes only flags", f.Arg(0))
	case c.maxDevices < 1:
		return c, fmt.Errorf("--max-devices must be at least 1, not %d", c.maxDevices)
	case c.store != "bolt" && c.store != "etcd":
		return c, fmt.Errorf("--store must be bolt or etcd, not %q", c.store)
	case c.store == "etcd" && len(c.etcdEndpoints) == 0:
		return c, fmt.Errorf("--store etcd needs --etcd-endpoints")
	case c.etcdLeaseTTL < time.Second:
		return c, fmt.Errorf("--etcd-lease-ttl must be at least 1s")
	case c.node == "":
		return c, fmt.Errorf("--node must not be empty")
	case c.unitMiB < 1:
		return c, fmt.Errorf("--unit-mib must be at least 1")
	case c.sampleInterval < 10*time.Millisecond:
		return c, fmt.Errorf("--sample-interval must be at least 10ms, not %v", c.sampleInterval)
	case c.idleTimeout < 0 || c.resetGrace < 0:
		return c, fmt.Errorf("--idle-timeout and --reset-grace must not be negative")
	case c.firstID < 1 || c.firstID > store.MaxFirstID:
		return c, fmt.Errorf("--first-id must be from 1 to %d (ids never wrap)", uint64(store.MaxFirstID))
	case c.mount == "" || c.db == "":
		return c, fmt.Errorf("--mount and --db must not be empty")
	}
	return c, nil
}

// defaultDB is /var/lib/moreh for root and the XDG state directory otherwise.
func defaultDB() string {
	if os.Geteuid() == 0 {
		return "/var/lib/moreh/moreh.db"
	}
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "moreh", "moreh.db")
}

// etcdTLS builds the TLS settings of the etcd flags, or nil without them.
func (c config) etcdTLS() (*tls.Config, error) {
	if c.etcdCACert == "" && c.etcdCert == "" && c.etcdKey == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.etcdCACert != "" {
		pem, err := os.ReadFile(c.etcdCACert)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cacert: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-cacert %s holds no PEM certificate", c.etcdCACert)
		}
	}
	if c.etcdCert != "" || c.etcdKey != "" {
		cert, err := tls.LoadX509KeyPair(c.etcdCert, c.etcdKey)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}
