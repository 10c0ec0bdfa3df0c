// Command morehd mounts the moreh tree: virtual accelerator devices managed
// with plain file operations.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/moreh-io/moreh/fs"
	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// Version is this build's version, shown as client, server and Moreh-SMI.
var Version = "26.11.0"

// Exit codes: 0 clean stop, 1 runtime failure, 2 usage error.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		os.Exit(runToken(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "morehd: %v\nRun 'morehd --help' for usage.\n", err)
		return exitUsage
	}
	log := newLogger(cfg, stderr)
	if err := serve(cfg, log); err != nil {
		// One line, whatever a library's message holds: each names its fix.
		fmt.Fprintf(stderr, "morehd: %s\n", strings.TrimSpace(strings.NewReplacer("\r", " ", "\n", " ").Replace(err.Error())))
		return exitRuntime
	}
	return exitOK
}

// serve mounts the tree and blocks until SIGINT, SIGTERM or SIGHUP unmounts it.
func serve(cfg config, log *slog.Logger) error {
	// SIGHUP (a closed terminal) is a clean stop too: never a dead mount.
	// Caught from the start: a signal during start-up stops the daemon once
	// mounted, rather than leave a dead mount.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	var simOpts []gpu.SimOption
	if cfg.simDevDir != "" {
		simOpts = append(simOpts, gpu.WithSimDevDir(cfg.simDevDir))
	}
	probe, note, err := gpu.Open(cfg.gpus, cfg.node, simOpts...)
	if err != nil {
		return err
	}
	defer probe.Close()

	// Everything the daemon starts ends with this context, and is joined
	// before what it uses closes.
	background, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	eng, err := openEngine(background, cfg)
	if err != nil {
		return err
	}
	defer eng.Close()
	// Start-up faults of the state file and the mountpoint end the daemon
	// with their one line, before it logs anything.
	if err := prepareMountpoint(cfg.mount, log); err != nil {
		return err
	}
	reg, err := openRegistry(background, cfg, eng) // refuses a lost or foreign token key before any log line
	if err != nil {
		return err
	}
	log.Info("gpu probe", "backend", probe.Name(), "gpus", len(probe.GPUs()), "note", note)
	cgroups, noDevices, why := openContainment(cfg.cgroupRoot, log)
	if why != nil {
		log.Warn("containment: proc (background children can escape)", "reason", why)
	} else {
		log.Info("containment: cgroup", "cgroup_root", cgroups.Dir(), "controllers", strings.Join(cgroups.Controllers(), ","), "device_isolation", !noDevices)
	}
	watchState(background, eng, cfg.db, log)
	rt := node.New(node.Config{
		Registry: reg, Probe: probe, SampleEvery: cfg.sampleInterval, IdleTimeout: cfg.idleTimeout, IdleJobTimeout: cfg.idleJob,
		ResetGrace: cfg.resetGrace, UnitMiB: cfg.unitMiB, Log: log, Cgroups: cgroups, NoDevicePrograms: noDevices,
	})
	ended, err := rt.RegisterGPUs(background)
	if err != nil {
		return fmt.Errorf("register the GPU pool: %w", err)
	}
	for _, job := range ended {
		log.Warn("job ended: its GPU left the pool", "job", job)
	}
	if cgroups != nil {
		// A subtree left with no job goes with the daemon; one with jobs
		// stays for the next start (rmdir refuses a non-empty cgroup).
		defer os.Remove(cgroups.Dir())
	}
	rt.Start(background)
	defer rt.Wait() // before the store closes: the supervisor uses it
	defer stopBackground()

	serverVersion, err := reg.ServerVersion(background)
	if err != nil {
		log.Warn("store server version", "err", err)
	}
	tree := fs.Config{
		Server: serverVersion, Node: rt, Version: Version, AllowOther: cfg.allowOther, Log: log, Debug: cfg.debug,
	}
	if cfg.metricsAddr != "" {
		stopMetrics, err := serveMetrics(cfg.metricsAddr, cfg.webConfig, fs.MetricsHandler(tree, cfg.metricsTokens), log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	mount, err := fs.Mount(cfg.mount, tree)
	if err != nil {
		return explainMountError(cfg.mount, err)
	}
	log.Info("mounted", "mount", cfg.mount, "db", cfg.db, "max_devices", cfg.maxDevices)

	signalReady(cfg.readyFD, log)
	defer notifySystemd(ctx, cfg.mount, log)() // watchdog pings, STOPPING=1 (systemd.go)
	done := make(chan struct{})
	go func() { mount.Wait(); close(done) }()
	select {
	case <-ctx.Done():
		// Stopping: a repeated signal must not kill the daemon before it
		// has unmounted and closed the state (nor after, on its way out).
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		log.Info("stopping", "mount", cfg.mount)
		rt.Drain() // reads blocked on the queue end, so that the mount can go
		unmount(mount, cfg.mount, log, done)
	case <-done:
		log.Warn("the mount went away", "mount", cfg.mount)
	}
	return nil
}

// openRegistry opens the registry on eng.
func openRegistry(ctx context.Context, cfg config, eng store.Engine) (*store.Registry, error) {
	keyPath := filepath.Join(filepath.Dir(cfg.db), "token.key")
	_, statErr := os.Stat(keyPath)
	keyNew := errors.Is(statErr, os.ErrNotExist)
	key, err := store.LoadKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load the token key: %w", err)
	}
	shared, err := readTokenFile(cfg.tokenFile)
	if err != nil {
		return nil, err
	}
	reg, err := store.Open(ctx, eng, store.Options{FirstID: cfg.firstID, MaxDevices: cfg.maxDevices, Key: key, KeyNew: keyNew, SharedSecret: shared, Node: cfg.node, HistoryKeep: cfg.historyKeep})
	if errors.Is(err, store.ErrTokenKey) {
		return nil, tokenKeyError(keyPath, keyNew, cfg.db)
	}
	if err != nil {
		return nil, fmt.Errorf("open the state: %w", err)
	}
	return reg, nil
}

// readTokenFile reads the secret of --token-file: its first line.
func readTokenFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	secret, _, _ := strings.Cut(string(b), "\n")
	if secret = strings.TrimSpace(secret); secret == "" || len(secret) > 4096 {
		return "", fmt.Errorf("--token-file %s: the first line must hold the token (1 to 4096 bytes)", path)
	}
	return secret, nil
}

// openEngine opens the store that --store names.
func openEngine(ctx context.Context, cfg config) (store.Engine, error) {
	if cfg.store == "bolt" {
		if err := checkStateFile(cfg.db, 2*time.Second); err != nil {
			return nil, err
		}
		eng, err := store.OpenBolt(cfg.db, 2*time.Second)
		if err != nil {
			return nil, explainOpenError(cfg.db, err)
		}
		return eng, nil
	}
	tlsConfig, err := cfg.etcdTLS()
	if err != nil {
		return nil, err
	}
	eng, err := store.OpenEtcd(ctx, store.EtcdConfig{Endpoints: cfg.etcdEndpoints, TLS: tlsConfig, LeaseTTL: cfg.etcdLeaseTTL})
	if err != nil {
		return nil, fmt.Errorf("%w (check --etcd-endpoints and the TLS flags)", err)
	}
	return eng, nil
}

// checkStateFile refuses a damaged bbolt file before it is served: bbolt
// panics, or faults on the mapping, when it reaches a page that a truncated
// or overwritten file lacks. A missing or empty file is a fresh start.
func checkStateFile(path string, lockWait time.Duration) (err error) {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() == 0 {
		return nil // OpenBolt creates it, or says why it cannot
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockWait})
	if err != nil {
		return explainOpenError(path, err)
	}
	defer db.Close()
	damaged := func(cause any) error {
		why := strings.TrimPrefix(fmt.Sprint(cause), "panic: ") // bbolt's checker reports its own panics so
		return fmt.Errorf("the state file %s is damaged (%s): move it aside to start empty, or restore it from a backup", path, why)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damaged(r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return damaged(fmt.Sprintf("truncated: %d of %d bytes", fi.Size(), tx.Size()))
		}
		var first error
		for err := range tx.Check() { // drained: the checker stops when read to the end
			if first == nil {
				first = damaged(err)
			}
		}
		return first
	})
}

func explainOpenError(path string, err error) error {
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, context.DeadlineExceeded) || err.Error() == "timeout" {
		return fmt.Errorf("the state file %s is in use by another morehd: stop it, or give this one its own --db", path)
	}
	return fmt.Errorf("open the state file %s: %w (move it aside to start empty, or give --db another path)", path, err)
}

func explainMountError(dir string, err error) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("mount %s: %w: morehd mounts with mount(2) and needs root: run it as root (sudo scripts/morehd.sh), or install fusermount3 (Debian's fuse3) to mount as a user", dir, err)
	}
	if _, statErr := os.Stat("/dev/fuse"); statErr != nil {
		return fmt.Errorf("mount %s: %w: /dev/fuse is missing; load the fuse module (modprobe fuse)", dir, err)
	}
	return fmt.Errorf("mount %s: %w (morehd mounts with mount(2) as root, or with fusermount otherwise)", dir, err)
}
