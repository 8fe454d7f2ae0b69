#!/bin/bash
# First start: pyiron's configuration (~/.pyiron), its job database and resource folders,
# unless the user already has a configuration (kept across restarts in the home volume).
set -euo pipefail
config="$HOME/.pyiron"
if [ -f "$config" ]; then
    exit 0
fi
echo "pyiron: writing $config"
mkdir -p "$HOME/pyiron/projects" "$HOME/pyiron/resources"
cat > "$config" <<CONFIG
[DEFAULT]
PROJECT_CHECK_ENABLED = False
FILE = $HOME/pyiron/pyiron.db
RESOURCE_PATHS = $HOME/pyiron/resources
PROJECT_PATHS = $HOME/pyiron/projects
CONFIG
chmod 600 "$config"
