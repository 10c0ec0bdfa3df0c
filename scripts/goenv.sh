# shellcheck shell=bash
# goenv.sh: sourced by scripts/morehd.sh, scripts/test.sh, scripts/install.sh
# and .ci/run, so that the README's commands work as written: as root, or as
# a user who is re-run through sudo, whose secure_path lacks Go's directory.

# moreh_go_env PROG: puts go on PATH (PATH's own, else the official
# tarball's /usr/local/go/bin) and quiets the C compiler's deprecation
# warnings on go-nvml's cgo preamble (about 150 lines on a cold build, which
# read as a failure). Says what to install when go is missing.
moreh_go_env() {
	local dir
	if ! command -v go >/dev/null; then
		for dir in /usr/local/go/bin /usr/lib/go/bin; do
			if [[ -x $dir/go ]]; then
				PATH=$PATH:$dir
				break
			fi
		done
	fi
	if ! command -v go >/dev/null; then
		printf '%s: go is not on PATH nor in /usr/local/go/bin: install Go 1.26.8 or later (https://go.dev/dl, unpacked into /usr/local)\n' "$1" >&2
		return 1
	fi
	case " ${CGO_CFLAGS-} " in
	*" -Wno-deprecated-declarations "*) ;;
	*) CGO_CFLAGS="${CGO_CFLAGS:-$(go env CGO_CFLAGS)} -Wno-deprecated-declarations" ;;
	esac
	export PATH CGO_CFLAGS
}

# moreh_as_root PROG ARGS...: returns as root, or re-runs PROG ARGS as root
# through sudo (keeping the few variables the scripts read), or says how to
# run it when there is no sudo.
moreh_as_root() {
	[[ $EUID == 0 ]] && return 0
	if ! command -v sudo >/dev/null; then
		printf '%s: needs root (it mounts FUSE with mount(2)) and there is no sudo: run it as root\n' "$1" >&2
		exit 1
	fi
	local keep=() name
	for name in FUZZTIME GOFLAGS GOPROXY GOTOOLCHAIN CGO_CFLAGS; do
		[[ -n ${!name+set} ]] && keep+=("$name=${!name}")
	done
	printf '%s: needs root (it mounts FUSE with mount(2)): running it through sudo\n' "$1" >&2
	exec sudo -- env "${keep[@]}" "$@"
}
