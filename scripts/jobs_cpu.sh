#!/usr/bin/env bash
# Daemon CPU with 25 running jobs and 2,000 unrelated idle processes on the
# machine, against the same with no job: prints the ratio (target <= 1.1).
#
#   sudo scripts/jobs_cpu.sh                 # jobs as cgroups (the default), 10 s windows
#   sudo CGROUP_ROOT=none scripts/jobs_cpu.sh  # the /proc supervision, for comparison
#   sudo WINDOW=5s scripts/jobs_cpu.sh
#
# It starts a daemon of its own on a temp mount, and kills only the
# processes it started. Needs root and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOREH_CPU_WINDOW=${WINDOW:-10s}
export MOREH_CPU_CGROUP_ROOT=${CGROUP_ROOT:-}
out=$(go test -run '^$' -bench '^BenchmarkJobsCPU$' -benchtime 1x -timeout 10m ./cmd/morehd/ 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" | grep -E 'jobs_cpu_test.go|BenchmarkJobsCPU|settling' | sed 's/^ *//'
ratio=$(echo "$out" | grep -oE '[0-9.]+ ratio' | cut -d' ' -f1)
echo "ratio: $ratio (target <= 1.1)"
