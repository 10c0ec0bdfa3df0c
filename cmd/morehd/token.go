package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

const tokenUsage = `Usage: morehd token add NAME [--max-devices N] [--priority N] [--max-units N] [--mount DIR]
       morehd token list [--mount DIR]
       morehd token rm NAME [--mount DIR]
       morehd token rotate-key [--db PATH] [--store etcd --etcd-endpoints URLS ...]

Administers the tokens of a running morehd through its admin/tokens files
(root only). morehd token COMMAND --help shows one command's usage.
add prints the new token's secret: hand it to the user, who binds
with  echo SECRET > /moreh/token  or by putting it in ~/.moreh/token.
rm refuses while the token still has devices.
rotate-key, with morehd stopped (on etcd: every node), makes a new token.key
beside the state file and gives every token a new secret (printed as NAME
SECRET lines); users already bound stay bound. It is also the way out when
token.key was lost. On etcd, copy the new token.key to every node.
`

// tokenCommands are the subcommands of "morehd token": their usage line
// and the number of arguments each takes.
var tokenCommands = map[string]struct {
	usage string
	args  int
}{
	"add":        {"morehd token add NAME [--max-devices N] [--priority N] [--max-units N] [--mount DIR]\n\nCreates the token NAME and prints its secret.\n", 1},
	"list":       {"morehd token list [--mount DIR]\n\nLists the tokens: name, devices used/max, priority, unit quota, shared, bound uids.\n", 0},
	"rm":         {"morehd token rm NAME [--mount DIR]\n\nRevokes the token NAME (refused while it has devices).\n", 1},
	"rotate-key": {"morehd token rotate-key [--db PATH] [--store etcd --etcd-endpoints URLS ...]\n\nWith morehd stopped (on etcd: every node), makes a new token.key beside --db and gives every token a new secret.\n", 0},
}

// runToken is "morehd token …": a thin client of admin/tokens/. --help,
// anywhere, prints the usage of the subcommand it follows and does nothing.
func runToken(args []string, stdout, stderr io.Writer) int {
	f := pflag.NewFlagSet("morehd token", pflag.ContinueOnError)
	f.SetOutput(io.Discard)
	mount := f.String("mount", "/moreh", "where morehd is mounted")
	maxDevices := f.Int("max-devices", 0, "device limit of the new token (default: the daemon's --max-devices)")
	var state config // rotate-key: where the tokens are kept, as the daemon's flags say
	f.StringVar(&state.db, "db", defaultDB(), "the state file; token.key is beside it (rotate-key)")
	f.StringVar(&state.store, "store", "bolt", "state store: bolt or etcd (rotate-key)")
	f.StringSliceVar(&state.etcdEndpoints, "etcd-endpoints", []string{"127.0.0.1:2379"}, "etcd endpoints (rotate-key --store etcd)")
	f.StringVar(&state.etcdCACert, "etcd-cacert", "", "CA certificate that signed etcd's (rotate-key --store etcd)")
	f.StringVar(&state.etcdCert, "etcd-cert", "", "client certificate for etcd (rotate-key --store etcd)")
	f.StringVar(&state.etcdKey, "etcd-key", "", "client key for etcd (rotate-key --store etcd)")
	priority := f.String("priority", "", "queue priority of the new token, -99 to 99 (default 0)")
	maxUnits := f.String("max-units", "", "GPU unit quota of the new token's running jobs (default none)")
	help := f.BoolP("help", "h", false, "show this help")
	err := f.Parse(args)
	cmd, rest := f.Arg(0), f.Args()
	if len(rest) > 0 {
		rest = rest[1:]
	}
	sub, known := tokenCommands[cmd]
	usageError := func(msg string) int {
		fmt.Fprintf(stderr, "morehd token: %s\nRun 'morehd token --help' for usage.\n", msg)
		return exitUsage
	}
	switch {
	case *help && known:
		fmt.Fprint(stdout, "Usage: "+sub.usage+"\nFlags:\n"+f.FlagUsages())
		return exitOK
	case *help:
		fmt.Fprint(stdout, tokenUsage)
		return exitOK
	case err != nil:
		return usageError(err.Error())
	case cmd == "":
		return usageError("say add, list, rm or rotate-key")
	case !known:
		return usageError(fmt.Sprintf("unknown command %q: the commands are add, list, rm and rotate-key", cmd))
	case len(rest) != sub.args:
		what := "needs one token NAME"
		if sub.args == 0 {
			what = "takes no arguments"
		}
		return usageError(fmt.Sprintf("%s %s (usage: %s)", cmd, what, strings.SplitN(sub.usage, "\n", 2)[0]))
	case cmd != "add" && (f.Changed("max-devices") || f.Changed("priority") || f.Changed("max-units")):
		return usageError("--max-devices, --priority and --max-units go with add only")
	case cmd != "rotate-key" && changedAny(f, "db", "store", "etcd-endpoints", "etcd-cacert", "etcd-cert", "etcd-key"):
		return usageError("--db, --store and the --etcd flags go with rotate-key only")
	case state.store != "bolt" && state.store != "etcd":
		return usageError(fmt.Sprintf("--store must be bolt or etcd, not %q", state.store))
	}
	admin := filepath.Join(*mount, "admin", "tokens")
	switch cmd {
	case "list":
		err = listTokens(*mount, stdout)
	case "add":
		err = addToken(admin, rest[0], *maxDevices, map[string]string{"priority": *priority, "max_units": *maxUnits}, stdout)
	case "rotate-key":
		state.etcdLeaseTTL = 10 * time.Second
		if err := rotateKey(state, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "morehd token rotate-key: %v\n", err)
			return exitRuntime
		}
		return exitOK
	case "rm":
		err = os.Remove(filepath.Join(admin, rest[0]))
		if err == nil {
			fmt.Fprintf(stdout, "Token %s revoked.\n", rest[0])
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "morehd token %s: %v%s\n", cmd, err, reason(*mount))
		return exitRuntime
	}
	return exitOK
}

// changedAny says whether any of the named flags was given.
func changedAny(f *pflag.FlagSet, names ...string) bool {
	for _, n := range names {
		if f.Changed(n) {
			return true
		}
	}
	return false
}

// addToken creates the token and writes its settings; the daemon checks
// each value (a refused one leaves the token with its default, and fails).
func addToken(admin, name string, maxDevices int, settings map[string]string, stdout io.Writer) error {
	dir := filepath.Join(admin, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if maxDevices > 0 {
		if err := os.WriteFile(filepath.Join(dir, "max_devices"), []byte(strconv.Itoa(maxDevices)+"\n"), 0); err != nil {
			return err
		}
	}
	for _, file := range []string{"priority", "max_units"} {
		if v := settings[file]; v != "" {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(v+"\n"), 0); err != nil {
				return err
			}
		}
	}
	secret, err := os.ReadFile(filepath.Join(dir, "secret"))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s", secret)
	return nil
}

// listTokens prints one line per token: name, devices used/max, priority,
// unit quota, shared, bound uids.
func listTokens(mount string, stdout io.Writer) error {
	admin := filepath.Join(mount, "admin", "tokens")
	entries, err := os.ReadDir(admin)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-32s  %-7s  %-8s  %-9s  %-6s  %s\n", "TOKEN", "DEVICES", "PRIORITY", "MAX_UNITS", "SHARED", "UIDS")
	for _, e := range entries {
		limit, err := os.ReadFile(filepath.Join(mount, "tokens", e.Name(), "limit"))
		if err != nil {
			return err
		}
		uids, err := os.ReadFile(filepath.Join(admin, e.Name(), "uids"))
		if err != nil {
			return err
		}
		sched := map[string]string{}
		for _, file := range []string{"priority", "max_units", "shared"} {
			b, err := os.ReadFile(filepath.Join(admin, e.Name(), file))
			if err != nil {
				return err
			}
			sched[file] = strings.TrimSpace(string(b))
		}
		shared := map[string]string{"1": "yes", "0": "no"}[sched["shared"]]
		var max, used string
		fmt.Sscanf(string(limit), "max %s\nused %s", &max, &used)
		list := strings.Join(strings.Fields(string(uids)), ",")
		if list == "" {
			list = "-"
		}
		fmt.Fprintf(stdout, "%-32s  %-7s  %-8s  %-9s  %-6s  %s\n", e.Name(), used+"/"+max, sched["priority"], sched["max_units"], shared, list)
	}
	return nil
}

// ownThread reports whether tid is a thread of this process.
func ownThread(tid string) bool {
	_, err := os.Stat(filepath.Join("/proc/self/task", tid))
	return tid != "" && !strings.Contains(tid, "/") && err == nil
}

// reason is the daemon's sentence for this process's last admin failure,
// from the errors file of the caller's token: lines are
// "<time> pid=<tid> uid=<uid> <op> <path>: <message>", and the tid is one
// of this process's threads.
func reason(mount string) string {
	link, err := os.Readlink(filepath.Join(mount, "devices"))
	if err != nil {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(mount, filepath.Dir(link), "errors"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if err != nil || len(lines) == 0 || lines[0] == "" {
		return ""
	}
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.SplitN(lines[i], " ", 6)
		if len(f) == 6 && strings.Contains(f[4], "admin/tokens/") && ownThread(strings.TrimPrefix(f[1], "pid=")) {
			return " (" + f[5] + ")"
		}
	}
	return ""
}
