# shellcheck shell=bash disable=SC2317,SC2218 # `exit` for when it is run, not sourced; _log* come from the sourced file
# Usage: source run-hooks.sh DIR
# Runs the start hooks in DIR in name order, the jupyter/docker-stacks way: a *.sh file is
# sourced (so it can export variables for what starts next), any other executable file is run,
# anything else is skipped. A hook that fails is reported and the next one runs; only a sourced
# hook that exits (e.g. under its own `set -e`) ends the calling shell, as sourcing implies.

# shellcheck source=_docker_stacks_log.sh
declare -F _log >/dev/null || source /usr/local/bin/_docker_stacks_log.sh

if [[ $# -ne 1 ]]; then
    _log_error "Should pass exactly one directory"
    return 1 2>/dev/null || exit 1
fi
if [[ ! -d $1 ]]; then
    _log_error "Directory $1 doesn't exist or is not a directory"
    return 1 2>/dev/null || exit 1
fi

# The caller (start.sh) may run with errexit; a failing hook must not end it, so errexit is
# off while hooks run (and again after each sourced hook, which may have turned it on).
case $- in *e*) __hooks_errexit=1 ;; *) __hooks_errexit=0 ;; esac
set +e
_log_info "Running hooks in: $1 as uid: $(id -u) gid: $(id -g)"
for __hook in "$1/"*; do
    [[ -e $__hook ]] || continue # an empty folder
    if [[ $__hook == *.sh ]]; then
        _log_info "Sourcing shell script: $__hook"
        # shellcheck disable=SC1090
        source "$__hook"
        __hook_status=$?
        set +e
    elif [[ -x $__hook ]]; then
        _log_info "Running executable: $__hook"
        "$__hook"
        __hook_status=$?
    else
        _log_info "Ignoring non-executable: $__hook"
        continue
    fi
    [[ $__hook_status -eq 0 ]] || _log_error "$__hook has failed, continuing execution"
done
_log_info "Done running hooks in: $1"
[[ $__hooks_errexit == 0 ]] || set -e
unset __hook __hook_status __hooks_errexit
