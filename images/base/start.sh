#!/bin/bash
# Run the start hooks, then the command: the jupyter/docker-stacks contract, so hub configs
# and images written for those stacks work unchanged. Executable *.sh hooks are run,
# others are sourced (so they may export variables for the server).
set -e

run_hooks() {
    local folder=$1
    [ -d "$folder" ] || return 0
    for hook in "$folder"/*; do
        case "$hook" in
            *.sh)
                if [ -x "$hook" ]; then
                    echo "start.sh: running $hook"
                    "$hook"
                else
                    echo "start.sh: sourcing $hook"
                    # shellcheck disable=SC1090
                    source "$hook"
                fi
                ;;
            *)
                if [ -x "$hook" ]; then
                    echo "start.sh: running $hook"
                    "$hook"
                fi
                ;;
        esac
    done
}

run_hooks /usr/local/bin/start-notebook.d
run_hooks /usr/local/bin/before-notebook.d
exec "$@"
