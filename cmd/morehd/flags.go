package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
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
	historyKeep int
	idleJob     time.Duration
	allowOther  bool
	readyFD     int
	debug       bool
	tokenFile   string
	metricsAddr string
	node        string
	logFormat   string
	logLevel    slog.Level

	metricsTokens bool   // --metrics-tokens: per-token series over HTTP too
	webConfig     string // --web-config-file: TLS and basic auth for --metrics-addr

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
	cgroupRoot     string
	simDevDir      string
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
	f.IntVar(&c.historyKeep, "history-keep", 1000, "ended jobs kept in each token's history")
	f.DurationVar(&c.idleJob, "idle-job-timeout", 0, "reset a job whose GPUs show 0% utilisation and unchanged memory for this long (0: never)")
	uint64Flag(f, &c.unitMiB, "unit-mib", store.UnitMiB, "GPU memory per pool unit: a GPU gives floor(memory / unit) units")
	f.DurationVar(&c.sampleInterval, "sample-interval", time.Second, "how often GPU figures are refreshed")
	f.DurationVar(&c.idleTimeout, "idle-timeout", 0, "remove a device that had no job for this long (0: never)")
	f.DurationVar(&c.resetGrace, "reset-grace", 5*time.Second, "how long a reset job gets between SIGTERM and SIGKILL")
	f.StringVar(&c.cgroupRoot, "cgroup-root", "", "cgroup v2 subtree that holds one cgroup per job (default: moreh under the daemon's delegated cgroup, else under the cgroup v2 root; none: follow jobs through /proc, which background children can escape)")
	f.StringVar(&c.simDevDir, "sim-dev-dir", "", "give sim GPU i the device node DIR/nvidia<i> (made with mknod), so jobs are confined to their GPUs' nodes")
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
	f.BoolVar(&c.metricsTokens, "metrics-tokens", false, "also serve every token's series (names, devices, limits) at --metrics-addr; needs --web-config-file with TLS and basic auth")
	f.StringVar(&c.webConfig, "web-config-file", "", "TLS and basic auth for --metrics-addr, in the Prometheus exporter-toolkit web-config format")
	f.StringVar(&c.tokenFile, "token-file", "", "serve one token, whose secret is this file's first line, and bind every caller to it")
	intFlag(f, &c.readyFD, "ready-fd", -1, "write \"ready\\n\" to this inherited fd once the mount answers")
	f.BoolVar(&c.debug, "debug", false, "log every FUSE request")
	f.StringVar(&c.logFormat, "log-format", "text", "log lines on stderr as text (key=value) or json (one object a line)")
	logLevel := f.String("log-level", "info", "least severe log lines shown: debug, info, warn or error")
	help := f.BoolP("help", "h", false, "show this help")
	version := f.Bool("version", false, "print the version")
	if err := f.Parse(args); err != nil {
		return c, err
	}
	switch {
	case *help:
		fmt.Fprintf(stdout, "Usage: morehd [flags]\n       morehd token add|list|rm ... (morehd token --help)\n\n"+
			"Serves virtual accelerator devices as files under --mount.\n"+
			"Runs in the foreground; SIGINT, SIGTERM or SIGHUP unmounts and exits.\n\nFlags:\n%s", f.FlagUsages())
		return c, errHelp
	case *version:
		info, _ := debug.ReadBuildInfo()
		fmt.Fprint(stdout, versionText(info))
		return c, errHelp
	case f.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q: morehd takes only flags, or the subcommand token (morehd token --help)", f.Arg(0))
	case c.historyKeep < 1:
		return c, fmt.Errorf("--history-keep must be at least 1, not %d", c.historyKeep)
	case c.logFormat != "text" && c.logFormat != "json":
		return c, fmt.Errorf("--log-format must be text or json, not %q", c.logFormat)
	case c.logLevel.UnmarshalText([]byte(*logLevel)) != nil || !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(*logLevel)):
		return c, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", *logLevel)
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
	return c, checkWebConfig(c)
}

// newLogger is the daemon's logger on w, as --log-format and --log-level say.
func newLogger(c config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.logLevel}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// versionText is what --version prints: the version, then the VCS revision
// the binary was built from (vcs.revision, and "modified" when the checkout
// had changes), then the Go toolchain.
func versionText(info *debug.BuildInfo) string {
	text := "morehd " + Version + "\n"
	if info == nil {
		return text + "revision unknown (no build information)\n"
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	switch rev := settings["vcs.revision"]; {
	case rev == "":
		text += "revision unknown (built outside a checkout, or with -buildvcs=false)\n"
	case settings["vcs.modified"] == "true":
		text += "revision " + rev + " (modified)\n"
	default:
		text += "revision " + rev + "\n"
	}
	if t := settings["vcs.time"]; t != "" {
		text += "committed " + t + "\n"
	}
	return text + "built with " + info.GoVersion + "\n"
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
