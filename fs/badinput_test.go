package fs

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/store"
)

// treeState is everything a refused operation must leave alone: every
// token (limit, current, use order, bound uids) with its devices and jobs,
// and the pool's bindings.
func treeState(t *testing.T, tt *testTree) string {
	ctx := t.Context()
	t.Helper()
	tokens, err := tt.reg.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var views []store.TokenView
	for _, tok := range tokens {
		v, err := tt.reg.View(ctx, tok.Name)
		if err != nil {
			t.Fatal(err)
		}
		views = append(views, v)
	}
	pool, err := tt.reg.Pool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := tt.reg.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(struct {
		Views []store.TokenView
		Pool  []store.PoolEntry
		Jobs  []store.Job
	}{views, pool, jobs})
	return string(b)
}

// badInputTree is a tree in which every writable file has something to
// guard: the default token holds 2026 (idle) and 2027 (running a job, so
// the pool has a binding), and a token alice exists with a secret.
func badInputTree(t *testing.T) (tt *testTree, aliceSecret string, jobPID int) {
	t.Helper()
	tt = mountTree(t, store.Options{})
	aliceSecret = newToken(t, tt, "alice") // root stays on the default token
	mkdevice(t, tt, "Small.64GB")
	mkdevice(t, tt, "Small.64GB")
	jobPID, _ = startProc(t, 1)
	if err := writeFile(tt.path("devices", "2027", "procs"), strconv.Itoa(jobPID)); err != nil {
		t.Fatal(err)
	}
	return tt, aliceSecret, jobPID
}

// writeEach opens path once (O_WRONLY|O_TRUNC, as `echo >` does) and issues
// each write(2) on that one open, returning each write's errno.
func writeEach(t *testing.T, path string, writes []string) []syscall.Errno {
	t.Helper()
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_TRUNC|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer syscall.Close(fd)
	var errnos []syscall.Errno
	for _, w := range writes {
		n, err := syscall.Write(fd, []byte(w))
		var errno syscall.Errno
		if err != nil && !errors.As(err, &errno) {
			t.Fatalf("write %q: %v", w, err)
		}
		if err == nil && n != len(w) {
			t.Errorf("write %q accepted %d of %d bytes: a command is taken whole or refused", w, n, len(w))
		}
		errnos = append(errnos, errno)
	}
	return errnos
}

// TestBadInput writes every kind of bad input to every writable file: each
// write(2) is its own command, refused with the errno DESIGN.md gives it and
// one line in the caller's errors, and nothing changes. Refused writes by
// root land in the default token's errors (root is bound to no token here).
func TestBadInput(t *testing.T) {
	const (
		ok     = syscall.Errno(0)
		einval = syscall.EINVAL
	)
	big := strings.Repeat("7", 5*1024)
	binary := "\x00\xff\xfe\x01\x80"
	type input struct {
		name   string
		writes []string
		want   []syscall.Errno
	}
	// The inputs every command file refuses alike. An empty write(2) never
	// reaches the daemon: the kernel answers 0 bytes written itself, so it
	// is no command, no errno and no errors line.
	common := []input{
		{"empty", []string{""}, []syscall.Errno{ok}},
		{"newline only", []string{"\n"}, []syscall.Errno{einval}},
		{"5 KiB", []string{big}, []syscall.Errno{einval}},
		{"binary bytes", []string{binary}, []syscall.Errno{einval}},
		{"CR LF", []string{"1\r\n"}, []syscall.Errno{einval}},
		{"NUL inside", []string{"20\x0026"}, []syscall.Errno{einval}},
	}
	files := []struct {
		name   string
		path   []string // below the mount
		inputs []input  // beyond common
	}{
		{"current", []string{"tokens", "default", "current"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{einval}},
			{"padded id", []string{" 2026"}, []syscall.Errno{einval}},
			{"negative", []string{"-2026"}, []syscall.Errno{einval}},
			{"overflowing", []string{"18446744073709551616"}, []syscall.Errno{einval}},
			{"far overflowing", []string{"99999999999999999999999999"}, []syscall.Errno{einval}},
			{"largest id, unknown", []string{"18446744073709551615"}, []syscall.Errno{syscall.ENOENT}},
			{"zero", []string{"0"}, []syscall.Errno{einval}},
			{"leading zero", []string{"02026"}, []syscall.Errno{einval}},
			{"plus sign", []string{"+2026"}, []syscall.Errno{einval}},
			{"hexadecimal", []string{"0x7ea"}, []syscall.Errno{einval}},
			{"unicode", []string{"日本語 ✓"}, []syscall.Errno{einval}},
			{"fullwidth digits", []string{"２０２６"}, []syscall.Errno{einval}},
			{"two lines", []string{"2027\n2026"}, []syscall.Errno{einval}},
			// Each write is a command: the halves of 2026 are two unknown ids.
			{"two writes on one open", []string{"20", "26"}, []syscall.Errno{syscall.ENOENT, syscall.ENOENT}},
		}},
		{"model", []string{"tokens", "default", "devices", "2026", "model"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{einval}},
			{"padded model", []string{" Large.256GB"}, []syscall.Errno{einval}},
			{"negative", []string{"-1"}, []syscall.Errno{einval}},
			{"overflowing", []string{"18446744073709551616"}, []syscall.Errno{einval}},
			{"menu number", []string{"3"}, []syscall.Errno{einval}},
			{"unicode", []string{"日本語 ✓"}, []syscall.Errno{einval}},
			{"look-alike letters", []string{"Ｌａｒｇｅ.256GB"}, []syscall.Errno{einval}},
			{"long s folding to s", []string{"ſmall.64GB"}, []syscall.Errno{einval}},
			{"two lines", []string{"Large.256GB\nSmall.64GB"}, []syscall.Errno{einval}},
			{"two writes on one open", []string{"Large.", "256GB"}, []syscall.Errno{einval, einval}},
		}},
		{"procs", []string{"tokens", "default", "devices", "2026", "procs"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{einval}},
			{"negative", []string{"-1"}, []syscall.Errno{einval}},
			{"zero", []string{"0"}, []syscall.Errno{einval}},
			{"plus sign", []string{"+1"}, []syscall.Errno{einval}},
			{"leading zero", []string{"04194305"}, []syscall.Errno{einval}},
			{"overflowing", []string{"18446744073709551616"}, []syscall.Errno{einval}},
			{"above pid_max, unknown", []string{"4194305"}, []syscall.Errno{syscall.ESRCH}},
			{"unicode", []string{"日本語 ✓"}, []syscall.Errno{einval}},
			{"fullwidth digits", []string{"１"}, []syscall.Errno{einval}},
			{"two lines", []string{"4194305\n4194306"}, []syscall.Errno{einval}},
			{"two writes on one open", []string{"4194305", "4194306"}, []syscall.Errno{syscall.ESRCH, syscall.ESRCH}},
		}},
		{"reset", []string{"tokens", "default", "devices", "2026", "reset"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{einval}},
			{"negative", []string{"-1"}, []syscall.Errno{einval}},
			{"overflowing", []string{"18446744073709551617"}, []syscall.Errno{einval}},
			{"unicode", []string{"日本語 ✓"}, []syscall.Errno{einval}},
			{"fullwidth one", []string{"１"}, []syscall.Errno{einval}},
			{"plus sign", []string{"+1"}, []syscall.Errno{einval}},
			{"leading zero", []string{"01"}, []syscall.Errno{einval}},
			{"two lines", []string{"1\n1"}, []syscall.Errno{einval}},
			// 2026 runs no job: each "1" is its own reset, refused twice.
			{"two writes on one open", []string{"1", "1"}, []syscall.Errno{syscall.ESRCH, syscall.ESRCH}},
		}},
		{"max_devices", []string{"admin", "tokens", "alice", "max_devices"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{einval}},
			{"negative", []string{"-1"}, []syscall.Errno{einval}},
			{"zero", []string{"0"}, []syscall.Errno{einval}},
			{"above the largest limit", []string{"1000001"}, []syscall.Errno{einval}},
			{"past int32", []string{"2147483648"}, []syscall.Errno{einval}},
			{"overflowing", []string{"9223372036854775808"}, []syscall.Errno{einval}},
			{"unicode", []string{"日本語 ✓"}, []syscall.Errno{einval}},
			{"fullwidth digit", []string{"５"}, []syscall.Errno{einval}},
			{"plus sign", []string{"+7"}, []syscall.Errno{einval}},
			{"leading zero", []string{"07"}, []syscall.Errno{einval}},
			{"hexadecimal", []string{"0x7"}, []syscall.Errno{einval}},
			{"two lines", []string{"5\n6"}, []syscall.Errno{einval}},
			// "0" alone is refused although "05" would be 5; "5" is alice's limit already.
			{"two writes on one open", []string{"0", "5"}, []syscall.Errno{einval, ok}},
		}},
		{"idle_job_timeout", []string{"admin", "tokens", "alice", "idle_job_timeout"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{einval}},
			{"bare number", []string{"30"}, []syscall.Errno{einval}},
			{"negative", []string{"-5m"}, []syscall.Errno{einval}},
			{"plus sign", []string{"+5m"}, []syscall.Errno{einval}},
			{"zero", []string{"0s"}, []syscall.Errno{einval}},
			{"past a year", []string{"8785h"}, []syscall.Errno{einval}},
			{"overflowing", []string{"9999999999h"}, []syscall.Errno{einval}},
			{"capitalised", []string{"Off"}, []syscall.Errno{einval}},
			{"unicode", []string{"５m"}, []syscall.Errno{einval}},
			{"two lines", []string{"off\n5m"}, []syscall.Errno{einval}},
			// "default" is alice's already: the accepted write changes nothing either.
			{"two writes on one open", []string{"0s", "default"}, []syscall.Errno{einval, ok}},
		}},
		{"priority", []string{"admin", "tokens", "alice", "priority"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{einval}},
			{"below the least", []string{"-100"}, []syscall.Errno{einval}},
			{"above the most", []string{"100"}, []syscall.Errno{einval}},
			{"overflowing", []string{"9223372036854775808"}, []syscall.Errno{einval}},
			{"minus zero", []string{"-0"}, []syscall.Errno{einval}},
			{"plus sign", []string{"+5"}, []syscall.Errno{einval}},
			{"leading zero", []string{"05"}, []syscall.Errno{einval}},
			{"hexadecimal", []string{"0x5"}, []syscall.Errno{einval}},
			{"unicode", []string{"日本語 ✓"}, []syscall.Errno{einval}},
			{"fullwidth digit", []string{"５"}, []syscall.Errno{einval}},
			{"two lines", []string{"1\n2"}, []syscall.Errno{einval}},
			// "0" is alice's priority already: the second write changes nothing.
			{"two writes on one open", []string{"-", "0"}, []syscall.Errno{einval, ok}},
		}},
		{"shared", []string{"admin", "tokens", "alice", "shared"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{einval}},
			{"two", []string{"2"}, []syscall.Errno{einval}},
			{"negative", []string{"-1"}, []syscall.Errno{einval}},
			{"word", []string{"yes"}, []syscall.Errno{einval}},
			{"leading zero", []string{"01"}, []syscall.Errno{einval}},
			{"overflowing", []string{"18446744073709551617"}, []syscall.Errno{einval}},
			{"unicode", []string{"日本語 ✓"}, []syscall.Errno{einval}},
			{"fullwidth one", []string{"１"}, []syscall.Errno{einval}},
			{"two lines", []string{"0\n1"}, []syscall.Errno{einval}},
			{"two writes on one open", []string{"x", "0"}, []syscall.Errno{einval, ok}},
		}},
		{"max_units", []string{"admin", "tokens", "alice", "max_units"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{einval}},
			{"zero", []string{"0"}, []syscall.Errno{einval}},
			{"negative", []string{"-4"}, []syscall.Errno{einval}},
			{"above the largest quota", []string{"1000001"}, []syscall.Errno{einval}},
			{"overflowing", []string{"9223372036854775808"}, []syscall.Errno{einval}},
			{"plus sign", []string{"+4"}, []syscall.Errno{einval}},
			{"leading zero", []string{"04"}, []syscall.Errno{einval}},
			{"None in capitals", []string{"None"}, []syscall.Errno{einval}},
			{"unicode", []string{"日本語 ✓"}, []syscall.Errno{einval}},
			{"fullwidth digit", []string{"４"}, []syscall.Errno{einval}},
			{"two lines", []string{"4\n5"}, []syscall.Errno{einval}},
			// "none" is alice's quota already.
			{"two writes on one open", []string{"no", "none"}, []syscall.Errno{einval, ok}},
		}},
		{"token", []string{"token"}, []input{
			{"whitespace", []string{" \t "}, []syscall.Errno{syscall.EKEYREJECTED}},
			{"negative", []string{"-1"}, []syscall.Errno{syscall.EKEYREJECTED}},
			{"overflowing", []string{"18446744073709551616"}, []syscall.Errno{syscall.EKEYREJECTED}},
			{"unicode", []string{"мрх_日本語 ✓"}, []syscall.Errno{syscall.EKEYREJECTED}},
			{"two lines", nil, []syscall.Errno{einval}},            // alice's secret twice, filled in below
			{"two writes on one open", nil, []syscall.Errno{0, 0}}, // alice's secret in halves, below
		}},
	}
	for _, file := range files {
		t.Run(file.name, func(t *testing.T) {
			// A tree per file: each keeps its errors file under the 32 lines it holds.
			tt, secret, _ := badInputTree(t)
			path := tt.path(file.path...)
			for _, in := range append(append([]input{}, common...), file.inputs...) {
				if file.name == "token" && in.writes == nil {
					switch in.name {
					case "two lines":
						in.writes = []string{secret + "\n" + secret}
					case "two writes on one open":
						in.writes = []string{secret[:20], secret[20:]}
						in.want = []syscall.Errno{syscall.EKEYREJECTED, syscall.EKEYREJECTED}
					}
				}
				t.Run(in.name, func(t *testing.T) {
					before, linesBefore := treeState(t, tt), errorLines(t, tt)
					got := writeEach(t, path, in.writes)
					for i := range in.want {
						if got[i] != in.want[i] {
							t.Errorf("write %d of %d (%.40q) = %v (%d), want %v (%d)", i+1, len(in.writes), in.writes[i], got[i], got[i], in.want[i], in.want[i])
						}
					}
					if after := treeState(t, tt); after != before {
						t.Errorf("a refused write changed the state:\nbefore %s\nafter  %s", before, after)
					}
					refused := 0
					for _, e := range in.want {
						if e != ok {
							refused++
						}
					}
					lines := errorLines(t, tt)
					if len(lines) != len(linesBefore)+refused {
						t.Fatalf("errors grew by %d lines, want %d:\n%s", len(lines)-len(linesBefore), refused, strings.Join(lines, "\n"))
					}
					for _, line := range lines[len(linesBefore):] {
						if want := " write " + strings.Join(file.path, "/") + ": "; !strings.Contains(line, want) {
							t.Errorf("errors line %q lacks %q", line, want)
						}
						if strings.Contains(line, secret) {
							t.Errorf("errors line shows the secret: %q", line)
						}
					}
				})
			}
		})
	}
}

// TestNeverAllowed: each operation the tree never allows is refused, with
// EPERM and a line in errors when it reaches the daemon, or with the
// kernel's own errno (and no line) when the kernel answers first; in every
// case nothing changes. Rows identical to TestErrnoTable's are not repeated.
func TestNeverAllowed(t *testing.T) {
	tt, _, jobPID := badInputTree(t)
	p := tt.path
	rows := []struct {
		name   string
		op     func() error
		errno  syscall.Errno
		logged string // fragment of the errors line; "" when the kernel answers alone
	}{
		{"create a file in a device", func() error {
			return os.WriteFile(p("tokens", "default", "devices", "2026", "notes"), []byte("x"), 0o644)
		}, syscall.EPERM, "create tokens/default/devices/2026/notes: Operation not permitted"},
		{"create a file in admin/tokens", func() error { return os.WriteFile(p("admin", "tokens", "x"), nil, 0o600) }, syscall.EPERM, "create admin/tokens/x:"},
		{"O_EXCL create over an existing file", func() error {
			f, err := os.OpenFile(p("tokens", "default", "current"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err == nil {
				f.Close()
			}
			return err
		}, syscall.EEXIST, ""}, // the kernel finds the name and answers EEXIST itself
		{"mknod a fifo in devices", func() error {
			return syscall.Mknod(p("tokens", "default", "devices", "fifo"), syscall.S_IFIFO|0o644, 0)
		}, syscall.EPERM, "mknod tokens/default/devices/fifo:"},
		{"mknod a regular file at the root", func() error { return syscall.Mknod(p("plain"), syscall.S_IFREG|0o644, 0) }, syscall.EPERM, "mknod plain: Operation not permitted"},
		{"symlink at the root", func() error { return os.Symlink("tokens/default/devices", p("mydevices")) }, syscall.EPERM, "symlink mydevices:"},
		{"hard link a file", func() error {
			return os.Link(p("tokens", "default", "devices", "2026", "model"), p("tokens", "default", "devices", "2026", "model2"))
		}, syscall.EPERM, "link tokens/default/devices/2026/model2:"},
		{"hard link a device directory", func() error {
			return os.Link(p("tokens", "default", "devices", "2026"), p("tokens", "default", "devices", "2030"))
		}, syscall.EPERM, ""}, // the kernel refuses links to directories itself
		{"rename a file", func() error {
			return os.Rename(p("tokens", "default", "devices", "2026", "model"), p("tokens", "default", "devices", "2026", "kind"))
		}, syscall.EPERM, "rename tokens/default/devices/2026/model:"},
		{"rename a file over another", func() error {
			return os.Rename(p("tokens", "default", "limit"), p("tokens", "default", "current"))
		}, syscall.EPERM, "rename tokens/default/limit:"},
		{"rename a token", func() error { return os.Rename(p("tokens", "default"), p("tokens", "mine")) }, syscall.EPERM, "rename tokens/default:"},
		{"rename into another directory", func() error {
			return os.Rename(p("tokens", "default", "devices", "2026"), p("tokens", "default", "2026"))
		}, syscall.EPERM, "rename tokens/default/devices/2026:"},
		{"unlink a root file", func() error { return syscall.Unlink(p("version")) }, syscall.EPERM, "unlink version:"},
		{"unlink a per-caller link", func() error { return syscall.Unlink(p("current")) }, syscall.EPERM, "unlink current:"},
		{"unlink the secret", func() error { return syscall.Unlink(p("admin", "tokens", "alice", "secret")) }, syscall.EPERM, "unlink admin/tokens/alice/secret:"},
		{"chown a command file", func() error { return os.Chown(p("tokens", "default", "current"), 1000, 1000) }, syscall.EPERM, "setattr tokens/default/current:"},
		{"chmod a device directory", func() error { return os.Chmod(p("tokens", "default", "devices", "2026"), 0o777) }, syscall.EPERM, "setattr tokens/default/devices/2026:"},
		{"chmod a read-only file", func() error { return os.Chmod(p("pool"), 0o666) }, syscall.EPERM, "setattr pool:"},
		{"touch a file's times", func() error {
			return syscall.UtimesNano(p("tokens", "default", "status"), []syscall.Timespec{{Sec: 1}, {Sec: 1}})
		}, syscall.EPERM, "setattr tokens/default/status:"},
		{"truncate a read-only file", func() error { return syscall.Truncate(p("tokens", "default", "status"), 0) }, syscall.EPERM, "setattr tokens/default/status:"},
		{"truncate a command file to a size", func() error { return syscall.Truncate(p("tokens", "default", "current"), 5) }, syscall.EPERM, "setattr tokens/default/current:"},
		{"open a root file for writing", func() error { return writeFile(p("pool"), "x") }, syscall.EACCES, "open pool: Permission denied"},
		{"mkdir in admin", func() error { return os.Mkdir(p("admin", "x"), 0o700) }, syscall.EPERM, "mkdir admin/x:"},
		{"mkdir in a token of admin", func() error { return os.Mkdir(p("admin", "tokens", "alice", "x"), 0o700) }, syscall.EPERM, "mkdir admin/tokens/alice/x:"},
		{"mkdir an existing id", func() error { return os.Mkdir(p("tokens", "default", "devices", "2026"), 0o755) }, syscall.EEXIST, ""}, // the kernel finds the name
		{"rmdir tokens", func() error { return syscall.Rmdir(p("tokens")) }, syscall.EPERM, "rmdir tokens:"},
		{"rmdir admin", func() error { return syscall.Rmdir(p("admin")) }, syscall.EPERM, "rmdir admin:"},
		{"rmdir admin/tokens", func() error { return syscall.Rmdir(p("admin", "tokens")) }, syscall.EPERM, "rmdir admin/tokens:"},
		{"rmdir a token's directory", func() error { return syscall.Rmdir(p("tokens", "default")) }, syscall.EPERM, "rmdir tokens/default:"},
		{"rmdir a file", func() error { return syscall.Rmdir(p("tokens", "default", "devices", "2026", "model")) }, syscall.ENOTDIR, ""}, // the kernel checks the type
		{"rmdir the devices link", func() error { return syscall.Rmdir(p("devices")) }, syscall.ENOTDIR, ""},                             // a symlink: the kernel again
		{"rmdir a device with a job", func() error { return syscall.Rmdir(p("tokens", "default", "devices", "2027")) }, syscall.EBUSY, "rmdir tokens/default/devices/2027: Device 2027 is running job"},
		{"rmdir a device by a model name", func() error { return syscall.Rmdir(p("tokens", "default", "devices", "Small.64GB")) }, syscall.ENOENT, ""}, // no such entry: lookup fails first
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			before, linesBefore := treeState(t, tt), errorLines(t, tt)
			err := row.op()
			if !errors.Is(err, row.errno) {
				t.Fatalf("got %v, want %v (%d)", err, row.errno, row.errno)
			}
			if after := treeState(t, tt); after != before {
				t.Errorf("a refused operation changed the state:\nbefore %s\nafter  %s", before, after)
			}
			lines := errorLines(t, tt)
			grew := len(lines) - len(linesBefore)
			if len(linesBefore) == 32 { // the errors file is full: count from the last line
				grew = 0
				if lines[len(lines)-1] != linesBefore[len(linesBefore)-1] {
					grew = 1
				}
			}
			switch {
			case row.logged == "" && grew != 0:
				t.Errorf("the kernel was to answer alone, but errors grew by %d: %q", grew, lines[len(lines)-1])
			case row.logged != "" && grew != 1:
				t.Errorf("errors grew by %d lines, want 1", grew)
			case row.logged != "" && !strings.Contains(lines[len(lines)-1], row.logged):
				t.Errorf("errors line %q lacks %q", lines[len(lines)-1], row.logged)
			}
		})
	}
	// Extended attributes are never allowed: EPERM and a line in errors.
	for _, path := range [][]string{{"tokens", "default", "current"}, {"tokens", "default", "devices", "2026"}} {
		before, linesBefore := treeState(t, tt), errorLines(t, tt)
		if err := syscall.Setxattr(tt.path(path...), "user.moreh", []byte("1"), 0); !errors.Is(err, syscall.EPERM) {
			t.Errorf("setxattr %v = %v, want EPERM", path, err)
		}
		if lines := errorLines(t, tt); len(lines) != len(linesBefore)+1 || !strings.Contains(lines[len(lines)-1], "setxattr ") {
			t.Errorf("setxattr %v: errors = %q", path, lines[len(linesBefore):])
		}
		if treeState(t, tt) != before {
			t.Errorf("setxattr %v changed the state", path)
		}
	}
	if got := readFile(t, tt.path("tokens", "default", "devices", "2027", "procs")); got != strconv.Itoa(jobPID)+"\n" {
		t.Errorf("the job of 2027 lost its process: procs = %q", got)
	}
}
