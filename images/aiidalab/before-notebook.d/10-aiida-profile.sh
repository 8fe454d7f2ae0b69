#!/bin/bash
# Create a service-free AiiDA profile (SQLite storage, no message broker) on first start.
# Idempotent: does nothing once any profile is configured. Safe to execute or to source:
# the work runs in a subshell so no shell options or variables leak into start.sh.
(
    set -euo pipefail

    # Same lookup as aiida-core: $AIIDA_PATH (first entry) or $HOME, then .aiida inside it
    # unless the path already ends in .aiida.
    base="${AIIDA_PATH:-$HOME}"
    base="${base%%:*}"
    if [ "$(basename "$base")" = ".aiida" ]; then
        config_dir="$base"
    else
        config_dir="$base/.aiida"
    fi

    has_profile() {
        [ -f "$config_dir/config.json" ] || return 1
        python3 - "$config_dir/config.json" <<'PY'
import json, sys
try:
    with open(sys.argv[1]) as fh:
        profiles = json.load(fh).get("profiles") or {}
except (OSError, ValueError):
    profiles = {}
sys.exit(0 if profiles else 1)
PY
    }

    if has_profile; then
        exit 0
    fi

    echo "10-aiida-profile.sh: no AiiDA profile in $config_dir, creating one (SQLite, no broker)"
    # Quiet on success; on failure show verdi's output but never block the server start.
    if out=$(verdi presto \
            --non-interactive \
            --no-broker \
            --profile-name "${AIIDA_PROFILE_NAME:-default}" \
            --email "${AIIDA_USER_EMAIL:-aiida@localhost}" 2>&1) && has_profile; then
        echo "10-aiida-profile.sh: created AiiDA profile '${AIIDA_PROFILE_NAME:-default}'"
    else
        echo "$out" >&2
        echo "10-aiida-profile.sh: WARNING: creating the AiiDA profile failed; run 'verdi presto' manually" >&2
    fi
)
