# shellcheck shell=bash
# moreh.sh: what moreh-smi, moreh-switch-model and moreh-run share: finding
# the tree, binding the caller to a token, reading files, running a command
# and reading why it failed, and the model menu. Sourced by the shims (each
# sets PROG first); it holds no rule of its own: the tree decides, this only
# reads and writes its files. Installed as PREFIX/lib/moreh/moreh.sh.

ROOT=${MOREH_ROOT:-/moreh}

# usage_error MESSAGE: a mistake in the command line; exits 2.
usage_error() {
	printf '%s: %s\n' "$PROG" "$1" >&2
	printf "Run '%s --help' for usage.\n" "$PROG" >&2
	exit 2
}

# fail ACTION CAUSE [STATUS]: prints "<ACTION> failed. (<CAUSE>)" to stderr;
# exits STATUS (default 1). When the tree has gone meanwhile (morehd
# stopped), that is the cause shown (not_running).
fail() {
	[[ -r $ROOT/models ]] || not_running
	printf '%s failed. (%s)\n' "$1" "$2" >&2
	exit "${3:-1}"
}

# not_running: says that no morehd answers at $ROOT (nothing mounted
# there, or a dead mount: ENOTCONN) and how to start it; exits
# NOT_RUNNING_STATUS (default 1; moreh-smi's is 9, nvidia-smi's "driver not
# loaded").
not_running() {
	printf 'moreh: morehd is not running (no moreh tree at %s): start it with: sudo systemctl start morehd (or: sudo morehd --mount %s)\n' "$ROOT" "$ROOT" >&2
	exit "${NOT_RUNNING_STATUS:-1}"
}

# need_tree: exits (not_running) unless a moreh tree answers at $ROOT;
# binds an unbound caller to a token (bind_token); sets MINE, the caller's
# token directory (the per-caller devices link's parent), and ERRORS, its
# errors file.
need_tree() {
	[[ -r $ROOT/models ]] || not_running
	bind_token
	MINE=$ROOT/devices/..
	ERRORS=$MINE/errors
}

# wants_help ARGS...: whether -h or --help is among ARGS: then a shim
# prints its help and does nothing else.
wants_help() {
	local arg
	for arg in "$@"; do
		[[ $arg == -h || $arg == --help ]] && return 0
	done
	return 1
}

# read_file VAR FILE: sets VAR to the whole of FILE, read by bash itself (no
# cat to start: a process costs more than the read); returns 1, silently,
# when FILE cannot be opened.
read_file() {
	local fd
	{ exec {fd}<"$2"; } 2>/dev/null || return 1
	IFS= read -r -d '' "$1" <&"$fd"
	exec {fd}<&-
	return 0
}

# print_file FILE: FILE's content on stdout, or 1 when it cannot be opened.
print_file() {
	local content
	read_file content "$1" || return 1
	printf '%s' "$content"
}

# write_file FILE VALUE: one write of VALUE and a newline: a command to morehd.
write_file() {
	printf '%s\n' "$2" >"$1"
}

# try CMD ARGS...: runs CMD with its output dropped, in a subshell that
# execs CMD when it is a program (mkdir, rmdir, ls) and runs it itself when
# it is a function (write_file): either way the process whose system calls
# reach morehd is that subshell, whose pid TRY_PID gets. On failure sets
# TRY_ERR to the system's reason (e.g. "Invalid argument") and returns 1.
try() {
	local out status
	out=$(
		export LC_ALL=C
		printf '%s\n' "$BASHPID"
		if declare -F -- "$1" >/dev/null; then
			"$@" 2>&1 >/dev/null
		else
			exec -- "$@" 2>&1 >/dev/null
		fi
	)
	status=$?
	TRY_PID=${out%%$'\n'*}
	out=${out:${#TRY_PID}+1}
	((status == 0)) && return 0
	TRY_ERR=${out##*: }
	[[ -n $TRY_ERR ]] || TRY_ERR="Unknown error"
	return 1
}

# errors_snapshot: remembers the errors file, so that cause reads only the
# lines added since (a pid is reused in time).
errors_snapshot() {
	read_file ERRORS_BEFORE "$ERRORS" || ERRORS_BEFORE=
}

# cause OP FALLBACK: the sentence that morehd logged for the OP (mkdir,
# rmdir, write) that the last try failed, else FALLBACK. An errors line is
# "<RFC3339 time> pid=<pid> uid=<uid> <op> <path>: <message>"; only a line
# of TRY_PID's, added since errors_snapshot, is ours: on a token that
# several users share, another caller's failure is never shown.
cause() {
	local now line rest found=
	read_file now "$ERRORS" || now=
	while IFS= read -r line; do
		rest=${line#* }
		[[ $rest == "pid=$TRY_PID "* ]] || continue
		rest=${rest#* }
		rest=${rest#* }
		[[ $rest == "$1 "* && $'\n'$ERRORS_BEFORE != *$'\n'"$line"$'\n'* ]] || continue
		rest=${rest#* }
		found=${rest#* }
	done <<<"$now"
	printf '%s\n' "${found:-$2}"
}

# --- token binding ---

# find_token: sets TOKEN_SECRET to the first token found in MOREH_SDA_TOKEN,
# ~/.moreh/token or /etc/moreh/token (a file's first line; blanks dropped)
# and TOKEN_FROM to where it was found; returns 1 when none holds one.
find_token() {
	local file secret=${MOREH_SDA_TOKEN:-}
	TOKEN_FROM=MOREH_SDA_TOKEN
	for file in ${HOME:+"$HOME/.moreh/token"} /etc/moreh/token; do
		[[ -n ${secret//[[:space:]]/} ]] && break
		secret=
		TOKEN_FROM=$file
		[[ -f $file && -r $file ]] && IFS= read -r secret <"$file"
	done
	TOKEN_SECRET=${secret//[[:space:]]/}
	[[ -n $TOKEN_SECRET ]]
}

# not_bound: says how to bind to a token; exits 1.
not_bound() {
	printf 'moreh: you are not bound to a token. Put your token in ~/.moreh/token (or MOREH_SDA_TOKEN), or run: echo YOUR_TOKEN > %s/token\n' "$ROOT" >&2
	exit 1
}

# bind_token: when morehd knows the caller by no token (following the
# devices link fails with ENOKEY), binds the caller with the token that
# find_token finds, by writing it to $ROOT/token, once: the binding stays.
# Exits 1 saying how to bind when there is no token or morehd rejects it
# (EKEYREJECTED). The token itself is never printed.
bind_token() {
	[[ -e $ROOT/devices || ! -L $ROOT/devices ]] && return 0
	try ls -d -- "$ROOT/devices/" && return 0
	[[ $TRY_ERR == "Required key not available" ]] || return 0
	find_token || not_bound
	if ! try write_file "$ROOT/token" "$TOKEN_SECRET"; then
		if [[ $TRY_ERR == "Key was rejected by service" ]]; then
			printf 'moreh: the token from %s was rejected: it is unknown or revoked.\n' "$TOKEN_FROM" >&2
		else
			printf 'moreh: the token from %s could not be written to %s/token (%s).\n' "$TOKEN_FROM" "$ROOT" "$TRY_ERR" >&2
		fi
		not_bound
	fi
	TOKEN_SECRET=
}

# --- devices and models ---

# print_devices_table: the token's short Device | Name | Model table that
# morehd renders (devices.table), as the real moreh-smi prints it after
# device --add, --rm and --switch; nothing where the tree has none.
print_devices_table() {
	print_file "$ROOT/devices/../devices.table" || :
}

# current_id: the current device id, or nothing when the token has none.
current_id() {
	local id
	read_file id "$ROOT/current" || id=
	printf '%s' "${id//[[:space:]]/}"
}

# check_device ACTION ID [STATUS]: fails ACTION, exiting STATUS (default
# 1), unless device ID exists.
check_device() {
	[[ $2 =~ ^[0-9]+$ && -d $ROOT/devices/$2 ]] ||
		fail "$1" "Device $2 does not exist." "${3:-1}"
}

# load_models: from the models file ("<n>\t<name>\t<units>\t<MiB>", and
# "\tdefault" on one line), MODELS[n] is the name of menu number n,
# NMODELS their number and DEFAULT_MODEL what a token without devices shows.
load_models() {
	MODELS=()
	DEFAULT_MODEL=
	local n name mark
	while IFS=$'\t' read -r n name _ _ mark; do
		[[ $n =~ ^[0-9]+$ ]] || continue
		MODELS[n]=$name
		[[ $mark == default* ]] && DEFAULT_MODEL=$name
	done <"$ROOT/models"
	NMODELS=${#MODELS[@]}
}

# current_model: the current device's model, or the default model
# (load_models first).
current_model() {
	local id model=
	id=$(current_id)
	[[ -n $id ]] && { read_file model "$ROOT/devices/$id/model" || model=; }
	model=${model%$'\n'}
	printf '%s\n' "${model:-$DEFAULT_MODEL}"
}

# model_number N: sets SELECTED to the model of menu number N, if there is one.
model_number() {
	[[ $1 =~ ^[0-9]{1,4}$ && -n ${MODELS[10#$1]+set} ]] || return 1
	SELECTED=${MODELS[10#$1]}
}

# print_models CURRENT: the menu header and list, * after CURRENT.
print_models() {
	local n star
	printf 'Current KT AI Accelerator: %s\n\n' "$1"
	for n in "${!MODELS[@]}"; do
		star=
		[[ ${MODELS[n]} == "$1" ]] && star='*'
		printf '%s. %s%s\n' "$n" "${MODELS[n]}" "$star"
	done
}

# choose ACTION N: reads a selection from stdin until it is a number 1-N,
# prompting "Selection (1-N, q, Q): " each time; sets CHOICE. q or Q exits
# 0; end of input fails ACTION.
choose() {
	local reply
	while :; do
		printf 'Selection (1-%s, q, Q): ' "$2"
		if ! IFS= read -r reply && [[ -z $reply ]]; then
			printf '\n'
			fail "$1" "No selection was made."
		fi
		reply=${reply//[[:space:]]/}
		case $reply in
		q | Q) exit 0 ;;
		esac
		if [[ $reply =~ ^[0-9]{1,4}$ ]] && ((10#$reply >= 1 && 10#$reply <= $2)); then
			CHOICE=$((10#$reply))
			return
		fi
	done
}

# menu ACTION CURRENT: shows the menu, * after CURRENT, and reads a
# selection (choose) until it is a model number; sets SELECTED.
menu() {
	print_models "$2"
	printf '\n'
	while :; do
		choose "$1" "$NMODELS"
		model_number "$CHOICE" && return
	done
}

# model_arg ACTION ARG: sets SELECTED to the model that ARG names: a menu
# number is looked up here, a name is left for morehd to check.
# shellcheck disable=SC2034 # SELECTED is the shims' to read
model_arg() {
	if [[ $2 =~ ^[0-9]+$ ]]; then
		model_number "$2" || fail "$1" "There is no model number $2: choose 1-$NMODELS."
	elif [[ -z $2 || $2 == *"/"* ]]; then
		fail "$1" "Unknown model \"$2\": see moreh-smi device --list."
	else
		SELECTED=$2
	fi
}
