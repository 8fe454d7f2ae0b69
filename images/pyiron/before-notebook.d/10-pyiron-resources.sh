#!/bin/bash
# Write pyiron's configuration (~/.pyiron, or $PYIRONCONFIG) and create its folders on first start:
# SQLite job database in ~/pyiron/pyiron.db, resources in ~/pyiron/resources (the user's) and
# $VIRTUAL_ENV/share/pyiron (the image's LAMMPS, see postBuild), projects in ~/pyiron/projects,
# project check off (so projects may live anywhere in the home directory).
# Idempotent: an existing config file is never touched; missing folders are (re)created.
# Safe to execute or to source: the work runs in a subshell, nothing leaks into start.sh.
# Started as root (start.sh runs the hooks before dropping to NB_USER), it writes NB_USER's
# configuration as that user, in that user's home. Messages go to stderr (stdout is the command's).
pyiron_configure() (
    set -euo pipefail

    config="${PYIRONCONFIG:-$HOME/.pyiron}"
    root="$HOME/pyiron"

    mkdir -p "$root/resources" "$root/projects" "$(dirname "$config")"

    if [ -e "$config" ]; then
        exit 0
    fi

    # Keys as read by pyiron_base.state.settings.Settings.file_configuration_map; the booleans
    # must be literal True/False (parsed with ast.literal_eval). "~" is expanded by pyiron.
    tmp="$(mktemp "$config.XXXXXX")"
    cat > "$tmp" <<INI
[DEFAULT]
PROJECT_CHECK_ENABLED = False
FILE = ~/pyiron/pyiron.db
RESOURCE_PATHS = ~/pyiron/resources, ${VIRTUAL_ENV:-/opt/venv}/share/pyiron
PROJECT_PATHS = ~/pyiron/projects
INI
    chmod 644 "$tmp"
    mv -f "$tmp" "$config"
    echo "10-pyiron-resources.sh: wrote pyiron configuration $config" >&2
)

if [ "$(id -u)" != 0 ]; then
    pyiron_configure
elif [ "${NB_UID:-0}" = 0 ]; then
    HOME="$(getent passwd "${NB_USER:-root}" | cut -d: -f6)" pyiron_configure
else
    HOME="$(getent passwd "$NB_USER" | cut -d: -f6)" USER="$NB_USER" LOGNAME="$NB_USER" \
        setpriv --reuid "$NB_UID" --regid "$NB_GID" --init-groups -- bash -c "$(declare -f pyiron_configure); pyiron_configure"
fi
unset -f pyiron_configure
