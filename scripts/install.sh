#!/usr/bin/env bash
# install.sh: installs morehd, the shims, the systemd unit and the bash
# completion. Run it again to upgrade: it replaces what it installed and
# never touches /etc/moreh/token or the state in /var/lib/moreh.
set -euo pipefail
umask 022

PROG=install.sh
SRC=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
SHIMS=(moreh-smi moreh-switch-model moreh-run)

usage() {
	cat <<EOF
Usage: scripts/install.sh [--prefix DIR] [--root DIR] [--binary PATH]

Installs moreh on this machine (run it as root):

  PREFIX/bin/morehd                        the daemon (built with go build,
                                             or the one --binary names)
  PREFIX/bin/moreh-smi, moreh-switch-model, moreh-run
                                           the shims
  PREFIX/lib/moreh/moreh.sh                the library the shims source
  /etc/systemd/system/morehd.service       the unit (Type=notify), ExecStart
                                             PREFIX/bin/morehd
  PREFIX/share/bash-completion/completions/moreh-smi (and links named
    moreh-switch-model and moreh-run)      bash completion
  /etc/moreh/                              created (0755) if missing; an
                                             existing /etc/moreh/token is
                                             never changed

  --prefix DIR     where to install (default /usr/local)
  --root DIR       install under DIR instead of / (a staging root, as
                     DESTDIR): files go to DIR/PREFIX/... and DIR/etc/...,
                     while the unit still names PREFIX/bin/morehd
  --binary PATH    install this morehd instead of building one (building
                     needs Go on PATH or in /usr/local/go/bin)
  -h, --help       this help

Afterwards, as root:
  systemctl daemon-reload && systemctl enable --now morehd
  morehd token add NAME      a token for a user, who binds with it (see
                             moreh-smi --help); without tokens every local
                             user shares the default one

Running it again replaces the installed files: the way to upgrade.
Exit status: 0 installed, 1 failed, 2 usage error.
EOF
}

usage_error() {
	printf '%s: %s\n' "$PROG" "$1" >&2
	printf "Run '%s --help' for usage.\n" "$PROG" >&2
	exit 2
}

die() {
	printf '%s: %s\n' "$PROG" "$1" >&2
	exit 1
}

# say WHAT PATH: one line of what was done.
say() {
	printf '%-10s %s\n' "$1" "$2"
}

# put MODE FROM TO: installs FROM as TO with MODE, replacing TO (also while
# TO runs: install unlinks it first).
put() {
	install -D -m "$1" -- "$2" "$3" || die "could not install $3."
	say installed "$3"
}

# link TARGET NAME: NAME becomes a symbolic link to TARGET.
link() {
	ln -sfn -- "$1" "$2" || die "could not link $2."
	say linked "$2 -> $1"
}

main() {
	local prefix=/usr/local root='' binary='' arg
	while (($# > 0)); do
		arg=$1
		shift
		case $arg in
		-h | --help)
			usage
			exit 0
			;;
		--prefix | --root | --binary)
			(($# > 0)) || usage_error "expected a value after $arg."
			case $arg in
			--prefix) prefix=$1 ;;
			--root) root=$1 ;;
			*) binary=$1 ;;
			esac
			shift
			;;
		--prefix=*) prefix=${arg#*=} ;;
		--root=*) root=${arg#*=} ;;
		--binary=*) binary=${arg#*=} ;;
		*) usage_error "unexpected argument '$arg'." ;;
		esac
	done
	[[ $prefix == /* ]] || usage_error "--prefix must be an absolute path, not '$prefix'."
	[[ $prefix != *[[:space:]]* ]] || usage_error "--prefix must not hold spaces: the unit's ExecStart names it."
	[[ $prefix == / ]] || prefix=${prefix%/}
	[[ -z $root || $root == / ]] && root=''
	root=${root%/}
	if [[ -z $root && $EUID != 0 ]]; then
		die "installing into / needs root: run it with sudo, or pass --root DIR."
	fi
	if [[ -n $root ]]; then
		mkdir -p -- "$root" || die "could not create $root."
		root=$(cd -- "$root" && pwd)
	fi

	local bin=$root${prefix%/}/bin
	local lib=$root${prefix%/}/lib/moreh
	local completions=$root${prefix%/}/share/bash-completion/completions
	local unit=$root/etc/systemd/system/morehd.service
	local etc=$root/etc/moreh
	local tmp
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064 # expand tmp now: it is local
	trap "rm -rf -- '$tmp'" EXIT

	if [[ -n $binary ]]; then
		[[ -f $binary && -x $binary ]] || die "--binary $binary is not an executable file."
		cp -- "$binary" "$tmp/morehd"
	else
		# shellcheck source=scripts/goenv.sh
		. "$SRC/goenv.sh"
		moreh_go_env "$PROG" || die "pass --binary PATH, or install Go."
		# -trimpath: no build paths in the binary; -s -w: no symbol table
		# nor DWARF (a third of its size). The VCS revision stays
		# (morehd --version).
		say building "morehd (go build -trimpath -ldflags='-s -w' ./cmd/morehd)"
		(cd -- "$SRC/.." && go build -trimpath -ldflags='-s -w' -o "$tmp/morehd" ./cmd/morehd) || die "go build failed."
	fi

	put 0755 "$tmp/morehd" "$bin/morehd"
	local shim
	# The shims find their library at ../lib/moreh/ of their directory.
	put 0644 "$SRC/lib/moreh.sh" "$lib/moreh.sh"
	for shim in "${SHIMS[@]}"; do
		put 0755 "$SRC/$shim" "$bin/$shim"
	done

	local exec=${prefix%/}/bin/morehd
	exec=${exec//\\/\\\\}
	exec=${exec//&/\\&}
	exec=${exec//|/\\|}
	sed "s|/usr/local/bin/morehd|$exec|g" -- "$SRC/morehd.service" >"$tmp/morehd.service"
	put 0644 "$tmp/morehd.service" "$unit"

	# bash-completion loads completions/<command> on first use: one file,
	# and a link for each other command it completes.
	put 0644 "$SRC/moreh-completion.bash" "$completions/moreh-smi"
	link moreh-smi "$completions/moreh-switch-model"
	link moreh-smi "$completions/moreh-run"

	if [[ -d $etc ]]; then
		say kept "$etc"
	else
		install -d -m 0755 -- "$etc" || die "could not create $etc."
		say created "$etc"
	fi
	if [[ -e $etc/token ]]; then
		say kept "$etc/token"
	fi

	cat <<EOF

Done. Next, as root:
  systemctl daemon-reload && systemctl enable --now morehd
  morehd token add NAME     (prints the token to hand to a user)
Users bind to their token with MOREH_SDA_TOKEN or ~/.moreh/token; a token
that every user of this machine shares may go into /etc/moreh/token.
EOF
}

main "$@"
