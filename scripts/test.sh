#!/usr/bin/env bash
# Builds, vets and tests moreh: shellcheck, race-enabled tests on real FUSE
# mounts, then a few seconds of each fuzz target. Needs root (mount(2)) and
# /dev/fuse; re-runs itself through sudo when started as another user.
set -euo pipefail
cd "$(dirname "$0")/.."
self=$PWD/scripts/test.sh
# shellcheck source=scripts/goenv.sh
. scripts/goenv.sh

usage() {
	cat <<EOF
Usage: scripts/test.sh [--clean-only]

Builds, vets, shellchecks, fuzzes and tests moreh (as root: the tests mount
real FUSE filesystems). Every mount, temp file and daemon of the run lives
in its own run directory, /tmp/moreh-test.XXXXXX (TMPDIR for the tests),
removed at the end; a mount anywhere else is never touched.

  --clean-only   only clear the run directories that killed earlier runs
                 left behind (their owner is gone), with their mounts
  -h, --help     this help

Environment: FUZZTIME (default 10000x) inputs per fuzz target.
EOF
	if moreh_go_env test.sh 2>/dev/null; then
		printf '\nUses %s (%s), CGO_CFLAGS=%s\n' "$(go version | cut -d' ' -f3)" "$(command -v go)" "$CGO_CFLAGS"
	fi
}

mode=all
case ${1-} in
'') ;;
-h | --help)
	usage
	exit 0
	;;
--clean-only) mode=clean ;;
*)
	printf "scripts/test.sh: unexpected argument '%s'\nRun 'scripts/test.sh --help' for usage.\n" "$1" >&2
	exit 2
	;;
esac

moreh_as_root "$self" "$@"

# A count, not a time: a time budget can fail with a bare "context deadline
# exceeded" at its end under load (go.dev/issue/75804, fixed in Go 1.27).
fuzztime=${FUZZTIME:-10000x}

# Shell files not yet clean enough for shellcheck (only bash -n checks them).
shellcheck_later=() # none now: the shims and their library are clean

# A run directory holds this marker: the pid and start time (field 22 of
# /proc/PID/stat) of the test.sh that owns it. A directory whose owner is
# gone (no such pid, or a pid reused by a process started at another time)
# is what a killed run left behind.
marker=.moreh-test-owner
run_prefix=/tmp/moreh-test.

# starttime PID: the process's start time in clock ticks since boot.
starttime() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) } # the command name may hold spaces and parentheses
	# shellcheck disable=SC2086 # split the fields
	set -- $stat
	printf '%s\n' "${20}"
}

# clear_mounts DIR: aborts the FUSE connections (fusectl) of the mounts at or
# under DIR and detaches them, deepest first: a test binary that died while
# its own mount was busy would wait on it for ever.
clear_mounts() {
	if [[ -d /sys/fs/fuse/connections ]] && ! mountpoint -q /sys/fs/fuse/connections; then
		mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
	fi
	# mountinfo: id parent major:minor root mountpoint ... - fstype source
	awk -v dir="$1" '$5 == dir || index($5, dir "/") == 1 {
		for (i = 7; i <= NF; i++) if ($i == "-") break
		split($3, dev, ":"); print ($(i+1) ~ /^fuse/ ? dev[2] : "-"), $5 }' /proc/self/mountinfo |
		sort -k2 -r |
		while read -r conn mnt; do
			[[ $conn == - ]] || echo 1 >"/sys/fs/fuse/connections/$conn/abort" 2>/dev/null || true
			umount -l "$mnt" 2>/dev/null || true
		done
}

# remove_run DIR: clears DIR's mounts and removes it, never crossing into a
# mount that is still there.
remove_run() {
	clear_mounts "$1"
	rm -rf --one-file-system -- "$1" 2>/dev/null || true
}

# clear_stale_runs: removes the run directories whose owner is gone. A live
# run's, and anything without the marker, are left alone.
clear_stale_runs() {
	local dir pid start
	for dir in "$run_prefix"*; do
		# Only what this user made: anyone may create a name under /tmp.
		[[ -d $dir && ! -L $dir && -O $dir && -f $dir/$marker && -O $dir/$marker ]] || continue
		read -r pid start <"$dir/$marker" || continue
		[[ $pid =~ ^[0-9]+$ ]] || continue
		[[ $(starttime "$pid") == "$start" ]] && continue
		echo "clearing $dir (left by a killed run, pid $pid)"
		remove_run "$dir"
	done
}

clear_stale_runs
[[ $mode == clean ]] && exit 0

[[ -e /dev/fuse ]] || {
	echo "scripts/test.sh: /dev/fuse is missing (modprobe fuse)" >&2
	exit 1
}
moreh_go_env scripts/test.sh

run_dir=$(mktemp -d "${run_prefix}XXXXXX")
# Tests run shims as other users on mounts in there: they may pass through
# (as through /tmp), not list it.
chmod 0711 "$run_dir"
echo "$$ $(starttime $$)" >"$run_dir/$marker"
trap 'remove_run "$run_dir"' EXIT
trap 'exit 130' INT # so that the EXIT trap runs; a SIGKILLed run's
trap 'exit 143' TERM # directory is cleared by the next run
export TMPDIR=$run_dir GOTMPDIR=$run_dir

echo "== build, vet, shellcheck"
go build ./...
go vet ./...
unformatted=$(gofmt -l .)
[[ -z $unformatted ]] || {
	echo "gofmt would change: $unformatted" >&2
	exit 1
}
shell_files=()
while IFS= read -r f; do
	[[ " ${shellcheck_later[*]} " == *" $f "* ]] || shell_files+=("$f")
done < <({ git ls-files -co --exclude-standard 2>/dev/null || find . -path ./.git -prune -o -type f -printf '%P\n'; } | while IFS= read -r f; do
	[[ -f $f ]] || continue
	case $f in
	*.sh | *.bash) echo "$f" ;;
	*) head -c 64 -- "$f" | head -1 | grep -qE '^#!.*\b(ba)?sh\b' && echo "$f" ;;
	esac
done | sort)
((${#shellcheck_later[@]} == 0)) || bash -n "${shellcheck_later[@]}"
if command -v shellcheck >/dev/null; then
	shellcheck -x "${shell_files[@]}"
else
	echo "scripts/test.sh: shellcheck is missing (apt-get install shellcheck; .ci/run installs it)" >&2
	exit 1
fi

echo "== fuzz ($fuzztime each)"
# Fuzz first: a crasher is written to testdata and then fails the test run.
grep -rhoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sort -u | while read -r _ name; do
	pkg=$(grep -rlE --include='*_test.go' "^func ${name}\(" . | head -1 | xargs dirname)
	if ! out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1); then
		echo "$out" >&2
		exit 1
	fi
	echo "fuzzed $name in $pkg"
done

echo "== tests"
go test -race -count=1 ./...
echo "== the store suite against etcd"
MOREH_STORE_BACKEND=etcd go test -race -count=1 ./store/
