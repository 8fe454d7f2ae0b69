#!/bin/bash
# First start: create an AiiDA profile when none exists (SQLite storage, no broker needed),
# so notebooks can `load_profile()` at once. Later starts find the profile and do nothing.
set -euo pipefail
if verdi profile show >/dev/null 2>&1; then
    exit 0
fi
echo "aiidalab: no AiiDA profile yet; creating one"
verdi presto --profile-name "${AIIDA_PROFILE_NAME:-default}" >/dev/null
verdi profile show >/dev/null
