#!/usr/bin/env bash
# Builds, vets and tests moreh: race-enabled tests on real FUSE mounts, then a
# few seconds of each fuzz target. Needs root (mount(2)) and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."

# A count, not a time: a time budget can fail with a bare "context deadline
# exceeded" at its end under load (go.dev/issue/75804, fixed in Go 1.27).
fuzztime=${FUZZTIME:-10000x}

# A killed test run leaves mounts of ours behind, and a test binary that died
# while its own mount was busy waits on it for ever: abort those connections
# (fusectl) and detach the mounts, first and last.
clear_stale_mounts() {
	[ -d /sys/fs/fuse/connections ] && ! mountpoint -q /sys/fs/fuse/connections &&
		mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null
	# mountinfo: id parent major:minor root mountpoint ... - fstype source
	awk '$5 ~ "^/tmp/" { for (i = 7; i <= NF; i++) if ($i == "-") break;
		if ($(i+1) == "fuse.moreh") { split($3, dev, ":"); print dev[2], $5 } }' /proc/self/mountinfo |
		while read -r conn mnt; do
			echo 1 >"/sys/fs/fuse/connections/$conn/abort" 2>/dev/null || true
			umount -l "$mnt" 2>/dev/null || true
		done
}
clear_stale_mounts
trap clear_stale_mounts EXIT

if [ "$(id -u)" != 0 ]; then
	echo "scripts/test.sh: the tests mount FUSE with mount(2) and need root (try: sudo $0)" >&2
	exit 1
fi
[ -e /dev/fuse ] || { echo "scripts/test.sh: /dev/fuse is missing (modprobe fuse)" >&2; exit 1; }

echo "== build and vet"
go build ./...
go vet ./...
shims=(scripts/moreh-smi scripts/moreh-switch-model scripts/moreh-run scripts/lib/moreh.sh scripts/install.sh scripts/moreh-completion.bash)
bash -n "${shims[@]}"
if command -v shellcheck >/dev/null; then
	shellcheck -x "${shims[@]}" scripts/bench.sh scripts/test.sh
else
	echo "shellcheck is not on PATH: the shims are not linted (apt-get install shellcheck)"
fi
unformatted=$(gofmt -l .)
[ -z "$unformatted" ] || { echo "gofmt would change: $unformatted" >&2; exit 1; }

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
