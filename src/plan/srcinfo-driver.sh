#!/bin/bash
# pkgcell's .SRCINFO driver. Runs inside the parse sandbox (read-only
# sources, no network) and prints, for many PKGBUILDs in one go, exactly
# what `makepkg --printsrcinfo` prints for each.
#
# usage: srcinfo-driver.sh LIST OUTDIR WORKERS TIMEOUT_SECS FIRST_ID DROPIDS_SO [SNAPSHOT]
#   LIST    lines of "<id><TAB><job directory>"; the PKGBUILD's tree is
#           bound read-only at <job directory>/tree
#   OUTDIR  gets, per id: <id>.srcinfo (stdout of the job, i.e. the
#           .SRCINFO text), <id>.log (its stderr), <id>.status ("ok",
#           "exit N" or "timeout"), and <id>.pkgver when it has pkgver().
#   FIRST_ID  job n runs as uid and gid FIRST_ID + n
#   DROPIDS_SO  the loadable builtins pkgcell_dropids and pkgcell_lockdirs
#           (srcinfo-dropids.rs)
#   SNAPSHOT  a snapshot of makepkg's loaded libraries (below) to source;
#           when there is no such file, one is written to OUTDIR/snapshot
#           before any job starts
#
# Why this shape: makepkg --printsrcinfo costs a fresh bash that sources
# all of libmakepkg and makepkg.conf. Here one bash loads them once, and
# each PKGBUILD runs in a forked copy of it (a process substitution), so it
# starts with makepkg's functions and config already in place. The steps
# per PKGBUILD are the ones /usr/bin/makepkg takes for --printsrcinfo,
# minus those that only check the host (writable PKGDEST/SRCDEST, EUID,
# check_software), which change no output.
#
# Isolation: this script runs as root inside the sandbox and sources only
# the base's makepkg and makepkg.conf, or a snapshot that root wrote in an
# earlier run before any job started. Each forked job opens its output
# files while still root, then, before it sources its PKGBUILD, drops to a
# uid and gid of its own (pkgcell_dropids), with its job directory (HOME,
# TMPDIR, scratch) made its own and mode 0700. OUTDIR is root's alone: a
# job holds only its own output fds, and its status is written by its
# root worker. So no PKGBUILD can read or change another one's result,
# nor signal or trace another job (different uids).

_pkgcell_list=$1 _pkgcell_out=$2 _pkgcell_workers=$3 _pkgcell_timeout=$4
_pkgcell_first_id=$5 _pkgcell_dropids=$6 _pkgcell_snapshot=${7-}

# The globals /usr/bin/makepkg sets before its libraries are sourced.
export TEXTDOMAIN='pacman-scripts'
export TEXTDOMAINDIR='/usr/share/locale'
export COMMAND_MODE='legacy'
unset CDPATH GREP_OPTIONS
# pkgcell passes the version it read from /usr/bin/makepkg (saves an exec).
makepkg_version=${PKGCELL_MAKEPKG_VERSION-$(sed -n "s/^declare -r makepkg_version='\(.*\)'$/\1/p" /usr/bin/makepkg)}
unset PKGCELL_MAKEPKG_VERSION
declare -r makepkg_version
declare -r confdir='/etc'
declare -r BUILDSCRIPT='PKGBUILD'
LIBRARY=${LIBRARY:-'/usr/share/makepkg'}
IGNOREARCH=1 PRINTSRCINFO=1 BUILDPKG=0
[[ -n ${SOURCE_DATE_EPOCH-} ]] || SOURCE_DATE_EPOCH=$(date +%s)
export SOURCE_DATE_EPOCH
shopt -s extglob

# makepkg's libraries and this driver's rewrites of them
# (srcinfo-load.sh, beside this file), or the snapshot of the state they
# leave: a file of `declare -f` and `declare -p` text that a run of
# srcinfo-load.sh wrote (its last line sets _pkgcell_snapshot_loaded).
# Sourcing it costs a third of what loading does. One that does not load
# whole leaves this shell half loaded: exit 99, and pkgcell runs the batch
# again without it.
if [[ -n $_pkgcell_snapshot && -f $_pkgcell_snapshot ]]; then
	_pkgcell_snapshot_loaded=
	source "$_pkgcell_snapshot" 2>"$_pkgcell_out/snapshot.log"
	[[ $_pkgcell_snapshot_loaded == 1 ]] || exit 99
	unset _pkgcell_snapshot_loaded
	# The text of the functions it holds as stubs, after its `return 0`
	# (see _pkgcell_cold), read now, as root, for every job to inherit;
	# one cut short is a snapshot that did not load.
	mapfile -s "$_pkgcell_cold_skip" _pkgcell_cold_lines <"$_pkgcell_snapshot" &&
		[[ ${_pkgcell_cold_lines[-1]-} == $'# end of the pkgcell srcinfo snapshot\n' ]] || exit 99
	unset _pkgcell_cold_skip
else
	source "${BASH_SOURCE[0]%/*}/srcinfo-load.sh"
fi
unset _pkgcell_snapshot
load_makepkg_config
PACKAGER=${PACKAGER:-"Unknown Packager"}
unset ALL_OFF BOLD BLUE GREEN RED YELLOW

# makepkg's messages go through gettext, which a minimal base may lack.
if ! type -P gettext >/dev/null; then
	gettext() { printf '%s' "$1"; }
fi

# One PKGBUILD, in a forked copy of this shell, still root when it starts.
# stdout is the .SRCINFO file, stderr the log (both opened by root), fd 3
# the pipe to the worker, which waits for "ok" or "ok pkgver".
# $1: job directory, $2: id, $3: uid for the job.
_pkgcell_one() {
	# Limits: CPU seconds (a busy loop), file size in KiB (huge output),
	# address space in KiB (a memory bomb), no core files. Set as root, both
	# soft and hard: the job cannot raise them. The size limit is known to
	# the Rust side (OUTPUT_LIMIT) to name the error.
	ulimit -t "$_pkgcell_timeout" -f 1024 -v 2097152 -c 0 2>/dev/null
	cd -P -- "$1/tree" || exit 90
	pkgcell_dropids "$3" "$1" || exit 94
	# The job's own directory, not shared /tmp: nobody else can plant a
	# symlink at its scratch path.
	export HOME=$1 TMPDIR=$1
	_pkgcell_fn_tmp=$1/.pkgcell-fn
	startdir=$PWD
	unset _pkgcell_list _pkgcell_workers _pkgcell_jobs _pkgcell_out
	BUILDFILE=$startdir/$BUILDSCRIPT
	if [[ ! -f $BUILDFILE ]]; then
		error "$(gettext "%s does not exist.")" "$BUILDSCRIPT"
		exit 91
	fi
	if _pkgcell_has_cr "$BUILDFILE"; then
		error "$(gettext "%s contains %s characters and cannot be sourced.")" "$BUILDSCRIPT" "CRLF"
		exit 92
	fi
	source_buildfile "$BUILDFILE"
	pkgbase=${pkgbase:-${pkgname[0]}}
	lint_pkgbuild || exit 93
	local has_pkgver=
	if have_function pkgver; then
		has_pkgver=' pkgver'
	fi
	write_srcinfo_content
	echo "ok$has_pkgver" >&3
}

# Run the PKGBUILDs of one worker one after the other, each with a wall
# clock limit: the worker waits for the job's "ok" with `read -t`, which
# needs no extra process per job. Only this root worker writes the status.
_pkgcell_worker() {
	local i id dir fd pid st
	for ((i = $1; i < ${#_pkgcell_jobs[@]}; i += _pkgcell_workers)); do
		id=${_pkgcell_jobs[i]%%$'\t'*}
		dir=${_pkgcell_jobs[i]#*$'\t'}
		exec {fd}< <(_pkgcell_one "$dir" "$id" "$((_pkgcell_first_id + i))" 3>&1 >"$_pkgcell_out/$id.srcinfo" 2>"$_pkgcell_out/$id.log" </dev/null)
		pid=$!
		# -n: a job cannot make its worker buffer an endless line.
		if read -r -n 16 -t "$_pkgcell_timeout" -u "$fd" st; then
			# The job has printed its result and has nothing left to do:
			# end it, so that a job that lingers cannot stall its worker.
			kill -KILL "$pid" 2>/dev/null
			wait "$pid"
			case $st in
			ok) ;;
			'ok pkgver') : >"$_pkgcell_out/$id.pkgver"; st=ok ;;
			*) st="exit 96" ;;
			esac
		elif (($? > 128)); then
			kill -KILL "$pid" 2>/dev/null
			wait "$pid"
			st=timeout
		else
			wait "$pid"
			st="exit $?"
		fi
		exec {fd}<&-
		echo "$st" >"$_pkgcell_out/$id.status"
	done
}

mapfile -t _pkgcell_jobs <"$_pkgcell_list"

# Every job id must be mapped inside (a subordinate id range); with only
# root mapped, isolation is impossible and nothing is sourced.
_pkgcell_last_id=$((_pkgcell_first_id + ${#_pkgcell_jobs[@]} - 1))
for _pkgcell_map in /proc/self/uid_map /proc/self/gid_map; do
	_pkgcell_mapped=
	while read -r _pkgcell_in _ _pkgcell_count; do
		if ((_pkgcell_in <= _pkgcell_first_id && _pkgcell_last_id < _pkgcell_in + _pkgcell_count)); then
			_pkgcell_mapped=1
		fi
	done <"$_pkgcell_map"
	if [[ -z $_pkgcell_mapped ]]; then
		echo "pkgcell: ids $_pkgcell_first_id-$_pkgcell_last_id are not all mapped in $_pkgcell_map" >&2
		exit 97
	fi
done
unset _pkgcell_map _pkgcell_mapped _pkgcell_in _pkgcell_count _pkgcell_last_id

enable -f "$_pkgcell_dropids" pkgcell_dropids pkgcell_lockdirs || exit 98
# No place shared between jobs stays writable for them: the world-writable
# directories of the base and the sandbox become root's.
pkgcell_lockdirs /tmp /var/tmp /dev/shm /run/lock || exit 98

# One worker runs in this shell: a fork of it (all of makepkg loaded)
# costs about a millisecond, a tenth of a small PKGBUILD's job.
if ((_pkgcell_workers == 1)); then
	_pkgcell_worker 0
else
	for ((w = 0; w < _pkgcell_workers; w++)); do
		_pkgcell_worker "$w" &
	done
	wait
fi
