#!/usr/bin/env bash
# How long after a job's last process exits its GPUs are free: p50, p99
# and max over 50 jobs (target: p99 <= 100 ms), on the daemon as it ships.
#
#   sudo scripts/release_latency.sh              # one job ending at a time
#   sudo PARALLEL=8 scripts/release_latency.sh   # 8 jobs ending at once each round
#   sudo JOBS=200 scripts/release_latency.sh
#
# It starts a daemon of its own on a temp mount, and kills only the
# processes it started. Needs root, /dev/fuse and a writable cgroup v2.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOREH_RELEASE_JOBS=${JOBS:-50}
export MOREH_RELEASE_PARALLEL=${PARALLEL:-1}
out=$(go test -run '^$' -bench '^BenchmarkReleaseLatency$' -benchtime 1x -timeout 10m ./cmd/morehd/ 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" | grep -E 'release_bench_test.go|BenchmarkReleaseLatency|SKIP' | sed 's/^ *//'
