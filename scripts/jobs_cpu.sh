#!/usr/bin/env bash
# Daemon CPU with 25 running jobs and 2,000 unrelated idle processes on the
# machine, against the same with no job: prints the ratio of each run and
# their median (target <= 1.1). The figures are a few milliseconds of CPU a
# second, so a run alone moves with the machine's other work: RUNS runs (3).
#
#   sudo scripts/jobs_cpu.sh                 # jobs as cgroups (the default), 10 s windows
#   sudo CGROUP_ROOT=none scripts/jobs_cpu.sh  # the /proc supervision, for comparison
#   sudo WINDOW=5s scripts/jobs_cpu.sh
#   sudo RUNS=9 scripts/jobs_cpu.sh
#
# It starts a daemon of its own on a temp mount, and kills only the
# processes it started. Needs root and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOREH_CPU_WINDOW=${WINDOW:-10s}
export MOREH_CPU_CGROUP_ROOT=${CGROUP_ROOT:-}
runs=${RUNS:-3}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "scripts/jobs_cpu.sh: RUNS must be a count, not '$runs'" >&2; exit 2; }
out=$(go test -run '^$' -bench '^BenchmarkJobsCPU$' -benchtime 1x -count "$runs" -timeout 30m ./cmd/morehd/ 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" | grep -E 'jobs_cpu_test.go|BenchmarkJobsCPU|settling' | sed 's/^ *//'
ratios=$(echo "$out" | grep -oE '[0-9.]+ ratio' | cut -d' ' -f1)
[ "$(echo "$ratios" | grep -c .)" = "$runs" ] || { echo "$out" >&2; echo "scripts/jobs_cpu.sh: expected $runs ratios" >&2; exit 1; }
median=$(echo "$ratios" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "ratios: $(echo "$ratios" | tr '\n' ' ')"
echo "median ratio of $runs runs: $median (target <= 1.1)"
