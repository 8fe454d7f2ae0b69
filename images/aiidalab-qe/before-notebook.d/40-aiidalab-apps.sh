#!/bin/bash
# The apps this image ships (/opt/aiidalab/apps/<name>: the home app and the QE app) appear in
# the user's $AIIDALAB_APPS (default ~/apps) as links, made at every start where the user has no
# folder or link of that name: the start page finds them there, a new image tag brings its
# versions with nothing copied, and an app the user installed or replaced stays as it is.
# As root, it runs as NB_USER (10-aiida-user.sh).
if [ "$(id -u)" = 0 ] && declare -F aiida_as_user >/dev/null; then
    aiida_as_user "${BASH_SOURCE[0]}" || true
else (
    apps="${AIIDALAB_APPS:-$HOME/apps}"
    mkdir -p "$apps" || exit 0
    for shipped in /opt/aiidalab/apps/*/; do
        name="$(basename "$shipped")"
        if [ ! -e "$apps/$name" ] && [ ! -L "$apps/$name" ]; then
            ln -s "${shipped%/}" "$apps/$name"
        fi
    done
) fi
