# Sourced by srcinfo-driver.sh, at its top level, when it has no snapshot
# to source instead: makepkg's libraries, and the driver's rewrites of
# them. Asked for a snapshot, it also writes the state it sets up (see
# _pkgcell_snap_write) to OUTDIR/snapshot, before any job runs.

if [[ -n $_pkgcell_snapshot ]]; then
	# $1: name of the files in root's OUTDIR to write `declare -p` to,
	# `shopt -p` and `set +o` to $1-opts, and to $1-other the state a
	# snapshot does not hold (traps, aliases, umask, directory, builtins).
	# To files, not variables: no fork of this shell, and no copy of the
	# first state in the second.
	_pkgcell_snap_take() {
		declare -p >"$_pkgcell_out/$1" && { shopt -p && set +o; } >"$_pkgcell_out/$1-opts" &&
			{ trap -p && alias -p && umask && pwd && enable -a; } >"$_pkgcell_out/$1-other"
	}
	# $1: the file to write. What this file changed since .snap-before was
	# taken, as commands to source at the top level: shell options, every
	# function, and the variables that are new or changed (bash's dynamic
	# ones and the driver's arguments left out). Fails, and writes nothing
	# of use, when some `declare -p` line is not one whole variable (values
	# printed over several lines, as bash before 5.2 does), or loading
	# changed some other state.
	_pkgcell_snap_write() {
		# Taken before this function has locals, which it would list.
		_pkgcell_snap_take .snap-after || return 1
		local _pkgcell_snap_l _pkgcell_snap_n
		local -a _pkgcell_snap_b _pkgcell_snap_b_opts _pkgcell_snap_a _pkgcell_snap_a_opts _pkgcell_snap_f
		local -a _pkgcell_snap_opts=() _pkgcell_snap_vars=() _pkgcell_snap_fn=() _pkgcell_snap_fattr=()
		local -A _pkgcell_snap_old=() _pkgcell_snap_oldn=() _pkgcell_snap_was=()
		mapfile -d '' _pkgcell_snap_b <"$_pkgcell_out/.snap-before-other" && mapfile -d '' _pkgcell_snap_a <"$_pkgcell_out/.snap-after-other" &&
			[[ ${_pkgcell_snap_b[*]} == "${_pkgcell_snap_a[*]}" ]] || return 1
		mapfile -t _pkgcell_snap_b <"$_pkgcell_out/.snap-before" && mapfile -t _pkgcell_snap_b_opts <"$_pkgcell_out/.snap-before-opts" &&
			mapfile -t _pkgcell_snap_a <"$_pkgcell_out/.snap-after" && mapfile -t _pkgcell_snap_a_opts <"$_pkgcell_out/.snap-after-opts" || return 1
		for _pkgcell_snap_l in "${_pkgcell_snap_b_opts[@]}"; do _pkgcell_snap_old[$_pkgcell_snap_l]=1; done
		for _pkgcell_snap_l in "${_pkgcell_snap_a_opts[@]}"; do
			[[ -v _pkgcell_snap_old[$_pkgcell_snap_l] ]] || _pkgcell_snap_opts+=("$_pkgcell_snap_l || return 1")
		done
		_pkgcell_snap_old=()
		for _pkgcell_snap_l in "${_pkgcell_snap_b[@]}"; do
			_pkgcell_snap_var_name || return 1
			_pkgcell_snap_old[$_pkgcell_snap_l]=1
			_pkgcell_snap_oldn[$_pkgcell_snap_n]=1
			_pkgcell_snap_was[$_pkgcell_snap_n]=1
		done
		for _pkgcell_snap_l in "${_pkgcell_snap_a[@]}"; do
			_pkgcell_snap_var_name || return 1
			unset "_pkgcell_snap_oldn[$_pkgcell_snap_n]"
			_pkgcell_snap_own && continue
			[[ -v _pkgcell_snap_old[$_pkgcell_snap_l] ]] && continue
			# Changed: unset first, so that no attribute of the old one stays.
			[[ -v _pkgcell_snap_was[$_pkgcell_snap_n] ]] && _pkgcell_snap_vars+=("unset -v $_pkgcell_snap_n || return 1")
			_pkgcell_snap_vars+=("$_pkgcell_snap_l || return 1")
		done
		# Gone since.
		for _pkgcell_snap_n in "${!_pkgcell_snap_oldn[@]}"; do
			_pkgcell_snap_own || _pkgcell_snap_vars+=("unset -v $_pkgcell_snap_n || return 1")
		done
		# Functions, with their attributes (`declare -f` prints none).
		declare -F >"$_pkgcell_out/.snap-functions" && mapfile -t _pkgcell_snap_f <"$_pkgcell_out/.snap-functions" || return 1
		# Functions with attributes are always defined whole.
		local -A _pkgcell_snap_hot=([_pkgcell_cold]=1)
		for _pkgcell_snap_l in "${_pkgcell_snap_f[@]}"; do
			_pkgcell_snap_n=${_pkgcell_snap_l##* }
			[[ $_pkgcell_snap_n != _pkgcell_snap_* ]] || continue
			_pkgcell_snap_fn+=("$_pkgcell_snap_n")
			if [[ $_pkgcell_snap_l != "declare -f $_pkgcell_snap_n" ]]; then
				_pkgcell_snap_fattr+=("$_pkgcell_snap_l || return 1")
				_pkgcell_snap_hot[$_pkgcell_snap_n]=1
			fi
		done
		_pkgcell_snap_hotset || return 1
		local -a _pkgcell_snap_hotfn=() _pkgcell_snap_coldfn=()
		for _pkgcell_snap_n in "${_pkgcell_snap_fn[@]}"; do
			if [[ -v _pkgcell_snap_hot[$_pkgcell_snap_n] || $_pkgcell_snap_n != [a-zA-Z_]* || $_pkgcell_snap_n == *[!a-zA-Z0-9_]* ]]; then
				_pkgcell_snap_hotfn+=("$_pkgcell_snap_n")
			else
				_pkgcell_snap_coldfn+=("$_pkgcell_snap_n")
			fi
		done
		# The cold functions' text, one after the other, each followed by
		# a line that tells _pkgcell_cold it was read whole; the stub of
		# each names its place (first line, number of lines) in that text.
		local -a _pkgcell_snap_cold=() _pkgcell_snap_stubs=() _pkgcell_snap_fl=()
		local _pkgcell_snap_at=0
		for _pkgcell_snap_n in "${_pkgcell_snap_coldfn[@]}"; do
			declare -f "$_pkgcell_snap_n" >"$_pkgcell_out/.snap-cold" && mapfile -t _pkgcell_snap_fl <"$_pkgcell_out/.snap-cold" || return 1
			_pkgcell_snap_fl+=('_pkgcell_cold_done=1')
			_pkgcell_snap_cold+=("${_pkgcell_snap_fl[@]}")
			_pkgcell_snap_stubs+=("$_pkgcell_snap_n () " "{ " "    _pkgcell_cold $_pkgcell_snap_n $_pkgcell_snap_at ${#_pkgcell_snap_fl[@]} || return;" "    $_pkgcell_snap_n \"\$@\"" "}")
			((_pkgcell_snap_at += ${#_pkgcell_snap_fl[@]}))
		done
		# Options first: they may change how the rest is parsed. Then the
		# hot functions, the stubs, the rest of the state, the number of
		# lines up to the `return 0` that ends the sourcing, and the line
		# that tells the driver (and pkgcell) that it all loaded. The cold
		# text after `return 0` costs no parsing: the driver reads it into
		# an array, and a stub parses only its own function, on its first
		# call. The last line tells pkgcell the file is whole.
		local -a _pkgcell_snap_head
		{
			printf '%s\n' "${_pkgcell_snap_opts[@]}" &&
				declare -f "${_pkgcell_snap_hotfn[@]}" &&
				printf '%s\n' "${_pkgcell_snap_stubs[@]}" "${_pkgcell_snap_fattr[@]}" "${_pkgcell_snap_vars[@]}"
		} >"$1" && mapfile -t _pkgcell_snap_head <"$1" || { : >"$1"; return 1; }
		{
			printf '%s\n' "${_pkgcell_snap_head[@]}" &&
				printf '_pkgcell_cold_skip=%s\n_pkgcell_snapshot_loaded=1\nreturn 0\n' "$((${#_pkgcell_snap_head[@]} + 3))" &&
				printf '%s\n' "${_pkgcell_snap_cold[@]}" '# end of the pkgcell srcinfo snapshot'
		} >"$1" || { : >"$1"; return 1; }
	}
	# Sets _pkgcell_snap_hot[NAME] for every function a job may reach:
	# those the driver names, and, closed over, every function named in a
	# hot function's text or in the value of a variable named there
	# (makepkg calls its lint functions through arrays of their names). A
	# word counts when it is a function's name, wherever it stands: more
	# than is called, never less of what the text names. A function called
	# by a name built at run time stays cold and still works: its stub
	# loads it on its first call.
	_pkgcell_snap_hotset() {
		local -A _pkgcell_snap_isfn=() _pkgcell_snap_vseen=()
		local -a _pkgcell_snap_todo=() _pkgcell_snap_t=()
		local _pkgcell_snap_w
		for _pkgcell_snap_w in "${_pkgcell_snap_fn[@]}"; do _pkgcell_snap_isfn[$_pkgcell_snap_w]=1; done
		_pkgcell_snap_words "$_pkgcell_snap_driver" || return 1
		_pkgcell_snap_todo=("${_pkgcell_snap_t[@]}")
		while ((${#_pkgcell_snap_todo[@]})); do
			_pkgcell_snap_w=${_pkgcell_snap_todo[-1]}
			unset '_pkgcell_snap_todo[-1]'
			if [[ -v _pkgcell_snap_isfn[$_pkgcell_snap_w] ]]; then
				[[ -v _pkgcell_snap_hot[$_pkgcell_snap_w] ]] && continue
				_pkgcell_snap_hot[$_pkgcell_snap_w]=1
				declare -f "$_pkgcell_snap_w" >"$_pkgcell_out/.snap-words" || return 1
			elif [[ $_pkgcell_snap_w != [0-9]* && $_pkgcell_snap_w != _pkgcell_snap* && ! -v _pkgcell_snap_vseen[$_pkgcell_snap_w] ]]; then
				_pkgcell_snap_vseen[$_pkgcell_snap_w]=1
				declare -p "$_pkgcell_snap_w" >"$_pkgcell_out/.snap-words" 2>/dev/null || continue
			else
				continue
			fi
			_pkgcell_snap_words "$_pkgcell_out/.snap-words" || return 1
			_pkgcell_snap_todo+=("${_pkgcell_snap_t[@]}")
		done
	}
	# Sets _pkgcell_snap_t to the words (runs of letters, digits and _)
	# of the file $1.
	_pkgcell_snap_words() {
		local _pkgcell_snap_s=
		[[ -f $1 && -r $1 ]] || return 1
		IFS= read -r -d '' _pkgcell_snap_s <"$1"
		_pkgcell_snap_s=${_pkgcell_snap_s//[!a-zA-Z0-9_]/ }
		IFS=' ' read -r -a _pkgcell_snap_t <<<"$_pkgcell_snap_s"
	}
	# Sets _pkgcell_snap_n to the name of the variable of the `declare -p`
	# line _pkgcell_snap_l; fails on any other line.
	_pkgcell_snap_var_name() {
		[[ $_pkgcell_snap_l == 'declare -'* ]] || return 1
		_pkgcell_snap_n=${_pkgcell_snap_l#declare -* }
		_pkgcell_snap_n=${_pkgcell_snap_n%%=*}
		[[ $_pkgcell_snap_n == [a-zA-Z_]* && $_pkgcell_snap_n != *[!a-zA-Z0-9_]* ]]
	}
	# Whether the variable _pkgcell_snap_n is not the libraries': bash's
	# dynamic ones, the driver's arguments, these functions' own.
	_pkgcell_snap_own() {
		case $_pkgcell_snap_n in
		BASH* | FUNCNAME | PIPESTATUS | RANDOM | SRANDOM | SECONDS | LINENO | EPOCHREALTIME | EPOCHSECONDS | _ | \
			HISTCMD | GROUPS | DIRSTACK | PPID | UID | EUID | SHELLOPTS | _pkgcell_snap*) ;;
		_pkgcell_list | _pkgcell_out | _pkgcell_workers | _pkgcell_timeout | _pkgcell_first_id | _pkgcell_dropids) ;;
		*) return 1 ;;
		esac
	}
	# The driver, beside this file: the roots of _pkgcell_snap_hotset.
	_pkgcell_snap_driver=${BASH_SOURCE[0]%/*}/srcinfo-driver.sh
	_pkgcell_snap_take .snap-before
fi

# Defines the function $1 that a snapshot left out, for its stub (see
# _pkgcell_snap_write): lines $2 to $2 + $3 of the cold text, which the
# driver read into _pkgcell_cold_lines before any job started. Only $1 is
# defined: a function of that text that the PKGBUILD defined since stays
# the PKGBUILD's.
_pkgcell_cold() {
	local IFS= _pkgcell_cold_done=
	eval "${_pkgcell_cold_lines[*]:$2:$3}"
	[[ -n $_pkgcell_cold_done ]] && return
	printf 'pkgcell: the parse snapshot lost the text of %s\n' "$1" >&2
	return 127
}

for lib in "$LIBRARY"/*.sh; do
	source "$lib"
done
unset lib
# Defined in /usr/bin/makepkg itself, not in its libraries.
source_buildfile() {
	source_safe "$@"
}
# $1: name of the variable to set; the rest: function names. Sets it to
# what `declare -f NAMES` prints, through a file in root's OUTDIR rather
# than a command substitution: a fork of this big shell costs milliseconds,
# and the rewrites below read several functions.
_pkgcell_declared() {
	local -n _pkgcell_into=$1
	local -a _pkgcell_text
	shift
	declare -f "$@" >"$_pkgcell_out/.defs" 2>/dev/null
	mapfile -d '' _pkgcell_text <"$_pkgcell_out/.defs"
	_pkgcell_into=${_pkgcell_text[0]-}
	_pkgcell_into=${_pkgcell_into%$'\n'}
}

# Fork-free versions of makepkg's helpers that look for variables set inside
# functions (util/pkgbuild.sh), with the same results. makepkg greps the
# output of `declare -f` through a pipeline and a process substitution for
# every (variable, architecture, package function) it checks: hundreds of
# forks per PKGBUILD, most of the cost of --printsrcinfo. Here each
# function's assignment lines are read once, with builtins only, and matched
# with [[ =~ ]] (POSIX extended regexps, as grep -E).
declare -A _pkgcell_fidx=()
_pkgcell_fn_n=0
_pkgcell_assign_re='^[[:space:]]* ([[:alnum:]_]+)\+?=(.)'

# $1: function name. Sets _pkgcell_fn to the name of an array holding the
# assignment-shaped lines of `declare -f $1 || declare -f package` (the
# only lines any caller's pattern can match), and ${_pkgcell_fn}_names to
# an associative array of the variables they set.
_pkgcell_fn_array() {
	# Kept small: bash copies a function's whole body on every call.
	[[ -n ${_pkgcell_fidx[$1]-} ]] || _pkgcell_fn_read "$1"
	_pkgcell_fn=_pkgcell_f_${_pkgcell_fidx[$1]}
}
_pkgcell_fn_read() {
	local i line which ws
	i=$((_pkgcell_fn_n++))
	_pkgcell_fidx[$1]=$i
	# Per assignment line: the line, its name, a (array) or s (string), and
	# the line without its leading whitespace (as makepkg evaluates it).
	declare -ga "_pkgcell_f_$i=()" "_pkgcell_f_${i}_n=()" "_pkgcell_f_${i}_k=()" "_pkgcell_f_${i}_d=()"
	declare -gA "_pkgcell_f_${i}_names=()"
	local -n _pkgcell_new=_pkgcell_f_$i _pkgcell_newnames=_pkgcell_f_${i}_names
	local -n _pkgcell_newn=_pkgcell_f_${i}_n _pkgcell_newk=_pkgcell_f_${i}_k _pkgcell_newd=_pkgcell_f_${i}_d
	# `declare -f "$1" || declare -f package`, with a write error (a
	# full scratch file system) failing the job rather than silently
	# dropping the function's variables.
	which=
	if declare -F "$1" >/dev/null; then
		which=$1
	elif declare -F package >/dev/null; then
		which=package
	fi
	[[ -n $which ]] || return 0
	declare -f "$which" >"$_pkgcell_fn_tmp" || exit 95
	while IFS= read -r line || [[ -n $line ]]; do
		if [[ $line =~ $_pkgcell_assign_re ]]; then
			_pkgcell_new+=("$line")
			_pkgcell_newn+=("${BASH_REMATCH[1]}")
			ws=${line%%[![:space:]]*}
			_pkgcell_newd+=("${line#"$ws"}")
			# names: 1 if assigned a string somewhere, 2 an array.
			if [[ ${BASH_REMATCH[2]} == '(' ]]; then
				_pkgcell_newk+=(a)
				_pkgcell_newnames[${BASH_REMATCH[1]}]=$((${_pkgcell_newnames[${BASH_REMATCH[1]}]-0} | 2))
			else
				_pkgcell_newk+=(s)
				_pkgcell_newnames[${BASH_REMATCH[1]}]=$((${_pkgcell_newnames[${BASH_REMATCH[1]}]-0} | 1))
			fi
		fi
	done <"$_pkgcell_fn_tmp"
}

extract_function_variable() {
	# $1: function name, $2: variable name, $3: multivalued, $4: name of output var
	# Most calls ask for a variable the function never sets: answered here,
	# in a small body; the rest as makepkg's, in _pkgcell_efv.
	_pkgcell_fn_array "$1"
	local -n _pkgcell_names=${_pkgcell_fn}_names
	[[ -v _pkgcell_names[$2] ]] || return 1
	_pkgcell_efv "$@"
}
_pkgcell_efv() {
	# makepkg's locals, as its assignment lines may read them when evaluated.
	local funcname=$1 attr=$2 isarray=$3 outputvar=$4 attr_regex= decl= r=1 shellopts
	local _pkgcell_want=s _pkgcell_j
	if (( isarray )); then
		printf -v attr_regex '^[[:space:]]* %s\+?=\(' "$2"
		_pkgcell_want=a
	else
		printf -v attr_regex '^[[:space:]]* %s\+?=[^(]' "$2"
	fi
	if shopt -q extglob; then shellopts='shopt -s extglob'; else shellopts='shopt -u extglob'; fi
	shopt -s extglob
	# The lines makepkg's grep -E "$attr_regex" finds: this name, this shape.
	local -n _pkgcell_ln=${_pkgcell_fn}_n _pkgcell_lk=${_pkgcell_fn}_k _pkgcell_ld=${_pkgcell_fn}_d
	for _pkgcell_j in "${!_pkgcell_ln[@]}"; do
		[[ ${_pkgcell_ln[_pkgcell_j]} == "$attr" && ${_pkgcell_lk[_pkgcell_j]} == "$_pkgcell_want" ]] || continue
		decl=${_pkgcell_ld[_pkgcell_j]}
		eval "${decl/#$attr/$outputvar}"
		r=0
	done
	# makepkg's `while read` loop ends with an empty REPLY.
	REPLY=
	eval "$shellopts"
	return $r
}

exists_function_variable() {
	# $1: function name, $2: variable name
	# Any assignment of $2 with a value, as makepkg's string-or-array test.
	_pkgcell_fn_array "$1"
	local -n _pkgcell_names=${_pkgcell_fn}_names
	[[ -v _pkgcell_names[$2] ]]
}

# Fork-free versions of makepkg's other per-PKGBUILD forks, made by
# rewriting makepkg's own functions (as `declare -f` prints them) rather
# than copying them, so that whatever else a makepkg version changes in
# them is kept; a version without these exact texts keeps its own code.
# - `local shellopts=$(shopt -p extglob)`: a command substitution (a fork
#   of this big shell) in source_safe, six lint functions and, in makepkg
#   7, srcinfo_write_attr, once per attribute written. The replacement sets
#   the same local to the same text from `shopt -q`.
# - makepkg 7's duplicate check of arch: `$(printf "%s\n" ${arch[@]} |
#   sort -u | wc -l)`, a fork and two execs, counted with an associative
#   array when every word is one lint_arch accepts anyway.
_pkgcell_shopt_p_extglob() {
	# $1: name of the variable to set to what `shopt -p extglob` prints
	if shopt -q extglob; then
		printf -v "$1" %s 'shopt -s extglob'
	else
		printf -v "$1" %s 'shopt -u extglob'
	fi
}
_pkgcell_uniq_lines() {
	# $1: name of the variable to set; the rest: words. Sets it to what
	# `printf "%s\n" WORDS | sort -u | wc -l` prints. Words of other
	# characters than [A-Za-z0-9_] (where sort's locale or a newline could
	# matter) go through that pipeline.
	local -n _pkgcell_count=$1
	shift
	local _pkgcell_w
	local -A _pkgcell_seen=()
	# printf prints one empty line for no words.
	(($#)) || { _pkgcell_count=1; return 0; }
	for _pkgcell_w; do
		if [[ -z $_pkgcell_w || $_pkgcell_w == *[!A-Za-z0-9_]* ]]; then
			_pkgcell_count=$(printf "%s\n" "$@" | sort -u | wc -l)
			return 0
		fi
		_pkgcell_seen[$_pkgcell_w]=1
	done
	_pkgcell_count=${#_pkgcell_seen[@]}
}
# - lint_arch_specific and lint_package_function_variable ask, for every
#   (package, architecture, schema variable), whether the variable is in
#   another schema list, with in_array: a loop in bash over a dozen words,
#   half of all the statements a PKGBUILD's lint runs. The lists are
#   makepkg's readonly constants, so a set made once answers the same;
#   with a PKGBUILD's own IFS (which splits the unquoted list differently)
#   in_array answers, as in makepkg.
declare -A _pkgcell_schema_arch=() _pkgcell_schema_overrides=()
for _pkgcell_w in "${pkgbuild_schema_arch_arrays[@]}"; do _pkgcell_schema_arch[$_pkgcell_w]=1; done
for _pkgcell_w in "${pkgbuild_schema_package_overrides[@]}"; do _pkgcell_schema_overrides[$_pkgcell_w]=1; done
unset _pkgcell_w
_pkgcell_in_schema() {
	# $1: name of the set, $2: needle, the rest: the list as makepkg expands it
	if [[ ${IFS-unset} == $' \t\n' && -n $2 ]]; then
		local -n _pkgcell_set=$1
		[[ -v _pkgcell_set[$2] ]]
	else
		in_array "${@:2}"
	fi
}
# - lint_arch_specific, lint_package_function_variable and lint_variable
#   check, for every package and (architecture, schema variable), whether
#   the package function sets that variable: hundreds of lookups per
#   package. Each can only complain about a name the function assigns; a
#   package none of whose names the lint could complain about is skipped
#   (the rest of the lint runs as makepkg wrote it):
#   pfv   lint_package_function_variable: a schema variable that is not a
#         package override, or one with a suffix;
#   arch  lint_arch_specific: a schema variable with a suffix;
#   var   lint_variable: an array assigned a string, a string assigned an
#         array, or a schema variable with a suffix.
declare -A _pkgcell_schema_all=() _pkgcell_schema_str=() _pkgcell_fn_clean_cache=()
for _pkgcell_w in "${pkgbuild_schema_arrays[@]}" "${pkgbuild_schema_strings[@]}" "${pkgbuild_schema_arch_arrays[@]}"; do
	_pkgcell_schema_all[$_pkgcell_w]=1
done
for _pkgcell_w in "${pkgbuild_schema_strings[@]}"; do _pkgcell_schema_str[$_pkgcell_w]=1; done
unset _pkgcell_w
_pkgcell_fn_clean() {
	# $1: pfv, arch or var; $2: function name (read as _pkgcell_fn_array
	# reads it, with makepkg's fallback to package). Whether that lint has
	# nothing to say about it. A PKGBUILD's own IFS splits makepkg's
	# unquoted lists otherwise: no.
	[[ ${IFS-unset} == $' \t\n' ]] || return 1
	local c=${_pkgcell_fn_clean_cache[$1 $2]-} n p
	if [[ -z $c ]]; then
		_pkgcell_fn_array "$2"
		local -n _pkgcell_names=${_pkgcell_fn}_names
		c=1
		for n in "${!_pkgcell_names[@]}"; do
			p=$n
			while [[ $p == *_* ]]; do
				p=${p%_*}
				[[ -v _pkgcell_schema_all[$p] ]] && c=0
			done
			[[ -v _pkgcell_schema_all[$n] ]] || continue
			case $1 in
			pfv) [[ -v _pkgcell_schema_overrides[$n] ]] || c=0 ;;
			var)
				if [[ -v _pkgcell_schema_str[$n] ]]; then
					((_pkgcell_names[$n] & 2)) && c=0
				else
					((_pkgcell_names[$n] & 1)) && c=0
				fi
				;;
			esac
		done
		_pkgcell_fn_clean_cache[$1 $2]=$c
	fi
	((c))
}
# - get_pkgbuild_all_split_attributes, which lint_array calls for every
#   schema array and the depends-like lints for theirs, collects the global,
#   every global _ARCH variant and every package function's copies, each
#   through two or three element-by-element array copies. When no package
#   function assigns the name or a name_SUFFIX (most PKGBUILDs, most
#   names), the answer is the globals' elements in that order: collected
#   here in _pkgcell_all, then copied out as makepkg's does, and its loop
#   variables (global where a makepkg version does not make them local)
#   left at the last arch and pkgname.
_pkgcell_split_globals() {
	# $1: attribute name. Fails when makepkg's own path must answer.
	# Globs, not [[ =~ ]]: a regexp is compiled anew at every test.
	[[ ${IFS-unset} == $' \t\n' && -n $1 && $1 != [0-9]* && $1 != *[!A-Za-z0-9_]* ]] || return 1
	[[ -n $_pkgcell_sg ]] || _pkgcell_sg_prepare
	[[ $_pkgcell_sg == ok && ! -v _pkgcell_sg_taken[$1] ]] || return 1
	local _pkgcell_a _pkgcell_v=$1
	[[ ${!_pkgcell_v@a} != *A* ]] || return 1
	for _pkgcell_a in "${arch[@]}"; do
		_pkgcell_v=$1_$_pkgcell_a
		[[ ${!_pkgcell_v@a} != *A* ]] || return 1
	done
	eval "_pkgcell_all=(\"\${$1[@]}\")"
	for _pkgcell_a in "${arch[@]}"; do
		eval "_pkgcell_all+=(\"\${$1_$_pkgcell_a[@]}\")"
	done
}
# Once per PKGBUILD (its arch and pkgname are set by then): whether its
# arch values make plain names and neither list is associative, and every
# name some package function assigns, with each of its prefixes before an
# underscore (a name X_SUFFIX takes X from the fast path).
_pkgcell_sg_prepare() {
	local p n
	declare -gA _pkgcell_sg_taken=()
	_pkgcell_sg=no
	[[ ${arch@a} != *A* && ${pkgname@a} != *A* ]] || return 0
	for p in "${arch[@]}"; do
		[[ $p != *[!A-Za-z0-9_]* ]] || return 0
	done
	for p in "${pkgname[@]}"; do
		_pkgcell_fn_array "package_$p"
		local -n _pkgcell_names=${_pkgcell_fn}_names
		for n in "${!_pkgcell_names[@]}"; do
			_pkgcell_sg_taken[$n]=1
			while [[ $n == *_* ]]; do
				n=${n%_*}
				[[ -n $n ]] && _pkgcell_sg_taken[$n]=1
			done
		done
	done
	_pkgcell_sg=ok
}
_pkgcell_declared _pkgcell_defs source_safe srcinfo_write_attr validate_arch_entries "${lint_pkgbuild_functions[@]}"
_pkgcell_defs=${_pkgcell_defs//'local shellopts=$(shopt -p extglob)'/'local shellopts; _pkgcell_shopt_p_extglob shellopts'}
_pkgcell_defs=${_pkgcell_defs//'if (( ${#arch[@]} != $(printf "%s\n" ${arch[@]} | sort -u | wc -l) )); then'/'local _pkgcell_n; _pkgcell_uniq_lines _pkgcell_n ${arch[@]}; if (( ${#arch[@]} != _pkgcell_n )); then'}
_pkgcell_defs=${_pkgcell_defs//'in_array "$i" ${pkgbuild_schema_arch_arrays[@]}'/'_pkgcell_in_schema _pkgcell_schema_arch "$i" ${pkgbuild_schema_arch_arrays[@]}'}
_pkgcell_defs=${_pkgcell_defs//'in_array "$i" ${pkgbuild_schema_package_overrides[@]}'/'_pkgcell_in_schema _pkgcell_schema_overrides "$i" ${pkgbuild_schema_package_overrides[@]}'}
eval "$_pkgcell_defs"
for _pkgcell_w in lint_package_function_variable:pfv lint_arch_specific:arch lint_variable:var; do
	_pkgcell_declared _pkgcell_defs "${_pkgcell_w%:*}"
	_pkgcell_defs=${_pkgcell_defs//$'for pkg in ${pkgname[@]};\n    do\n'/$'for pkg in ${pkgname[@]};\n    do\n        _pkgcell_fn_clean '"${_pkgcell_w#*:}"$' "package_$pkg" && continue;\n'}
	eval "$_pkgcell_defs"
done
unset _pkgcell_defs _pkgcell_w
# get_pkgbuild_all_split_attributes as makepkg 6 and 7 write it, answered
# from the globals first when it can be; another text is left as it is.
_pkgcell_declared _pkgcell_defs get_pkgbuild_all_split_attributes
case $_pkgcell_defs in
$'get_pkgbuild_all_split_attributes () \n{ \n    local attrname=$1 outputvar=$2 all_list list;\n'*|\
$'get_pkgbuild_all_split_attributes () \n{ \n    local attrname=$1 outputvar=$2 all_list list name a;\n'*)
	_pkgcell_defs=${_pkgcell_defs/$'all_list list;\n'/$'all_list list;\n    if _pkgcell_split_globals "$attrname"; then\n        (( ${#arch[@]} )) && a=${arch[@]: -1};\n        (( ${#pkgname[@]} )) && name=${pkgname[@]: -1};\n        (( ${#_pkgcell_all[@]} )) || return 1;\n        array_build "$outputvar" _pkgcell_all;\n        return;\n    fi\n'}
	_pkgcell_defs=${_pkgcell_defs/$'all_list list name a;\n'/$'all_list list name a;\n    if _pkgcell_split_globals "$attrname"; then\n        (( ${#arch[@]} )) && a=${arch[@]: -1};\n        (( ${#pkgname[@]} )) && name=${pkgname[@]: -1};\n        (( ${#_pkgcell_all[@]} )) || return 1;\n        array_build "$outputvar" _pkgcell_all;\n        return;\n    fi\n'}
	eval "$_pkgcell_defs"
	;;
esac
unset _pkgcell_defs

# array_build copies an array element by element through a generated
# printf per element. For an indexed array with no gaps into a plain one
# (which is all makepkg's callers pass) one assignment of the whole list
# makes the same copy; anything else takes makepkg's loop.
_pkgcell_declared _pkgcell_defs array_build
IFS= read -r -d '' _pkgcell_known <<'EOF'
array_build () 
{ 
    local dest=$1 src=$2 i keys values;
    declare -p "$2" &> /dev/null || return 1;
    eval "keys=(\"\${!$2[@]}\")";
    eval "$dest=()";
    for i in "${keys[@]}";
    do
        values+=("printf -v '$dest[$i]' %s \"\${$src[$i]}\";");
    done;
    eval "${values[*]}"
}
EOF
IFS= read -r -d '' _pkgcell_fast <<'EOF'
    if [[ ${IFS-unset} == $' \t\n' && $dest != "$src" && ${!src@a} != *A* && ( -z ${!dest@a} || ${!dest@a} == a ) ]] && (( ${#keys[@]} == 0 || keys[${#keys[@]} - 1] == ${#keys[@]} - 1 )); then
        eval "$dest=(\"\${$src[@]}\")";
        return 0;
    fi;
EOF
if [[ $_pkgcell_defs == "${_pkgcell_known%$'\n'}" ]]; then
	_pkgcell_defs=${_pkgcell_defs/$'    eval "$dest=()";\n'/$'    eval "$dest=()";\n'"$_pkgcell_fast"}
	eval "$_pkgcell_defs"
fi
unset _pkgcell_known _pkgcell_fast
unset _pkgcell_defs

# srcinfo_write_attr normalizes the whitespace of every value with three
# pattern substitutions (an extglob one among them), in the locale's wide
# characters: the costliest line of a .SRCINFO. A value without any
# whitespace comes out of them unchanged, so when no value has any, the
# values are printed as they are; else makepkg's own runs. Only for the
# texts makepkg 6 and 7 have (7's as rewritten above).
_pkgcell_declared _pkgcell_defs srcinfo_write_attr
IFS= read -r -d '' _pkgcell_known <<'EOF'
srcinfo_write_attr () 
{ 
    local attrname=$1 attrvalues=("${@:2}");
    attrvalues=("${attrvalues[@]//+([[:space:]])/ }");
    attrvalues=("${attrvalues[@]#[[:space:]]}");
    attrvalues=("${attrvalues[@]%[[:space:]]}");
    printf "\t$attrname = %s\n" "${attrvalues[@]}"
}
EOF
IFS= read -r -d '' _pkgcell_fast <<'EOF'
srcinfo_write_attr () 
{ 
    local attrname=$1 attrvalues=("${@:2}");
    local shellopts;
    _pkgcell_shopt_p_extglob shellopts;
    shopt -s extglob;
    attrvalues=("${attrvalues[@]//+([[:space:]])/ }");
    attrvalues=("${attrvalues[@]#[[:space:]]}");
    attrvalues=("${attrvalues[@]%[[:space:]]}");
    eval "$shellopts";
    printf "\t$attrname = %s\n" "${attrvalues[@]}"
}
EOF
if [[ $_pkgcell_defs == "${_pkgcell_known%$'\n'}" || $_pkgcell_defs == "${_pkgcell_fast%$'\n'}" ]]; then
	eval "_pkgcell_$_pkgcell_defs"
	srcinfo_write_attr() {
		# $1: attr name, the rest: its values
		local _pkgcell_v
		for _pkgcell_v in "${@:2}"; do
			if [[ $_pkgcell_v == *[[:space:]]* ]]; then
				_pkgcell_srcinfo_write_attr "$@"
				return
			fi
		done
		printf "\t$1 = %s\n" "${@:2}"
	}
fi
unset _pkgcell_defs _pkgcell_known _pkgcell_fast

# write_srcinfo_content asks for every attribute of the schema (each arch
# one too) in every section, through four function calls each, and writes
# the few that are set: most of its cost. makepkg's own
# pkgbuild_extract_to_srcinfo, with a cheap test first that answers "not
# set" for the others, as get_pkgbuild_attribute would: a global with no
# element (a scalar: empty), or a variable its package function never
# assigns. Odd names (from odd arch values) take makepkg's path.
if declare -F pkgbuild_extract_to_srcinfo >/dev/null; then
	_pkgcell_declared _pkgcell_defs pkgbuild_extract_to_srcinfo
	eval "_pkgcell_$_pkgcell_defs"
	unset _pkgcell_defs
	pkgbuild_extract_to_srcinfo() {
		# $1: pkgname, $2: attr name, $3: multivalued
		if [[ -n $2 && $2 != [0-9]* && $2 != *[!A-Za-z0-9_]* ]]; then
			if [[ $1 ]]; then
				_pkgcell_fn_array "package_$1"
				local -n _pkgcell_set=${_pkgcell_fn}_names
				[[ -v _pkgcell_set[$2] ]] || return 1
			elif (($3)); then
				eval "((\${#$2[@]}))" || return 1
			else
				[[ ${!2} ]] || return 1
			fi
		fi
		_pkgcell_pkgbuild_extract_to_srcinfo "$@"
	}
fi

# $1: a file. Whether it has a CR, as makepkg's `[[ $(<file) = *$'\r'* ]]`
# finds it (NUL bytes are dropped there; here they end a chunk), without
# the command substitution's fork.
_pkgcell_has_cr() {
	local -a _pkgcell_chunks
	mapfile -d '' _pkgcell_chunks <"$1" || return 1
	[[ ${_pkgcell_chunks[*]} == *$'\r'* ]]
}

# load_makepkg_config keeps the environment's PKGDEST, CARCH, ... over
# makepkg.conf's through a command substitution; the same text made with
# printf -v (and source_safe already rewritten above), so that loading the
# config forks nothing.
_pkgcell_restore_envvars() {
	# $1: name of the variable to set to what makepkg's $(...) prints
	local -n _pkgcell_into=$1
	local var
	_pkgcell_into=
	for var in PKGDEST SRCDEST SRCPKGDEST LOGDEST BUILDDIR PKGEXT SRCEXT GPGKEY PACKAGER CARCH; do
		[[ -v $var ]] && printf -v _pkgcell_into '%s%s=%s\n' "$_pkgcell_into" "$var" "${!var@Q}"
	done
}
_pkgcell_declared _pkgcell_defs load_makepkg_config
IFS= read -r -d '' _pkgcell_known <<'EOF'
    local restore_envvars=$(for var in PKGDEST SRCDEST SRCPKGDEST LOGDEST BUILDDIR PKGEXT SRCEXT GPGKEY PACKAGER CARCH;
do
    [[ -v $var ]] && printf '%s=%s\n' "$var" "${!var@Q}";
done);
EOF
if [[ $_pkgcell_defs == *"$_pkgcell_known"* ]]; then
	_pkgcell_defs=${_pkgcell_defs/"$_pkgcell_known"/$'    local restore_envvars;\n    _pkgcell_restore_envvars restore_envvars;\n'}
	eval "$_pkgcell_defs"
fi
unset _pkgcell_defs _pkgcell_known

if [[ -n $_pkgcell_snapshot ]]; then
	# No snapshot is no error: the next run loads as this one did.
	_pkgcell_snap_write "$_pkgcell_out/snapshot" || :
	unset -f _pkgcell_snap_take _pkgcell_snap_write _pkgcell_snap_var_name _pkgcell_snap_own _pkgcell_snap_hotset _pkgcell_snap_words
	unset _pkgcell_snap_driver
fi
