# bash completion for moreh-smi, moreh-switch-model and moreh-run.
#
# Load it with  source scripts/moreh-completion.bash  (e.g. from ~/.bashrc),
# or install it as .../bash-completion/completions/moreh-smi with links named
# moreh-switch-model and moreh-run (scripts/install.sh does), where the
# bash-completion package finds it. It needs nothing of that package.
#
# Device ids come from $MOREH_ROOT/devices (default /moreh), models from
# $MOREH_ROOT/models: only what you may read (your own token's devices).
# shellcheck shell=bash

# _moreh_reply WORDS CUR: COMPREPLY is the WORDS that start with CUR, each
# after _moreh_pre (the "--option=" of a word that = did not break).
_moreh_reply() {
	local word words=()
	COMPREPLY=()
	read -ra words -d '' <<<"$1"
	for word in "${words[@]}"; do
		[[ $word == "$2"* ]] && COMPREPLY+=("${_moreh_pre-}$word")
	done
	return 0
}

# _moreh_nospace: no space after the word (an option that takes =VALUE, or
# a list that goes on after a comma).
_moreh_nospace() {
	compopt -o nospace 2>/dev/null
	return 0
}

# _moreh_eq_nospace: no space after the one candidate left when it is an
# option that takes =VALUE.
_moreh_eq_nospace() {
	((${#COMPREPLY[@]} == 1)) && [[ ${COMPREPLY[0]} == *= ]] && _moreh_nospace
	return 0
}

# _moreh_ids: the ids of the caller's devices, one a line.
_moreh_ids() {
	local dir
	for dir in "${MOREH_ROOT:-/moreh}"/devices/*; do
		dir=${dir##*/}
		[[ $dir =~ ^[0-9]+$ ]] && printf '%s\n' "$dir"
	done
	return 0
}

# _moreh_models: the menu numbers and names of the models, from the models
# file, or the catalogue when the tree cannot be read.
_moreh_models() {
	local n name rest found=''
	if [[ -r ${MOREH_ROOT:-/moreh}/models ]]; then
		while IFS=$'\t' read -r n name rest; do
			[[ $n =~ ^[0-9]+$ && -n $name ]] || continue
			printf '%s\n%s\n' "$n" "$name"
			found=1
		done <"${MOREH_ROOT:-/moreh}/models"
	fi
	[[ -n $found ]] || printf '%s\n' 1 2 3 4 5 6 7 8 9 10 11 12 Small.64GB Medium.128GB \
		Large.256GB xLarge.512GB 2xLarge.1024GB 3xLarge.1536GB 4xLarge.2048GB \
		6xLarge.3072GB 8xLarge.4096GB 12xLarge.6144GB 24xLarge.12288GB 1.5xLarge.768GB
	return 0
}

# _moreh_fields CUR [FIELDS]: the --query-device fields (or FIELDS), CUR
# being a comma-separated list whose last item is completed; fields already
# in it are left out.
_moreh_fields() {
	local head='' last=$1 field list=''
	if [[ $1 == *,* ]]; then
		head=${1%,*},
		last=${1##*,}
	fi
	for field in ${2:-id model memory.used memory.total utilization processes}; do
		[[ ,$head == *,"$field",* ]] || list+=" $head$field"
	done
	_moreh_reply "$list" "$head$last"
	_moreh_nospace
}

# _moreh_value CMD: when the word under the cursor is the value of an
# option (--opt VALUE, --opt=VALUE), sets _moreh_opt to the option and
# _moreh_cur to the value typed so far. COMP_WORDBREAKS usually holds =, so
# that --opt=VALUE comes as three words: --opt, = and VALUE.
_moreh_value() {
	local cword=$COMP_CWORD cur=${COMP_WORDS[COMP_CWORD]} prev=''
	((cword > 0)) && prev=${COMP_WORDS[cword - 1]}
	_moreh_opt='' _moreh_cur=$cur _moreh_pre=''
	if [[ $cur == = ]]; then
		_moreh_opt=$prev _moreh_cur=''
	elif [[ $prev == = ]] && ((cword >= 2)); then
		_moreh_opt=${COMP_WORDS[cword - 2]}
	elif [[ $cur == -*=* ]]; then
		_moreh_opt=${cur%%=*} _moreh_cur=${cur#*=} _moreh_pre=${cur%%=*}=
	else
		_moreh_opt=$prev
	fi
}

_moreh_smi() {
	local cword=$COMP_CWORD first=${COMP_WORDS[1]:-} cmd=''
	local opts="-i --idx -r --reset -p --pool -t --token -v --version -s --server-version -h --help
		-l --loop= -lms --loop-ms= --json --query-device= --query-gpu= --format= --help-query-gpu
		--help-query-device --add --rm --switch --list"
	local watch="-i --idx -l --loop= -lms --loop-ms= --json --query-device= --query-gpu= --format="
	local _moreh_opt _moreh_cur _moreh_pre
	COMPREPLY=()
	_moreh_value
	case $_moreh_opt in
	-i | --idx | -r | --reset)
		_moreh_reply "$(_moreh_ids)" "$_moreh_cur"
		return 0
		;;
	-l | --loop | -lms | --loop-ms) return 0 ;; # a number of seconds, of milliseconds
	--query-device)
		_moreh_fields "$_moreh_cur"
		return 0
		;;
	--query-gpu)
		_moreh_fields "$_moreh_cur" "index name uuid memory.total memory.used memory.free utilization.gpu device node"
		return 0
		;;
	--format)
		_moreh_reply "csv csv,noheader csv,nounits csv,noheader,nounits" "$_moreh_cur"
		return 0
		;;
	esac
	_moreh_pre=''
	local cur=${COMP_WORDS[COMP_CWORD]}
	if ((cword == 1)); then
		if [[ $cur == -* ]]; then
			_moreh_reply "$opts" "$cur"
		else
			_moreh_reply "device add rm switch list" "$cur"
		fi
		_moreh_eq_nospace
		return 0
	fi
	# The device command: "device CMD ARG" or "CMD ARG" alone.
	if [[ $first == device ]]; then
		if ((cword == 2)); then
			if [[ $cur == -* ]]; then
				_moreh_reply "--add --rm --switch --list" "$cur"
			else
				_moreh_reply "add rm switch list" "$cur"
			fi
			return 0
		fi
		((cword == 3)) && cmd=${COMP_WORDS[2]}
	elif ((cword == 2)); then
		cmd=$first
	fi
	case $cmd in
	add | --add) _moreh_reply "$(_moreh_models)" "$cur" ;;
	rm | --rm) _moreh_reply "$(_moreh_ids) --all" "$cur" ;;
	switch | --switch) _moreh_reply "$(_moreh_ids)" "$cur" ;;
	'')
		# The watching forms go together: -i ID -l 2, --json -i ID, ...
		case $first in
		-i | --idx | -i?* | --idx=* | -l* | --loop* | --json | --query-device* | --query-gpu* | --format*)
			[[ $cur == -* ]] && _moreh_reply "$watch" "$cur"
			_moreh_eq_nospace
			;;
		esac
		;;
	esac
	return 0
}

_moreh_switch_model() {
	local _moreh_opt _moreh_cur _moreh_pre
	COMPREPLY=()
	_moreh_value
	case $_moreh_opt in
	-M | --model)
		_moreh_reply "$(_moreh_models)" "$_moreh_cur"
		return 0
		;;
	esac
	if ((COMP_CWORD == 1)); then
		_moreh_pre=''
		_moreh_reply "-M --model -h --help" "${COMP_WORDS[1]}"
	fi
	return 0
}

_moreh_run() {
	local cword=$COMP_CWORD cur=${COMP_WORDS[COMP_CWORD]} i=1 word dashdash=''
	local _moreh_opt _moreh_cur _moreh_pre
	COMPREPLY=()
	# Skip moreh-run's own options: the command is the first other word.
	while ((i < cword)); do
		word=${COMP_WORDS[i]}
		case $word in
		--)
			dashdash=1
			((i += 1))
			break
			;;
		-i | --idx)
			if [[ ${COMP_WORDS[i + 1]:-} == = ]]; then
				((i += 3))
			else
				((i += 2))
			fi
			;;
		-*) ((i += 1)) ;;
		*) break ;;
		esac
	done
	if ((i > cword)); then
		# The value of -i: a device id.
		_moreh_value
		_moreh_reply "$(_moreh_ids)" "$_moreh_cur"
		return 0
	fi
	if ((i < cword)); then
		# The command's own arguments: its completion when bash-completion
		# is loaded, else file names.
		if declare -F _command_offset >/dev/null; then
			_command_offset "$i"
		else
			compopt -o filenames 2>/dev/null
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		fi
		return 0
	fi
	if [[ -z $dashdash && $cur == -* ]]; then
		_moreh_reply "-i --idx -h --help --" "$cur"
		return 0
	fi
	# The command: a program on PATH, or a file named by its path.
	if [[ $cur == */* ]]; then
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
	else
		mapfile -t COMPREPLY < <(compgen -c -- "$cur" | sort -u)
	fi
	return 0
}

complete -F _moreh_smi moreh-smi
complete -F _moreh_switch_model moreh-switch-model
complete -F _moreh_run moreh-run
