# shellcheck shell=bash
# Logging for the start scripts, in the jupyter/docker-stacks format their users grep for:
# "LEVEL[YYYY-MM-DD HH:MM:SS] message" on stderr (stdout stays the command's). INFO and DEBUG
# are dropped when JUPYTER_DOCKER_STACKS_QUIET is set; on a terminal the serious levels are
# coloured unless NO_COLOR is set. Sourced by start.sh and run-hooks.sh, and by hooks that
# want the same format.

_log() {
    local level=INFO colour=""
    case "${1:-}" in
        INFO | DEBUG | WARNING | ERROR | FATAL) level=$1 && shift ;;
    esac
    if [[ -n "${JUPYTER_DOCKER_STACKS_QUIET:-}" && ($level == INFO || $level == DEBUG) ]]; then
        return 0
    fi
    local line
    line="${level}[$(date '+%Y-%m-%d %H:%M:%S')] $*"
    if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
        case $level in
            FATAL) colour='1;31' ;;
            ERROR) colour='31' ;;
            WARNING) colour='33' ;;
            DEBUG) colour='36' ;;
        esac
    fi
    if [[ -n $colour ]]; then
        printf '\033[0;%sm%s\033[0m\n' "$colour" "$line" >&2
    else
        printf '%s\n' "$line" >&2
    fi
}

_log_info() { _log INFO "$@"; }
_log_warn() { _log WARNING "$@"; }
_log_error() { _log ERROR "$@"; }
# A fatal message ends the (sub)shell that logs it.
_log_fatal() {
    _log FATAL "$@"
    exit 1
}
