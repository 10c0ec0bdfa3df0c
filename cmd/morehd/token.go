package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

const tokenUsage = `Usage: morehd token add NAME [--max-devices N] [--mount DIR]
       morehd token list [--mount DIR]
       morehd token rm NAME [--mount DIR]
       morehd token rotate-key [--db PATH]

Administers the tokens of a running morehd through its admin/tokens files
(root only). add prints the new token's secret: hand it to the user, who binds
with  echo SECRET > /moreh/token  or by putting it in ~/.moreh/token.
rm refuses while the token still has devices.
rotate-key, with morehd stopped, makes a new token.key beside the state file
and gives every token a new secret (printed as NAME SECRET lines); users
already bound stay bound. It is also the way out when token.key was lost.
`

// runToken is "morehd token …": a thin client of admin/tokens/.
func runToken(args []string, stdout, stderr io.Writer) int {
	f := pflag.NewFlagSet("morehd token", pflag.ContinueOnError)
	f.SetOutput(io.Discard)
	mount := f.String("mount", "/moreh", "where morehd is mounted")
	maxDevices := f.Int("max-devices", 0, "device limit of the new token (default: the daemon's --max-devices)")
	db := f.String("db", defaultDB(), "the state file (rotate-key)")
	help := f.BoolP("help", "h", false, "show this help")
	err := f.Parse(args)
	switch {
	case *help:
		fmt.Fprint(stdout, tokenUsage)
		return exitOK
	case err == nil && f.NArg() == 0:
		err = errors.New("say add, list, rm or rotate-key")
	}
	if err != nil {
		fmt.Fprintf(stderr, "morehd token: %v\nRun 'morehd token --help' for usage.\n", err)
		return exitUsage
	}
	admin := filepath.Join(*mount, "admin", "tokens")
	cmd, rest := f.Arg(0), f.Args()[1:]
	switch {
	case cmd == "list" && len(rest) == 0:
		err = listTokens(*mount, stdout)
	case cmd == "add" && len(rest) == 1:
		err = addToken(admin, rest[0], *maxDevices, stdout)
	case cmd == "rotate-key" && len(rest) == 0:
		err = rotateKey(*db, stdout, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "morehd token rotate-key: %v\n", err)
			return exitRuntime
		}
	case cmd == "rm" && len(rest) == 1:
		err = os.Remove(filepath.Join(admin, rest[0]))
		if err == nil {
			fmt.Fprintf(stdout, "Token %s revoked.\n", rest[0])
		}
	default:
		fmt.Fprintf(stderr, "morehd token: cannot %s %q\nRun 'morehd token --help' for usage.\n", cmd, rest)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "morehd token %s: %v%s\n", cmd, err, reason(*mount))
		return exitRuntime
	}
	return exitOK
}

func addToken(admin, name string, maxDevices int, stdout io.Writer) error {
	dir := filepath.Join(admin, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if maxDevices > 0 {
		if err := os.WriteFile(filepath.Join(dir, "max_devices"), []byte(strconv.Itoa(maxDevices)+"\n"), 0); err != nil {
			return err
		}
	}
	secret, err := os.ReadFile(filepath.Join(dir, "secret"))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s", secret)
	return nil
}

// listTokens prints one line per token: name, devices used/max, bound uids.
func listTokens(mount string, stdout io.Writer) error {
	admin := filepath.Join(mount, "admin", "tokens")
	entries, err := os.ReadDir(admin)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-32s  %-7s  %s\n", "TOKEN", "DEVICES", "UIDS")
	for _, e := range entries {
		limit, err := os.ReadFile(filepath.Join(mount, "tokens", e.Name(), "limit"))
		if err != nil {
			return err
		}
		uids, err := os.ReadFile(filepath.Join(admin, e.Name(), "uids"))
		if err != nil {
			return err
		}
		var max, used string
		fmt.Sscanf(string(limit), "max %s\nused %s", &max, &used)
		list := strings.Join(strings.Fields(string(uids)), ",")
		if list == "" {
			list = "-"
		}
		fmt.Fprintf(stdout, "%-32s  %-7s  %s\n", e.Name(), used+"/"+max, list)
	}
	return nil
}

// reason is the daemon's sentence for the last admin failure, from the
// errors file of the caller's token.
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
	last := lines[len(lines)-1]
	if f := strings.SplitN(last, " ", 4); len(f) == 4 && strings.Contains(f[2], "admin/tokens/") {
		return " (" + f[3] + ")"
	}
	return ""
}
