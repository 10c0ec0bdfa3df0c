#!/usr/bin/env bash
# morehd.sh [FLAGS]: builds cmd/morehd from this checkout and runs it in the
# foreground with FLAGS (morehd --help lists them), as root: it re-runs
# itself through sudo when started as another user. The README's "run the
# daemon" command.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/goenv.sh
. scripts/goenv.sh
moreh_as_root "$PWD/scripts/morehd.sh" "$@"
moreh_go_env scripts/morehd.sh

# A build kept between runs, so the next start is quick; exec keeps the pid,
# so Ctrl-C and SIGTERM reach morehd itself and its exit status is this one.
bin=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/moreh/morehd
mkdir -p -- "${bin%/*}"
[[ -x $bin ]] || echo "scripts/morehd.sh: building morehd (the first build takes a minute)" >&2
go build -o "$bin" ./cmd/morehd
exec "$bin" "$@"
