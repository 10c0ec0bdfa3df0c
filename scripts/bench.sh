#!/usr/bin/env bash
# Runs the benchmarks (fs/, store/, cmd/morehd/) and prints one table of
# medians and of ratios to floors measured in the same run, with the targets
# of "As fast as the kernel allows" and whether each is met.
#
#   sudo scripts/bench.sh               # about 6-7 minutes on 2 cores
#   COUNT=3 BENCHTIME=0.3s scripts/bench.sh
#   PROFILE=DIR scripts/bench.sh        # also CPU profiles of the servers, one per benchmark
#   sudo scripts/bench.sh scale         # the scale section alone (about 2 minutes)
#   scripts/bench.sh reads              # only: reads against a go-fuse floor in its own process,
#                                       # interleaved read by read, and kept files against tmpfs
#   scripts/bench.sh create             # only: 16 creators' speed-up against the creation floor's
#
# Floors: tmpfs (the same bytes in a file on /dev/shm: the kernel's floor),
# go-fuse (the same bytes served from memory by a minimal go-fuse tree of the
# same shape: the floor of any FUSE server here), commit (one bare bbolt
# commit of a device creation's size, on the disk that holds the store) and
# the creation floor (a minimal go-fuse tree whose mkdir and rmdir each make
# one shared bbolt commit: what FUSE and the disk allow creators here).
#
# The scale section (also at the end of a whole run) fills stores of 1k,
# 10k and 100k devices over 100, 2k and 20k tokens (cmd/moreh-fill) and runs
# morehd over each (BenchmarkScale): start-to-ready, idle CPU over 10 s,
# RssAnon and VmRSS after a walk of every token's devices/ and a root read
# of metrics, and the median of each operation, with the 100k/1k ratios.
# SCALE_COUNT=N runs each size N times (medians); SCALE_SIZES=1k,10k picks.
#
# Exit status: 0 when everything ran, whether or not the targets are met
# (the table says); 1 when a benchmark failed to run or to report; 2 usage.
# Needs root (the benchmarks mount FUSE with mount(2)) and /dev/fuse.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

count=${COUNT:-5}         # runs of each benchmark; the table shows medians
benchtime=${BENCHTIME:-0.5s}
rss_count=${RSS_COUNT:-3} # runs of the daemon RSS benchmark (a 10k walk each)
keep=${KEEP:-}            # a directory to keep the raw go test output in
profile=${PROFILE:-}      # a directory for CPU profiles of the servers (go tool pprof)

scale_count=${SCALE_COUNT:-1}
section=${1:-}
if [ $# -gt 1 ] || ! [[ $section =~ ^(reads|create|scale)?$ ]]; then
	echo "usage: [COUNT=N] [BENCHTIME=D] [RSS_COUNT=N] [SCALE_COUNT=N] [KEEP=DIR] [PROFILE=DIR] $0 [reads|create|scale]" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "scripts/bench.sh: the benchmarks mount FUSE with mount(2) and need root (try: sudo $0)" >&2
	exit 1
fi
[ -e /dev/fuse ] || { echo "scripts/bench.sh: /dev/fuse is missing (modprobe fuse)" >&2; exit 1; }
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" != tmpfs ]; then
	echo "scripts/bench.sh: /dev/shm is not tmpfs: the kernel floor needs one" >&2
	exit 1
fi

raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
if [ -n "$profile" ]; then
	mkdir -p "$profile" && profile=$(cd "$profile" && pwd) || exit 1
	export MOREH_BENCH_PROFILE=$profile # fs/bench_test.go: the servers' CPU during each timed part
fi

# bench NAME PKG PATTERN BENCHTIME COUNT: runs one go test -bench into $raw/NAME.
bench() {
	local name=$1 pkg=$2 pattern=$3 time=$4 n=$5 start=$SECONDS
	printf '== %-6s go test -run ^$ -bench %s -benchtime %s -count %s %s' "$name" "$pattern" "$time" "$n" "$pkg" >&2
	if ! go test -run '^$' -bench "$pattern" -benchtime "$time" -count "$n" -timeout 30m "$pkg" >"$raw/$name.txt" 2>&1 ||
		grep -qE '^(--- FAIL|FAIL|panic:)' "$raw/$name.txt"; then
		printf '\n' >&2
		cat "$raw/$name.txt" >&2
		echo "scripts/bench.sh: the $name benchmarks failed to run" >&2
		exit 1
	fi
	if grep -q -- '--- SKIP' "$raw/$name.txt"; then
		printf '\n' >&2
		cat "$raw/$name.txt" >&2
		echo "scripts/bench.sh: the $name benchmarks skipped" >&2
		exit 1
	fi
	printf '  (%ds)\n' $((SECONDS - start)) >&2
}

case $section in
scale) ;;
reads) bench reads ./fs/ '^BenchmarkReadFloor$' "${READS:-3000x}" "$count" ;;
create) bench create ./fs/ '^BenchmarkCreate$' "$benchtime" "$count" ;;
*)
	bench fs ./fs/ '^Benchmark(Read|Create|Switch|List|SMI)$' "$benchtime" "$count"
	bench req ./fs/ '^BenchmarkRequests$' 1x 1
	bench store ./store/ '^BenchmarkStore' "$benchtime" "$count"
	bench rss ./cmd/morehd/ '^BenchmarkDaemonRSS$' 1x "$rss_count"
	;;
esac
if [ -z "$section" ] || [ "$section" = scale ]; then
	bench scale ./cmd/morehd/ '^BenchmarkScale$' 1x "$scale_count"
fi
[ -z "$keep" ] || { mkdir -p "$keep" && cp "$raw"/*.txt "$keep"/; }

# Medians: one "name unit median runs" line per benchmark and unit, the name
# without its -GOMAXPROCS suffix.
cat "$raw"/*.txt | awk '
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	for (i = 3; i + 1 <= NF; i += 2) { k = name " " $(i+1); n[k]++; v[k, n[k]] = $i + 0 }
}
END {
	for (k in n) {
		m = n[k]
		for (i = 1; i <= m; i++) a[i] = v[k, i]
		for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
		med = (m % 2) ? a[(m+1)/2] : (a[m/2] + a[m/2+1]) / 2
		printf "%s %.6g %d\n", k, med, m
	}
}' >"$raw/medians"

declare -A med
while read -r name unit value _; do
	med["$name $unit"]=$value
done <"$raw/medians"

# get NAME UNIT: the median; a missing one fails the run (it is called in
# subshells, so it leaves a mark in a file).
get() {
	local v=${med["$1 $2"]:-}
	if [ -z "$v" ]; then
		echo "scripts/bench.sh: no result for $1 ($2)" >&2
		: >"$raw/missing"
		echo 0
		return
	fi
	echo "$v"
}
# ratio A B: A/B to two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# le A B: whether A <= B.
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
result() { # result COND: PASS or MISS
	if "$@"; then echo PASS; else echo MISS; fi
}

# scale_section: the growth table of BenchmarkScale and its targets.
scale_section() {
	local sizes=() z rows=() unit label cells a b r
	for z in 1k 10k 100k; do
		[ -n "${med["BenchmarkScale/$z devices"]:-}" ] && sizes+=("$z")
	done
	[ ${#sizes[@]} -gt 0 ] || { echo "scripts/bench.sh: no result of BenchmarkScale" >&2; : >"$raw/missing"; return; }
	local first=${sizes[0]} last=${sizes[-1]}
	local header="measure" ; for z in "${sizes[@]}"; do header+=$'\t'$z; done
	header+=$'\t'"$last/$first"$'\t'target$'\t'result
	local targets=()
	# A per-token operation: its medians and the ratio, at most 1.2.
	for unit in current status ls mkdir rmdir switch attach pool; do
		case $unit in
		current) label="read current" ;; status) label="read status" ;; ls) label="ls devices" ;;
		*) label=$unit ;;
		esac
		cells="$label µs"
		for z in "${sizes[@]}"; do cells+=$'\t'$(get "BenchmarkScale/$z" "$unit-µs"); done
		r=$(ratio "$(get "BenchmarkScale/$last" "$unit-µs")" "$(get "BenchmarkScale/$first" "$unit-µs")")
		res=$(result le "$r" 1.2)
		rows+=("$cells"$'\t'"$r"$'\t'"<= 1.2"$'\t'"$res")
		targets+=("$label: ${r}x from $first to $last (<= 1.2) $res")
	done
	# Bulk: metrics, whole and per device.
	cells="metrics ms"; local per=()
	for z in "${sizes[@]}"; do
		a=$(get "BenchmarkScale/$z" metrics-µs)
		cells+=$'\t'$(awk -v a="$a" 'BEGIN { printf "%.1f", a / 1000 }')
		per+=("$(awk -v a="$a" -v n="$(get "BenchmarkScale/$z" devices)" 'BEGIN { printf "%.2f", a / n }')")
	done
	rows+=("$cells"$'\t'$'\t'$'\t')
	cells="metrics µs/device"; for a in "${per[@]}"; do cells+=$'\t'$a; done
	if [ ${#per[@]} -ge 2 ]; then
		r=$(ratio "${per[-1]}" "${per[-2]}")
		res=$(result le "$r" 1.2)
		rows+=("$cells"$'\t'"${r} (${sizes[-1]}/${sizes[-2]})"$'\t'"<= 1.2 (${sizes[-1]}/${sizes[-2]})"$'\t'"$res")
		targets+=("metrics per device: ${r}x from ${sizes[-2]} to $last (<= 1.2) $res")
	fi
	cells="metrics MiB"; for z in "${sizes[@]}"; do cells+=$'\t'$(get "BenchmarkScale/$z" metrics-MiB); done
	rows+=("$cells"$'\t'$'\t'$'\t')
	# The daemon: ready, memory, idle CPU.
	cells="start to ready ms"; for z in "${sizes[@]}"; do cells+=$'\t'$(get "BenchmarkScale/$z" ready-ms); done
	rows+=("$cells"$'\t'"$(ratio "$(get "BenchmarkScale/$last" ready-ms)" "$(get "BenchmarkScale/$first" ready-ms)")"$'\t'$'\t')
	cells="RssAnon MiB"; for z in "${sizes[@]}"; do cells+=$'\t'$(get "BenchmarkScale/$z" anon-MiB); done
	a=$(get "BenchmarkScale/$last" anon-MiB) b=$(get "BenchmarkScale/$first" anon-MiB)
	r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.1f MiB", a - b }')
	res=$(result awk -v a="$a" -v b="$b" 'BEGIN { exit !(a - b <= 32) }')
	rows+=("$cells"$'\t'"$r"$'\t'"<= +32 MiB"$'\t'"$res")
	targets+=("RssAnon after the walk and metrics: $r from $first to $last (<= +32 MiB) $res")
	cells="VmRSS MiB (with bbolt's file pages)"; for z in "${sizes[@]}"; do cells+=$'\t'$(get "BenchmarkScale/$z" rss-MiB); done
	rows+=("$cells"$'\t'$'\t'$'\t')
	cells="idle CPU %"; for z in "${sizes[@]}"; do cells+=$'\t'$(get "BenchmarkScale/$z" idle-cpu-%); done
	a=$(get "BenchmarkScale/$last" idle-cpu-%) b=$(get "BenchmarkScale/$first" idle-cpu-%)
	r=$(ratio "$a" "$b")
	# One clock tick over the 10 s is 0.1%: a difference within it is none.
	res=$(result awk -v a="$a" -v b="$b" 'BEGIN { exit !(a <= 1.2 * b || a - b <= 0.1) }')
	rows+=("$cells"$'\t'"$r"$'\t'"<= 1.2 (or one tick, 0.1%)"$'\t'"$res")
	targets+=("idle CPU: $a% at $last, $b% at $first (<= 1.2x, or within the 0.1% a clock tick measures) $res")
	echo "scale: devices over tokens 1k/100, 10k/2k, 100k/20k, ten a token; medians of $scale_count run(s) of BenchmarkScale"
	{
		printf '%s\n' "$header"
		printf '%s\n' "${rows[@]}"
	} | column -t -s $'\t'
	echo
	echo "scale targets:"
	printf '  %s\n' "${targets[@]}"
}

if [ "$section" = scale ]; then
	scale_section
	[ ! -e "$raw/missing" ] || exit 1
	echo "(one run on $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); go test output: KEEP=DIR $0 scale)"
	exit 0
fi

# reqs OP/ROOT: FUSE requests per operation (BenchmarkRequests), on the
# go-fuse floor and the tree10k only.
reqs() {
	case $1 in
	*/gofuse | */tree10k) awk -v n="$(get "BenchmarkRequests/$1" req/op)" 'BEGIN { printf "%.1f", n }' ;;
	esac
}
# us NS: nanoseconds as microseconds.
us() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1000 }'; }

# The sections alone: their ratios and targets, then done.
case $section in
reads)
	echo "reads, interleaved read by read with the floor (medians of $count runs of ${READS:-3000x}):"
	for f in current usage status status.json; do
		x=$(get "BenchmarkReadFloor/$f" x-floor)
		printf '  %-22s tree %6s µs  go-fuse floor (own process) %6s µs  %5.2fx (<= 1.2x) %s\n' "$f" \
			"$(us "$(get "BenchmarkReadFloor/$f" tree-ns)")" "$(us "$(get "BenchmarkReadFloor/$f" floor-ns)")" "$x" "$(result le "$x" 1.2)"
	done
	for f in tokens-current model; do
		x=$(get "BenchmarkReadFloor/$f" x-tmpfs)
		printf '  %-22s tree %6s µs  tmpfs %6s µs  %5.2fx (<= 3x) %s\n' "$f (kept)" \
			"$(us "$(get "BenchmarkReadFloor/$f" tree-ns)")" "$(us "$(get "BenchmarkReadFloor/$f" tmpfs-ns)")" "$x" "$(result le "$x" 3)"
		printf '  %-22s  a kept file of the go-fuse floor %6s µs (%5.2fx tmpfs): the tree %5.2fx it\n' "" \
			"$(us "$(get "BenchmarkReadFloor/$f" keptfloor-ns)")" "$(get "BenchmarkReadFloor/$f" floor-x-tmpfs)" "$(get "BenchmarkReadFloor/$f" x-keptfloor)"
	done
	;;
create)
	fspeedup=$(ratio "$(get BenchmarkCreate/gofuse-1creator ns/op)" "$(get BenchmarkCreate/gofuse-16creators ns/op)")
	speedup=$(ratio "$(get BenchmarkCreate/1creator ns/op)" "$(get BenchmarkCreate/16creators ns/op)")
	x=$(ratio "$speedup" "$fspeedup")
	echo "16 concurrent creators (medians of $count runs): tree ${speedup}x one creator, creation floor ${fspeedup}x:" \
		"${x}x the floor's speed-up (>= 0.95x) $(result le 0.95 "$x")"
	;;
esac
if [ -n "$section" ]; then
	[ ! -e "$raw/missing" ] || exit 1
	echo "(one run on $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
	exit 0
fi

rows=()
targets=()
# row CELLS...: one line of the table; an empty cell shows as "-".
row() {
	local cells=() c
	for c in "$@"; do cells+=("${c:--}"); done
	rows+=("$(IFS=$'\t'; echo "${cells[*]}")")
}

# Reads: each file on both floors and on the tree, 1 token and 10k devices.
for file in current usage status status.json; do
	g=$(get "BenchmarkRead/$file/gofuse" ns/op)
	gp=$(get "BenchmarkRead/$file/gofuse" p99-ns)
	t=$(get "BenchmarkRead/$file/tmpfs" ns/op)
	for root in tmpfs gofuse tree tree10k tree10k-slowprobe; do
		name=BenchmarkRead/$file/$root
		ns=$(get "$name" ns/op)
		p99=$(get "$name" p99-ns)
		target='' res=''
		case $root in
		tree10k)
			target="median <= 1.5x go-fuse"
			res=$(result le "$(ratio "$ns" "$g")" 1.5)
			targets+=("read $file, 10k devices: $(ratio "$ns" "$g")x go-fuse (<= 1.5x) $res")
			;;
		tree10k-slowprobe)
			target="p99 <= 2x go-fuse p99"
			res=$(result le "$(ratio "$p99" "$gp")" 2)
			targets+=("read $file, 500 ms probe: p99 $(ratio "$p99" "$gp")x go-fuse p99 (<= 2x) $res; $(ratio "$p99" "$(get "BenchmarkRead/$file/tree10k" p99-ns)")x the p99 with a fast probe")
			;;
		esac
		row "read/$file/$root" "$(us "$ns")" "$(us "$p99")" "$(reqs "read/$file/$root")" "$(ratio "$ns" "$g")" "$(ratio "$ns" "$t")" "" "$target" "$res"
	done
done

# Device lifecycles: mkdir + read current + rmdir (two commits), on the
# creation floor (go-fuse + one shared bbolt commit per mkdir and rmdir, no
# rules) and on the tree.
commit=$(get BenchmarkCreate/commit ns/op)
row create/commit "$(us "$commit")" "$(us "$(get BenchmarkCreate/commit p99-ns)")" "" "" "" 1.00 "bare bbolt commit" ""
fone=$(get BenchmarkCreate/gofuse-1creator ns/op)
fsixteen=$(get BenchmarkCreate/gofuse-16creators ns/op)
fspeedup=$(ratio "$fone" "$fsixteen")
row create/gofuse-1creator "$(us "$fone")" "$(us "$(get BenchmarkCreate/gofuse-1creator p99-ns)")" "$(reqs create/gofuse)" 1.00 "" "$(ratio "$fone" "$commit")" "" ""
row create/gofuse-16creators "$(us "$fsixteen")" "$(us "$(get BenchmarkCreate/gofuse-16creators p99-ns)")" "" 1.00 "" "$(ratio "$fsixteen" "$commit")" \
	"floor: ${fspeedup}x 1creator" ""
one=$(get BenchmarkCreate/1creator ns/op)
sixteen=$(get BenchmarkCreate/16creators ns/op)
row create/1creator "$(us "$one")" "$(us "$(get BenchmarkCreate/1creator p99-ns)")" "$(reqs create/tree10k)" "$(ratio "$one" "$fone")" "" "$(ratio "$one" "$commit")" "" ""
speedup=$(ratio "$one" "$sixteen")
res=$(result le 5 "$speedup")
row create/16creators "$(us "$sixteen")" "$(us "$(get BenchmarkCreate/16creators p99-ns)")" "" "$(ratio "$sixteen" "$fsixteen")" "" "$(ratio "$sixteen" "$commit")" \
	"throughput >= 5x 1creator: ${speedup}x" "$res"
targets+=("16 concurrent creators: ${speedup}x the throughput of one (>= 5x) $res; the creation floor reaches ${fspeedup}x here")

# echo ID > current, ls devices (token at its limit), moreh-smi.
for group in Switch List SMI; do
	g=$(get "Benchmark$group/gofuse" ns/op)
	t=$(get "Benchmark$group/tmpfs" ns/op)
	label=$(echo "$group" | tr '[:upper:]' '[:lower:]')
	for root in tmpfs gofuse tree10k; do
		name=Benchmark$group/$root
		ns=$(get "$name" ns/op)
		c=""
		[ "$group" = Switch ] && c=$(ratio "$ns" "$commit")
		r=""
		[ "$group" != SMI ] && r=$(reqs "$label/$root")
		row "$label/$root" "$(us "$ns")" "$(us "$(get "$name" p99-ns)")" "$r" "$(ratio "$ns" "$g")" "$(ratio "$ns" "$t")" "$c" "" ""
	done
done

# The store alone, below FUSE.
scommit=$(get BenchmarkStoreCommit ns/op)
for name in BenchmarkStoreCommit BenchmarkStoreCreate/1 BenchmarkStoreCreate/16 BenchmarkStoreRead/view BenchmarkStoreRead/token BenchmarkStoreRead/device BenchmarkStoreRead/caller; do
	ns=$(get "$name" ns/op)
	c=""
	case $name in *Commit | *Create/*) c=$(ratio "$ns" "$scommit") ;; esac
	label=${name#Benchmark}
	label=$(echo "${label:0:1}" | tr '[:upper:]' '[:lower:]')${label:1}
	row "$label" "$(us "$ns")" "" "" "" "" "$c" "" ""
done
sspeed=$(ratio "$(get BenchmarkStoreCreate/1 ns/op)" "$(get BenchmarkStoreCreate/16 ns/op)")

# The daemon's memory with 10,000 devices.
rss=$(get BenchmarkDaemonRSS/10k rss-MiB)
res=$(result le "$rss" 64)
targets+=("morehd resident memory, 10k devices: $rss MiB after the walk (< 64 MiB) $res")

[ ! -e "$raw/missing" ] || exit 1

{
	printf 'benchmark\tmedian µs\tp99 µs\treq/op\t×go-fuse\t×tmpfs\t×commit\ttarget\tresult\n'
	printf '%s\n' "${rows[@]}"
} | column -t -s $'\t'
echo
echo "creators (16 concurrent vs 1): ${speedup}x throughput through FUSE, ${sspeed}x in the store alone, ${fspeedup}x on the creation floor"
printf 'morehd RSS with 10,000 devices: %s MiB at start, %s MiB after walking every token (peak %s MiB)\n' \
	"$(get BenchmarkDaemonRSS/10k start-MiB)" "$rss" "$(get BenchmarkDaemonRSS/10k hwm-MiB)"
echo
echo "targets (medians of $count runs, $rss_count for memory; ratios to floors of the same run):"
printf '  %s\n' "${targets[@]}"
echo
scale_section
[ ! -e "$raw/missing" ] || exit 1
if [ -n "$profile" ]; then
	echo
	echo "where the daemon's CPU goes with 16 creators ($profile/BenchmarkCreate_16creators.pprof; every benchmark has one):"
	go tool pprof -top -nodecount 12 "$profile/BenchmarkCreate_16creators.pprof" 2>/dev/null | sed -n '/flat%/,$p'
fi
echo "(one run on $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); go test output: KEEP=DIR $0)"
