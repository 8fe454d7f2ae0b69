#!/bin/bash
# Who AiiDA's services and profile belong to, for 20-aiida-services.sh and 30-aiida-profile.sh
# (sourced by start.sh before them, so what it exports reaches them and the server).
# Started as a user, they run as that user. Started as root, start.sh has made the image user into
# NB_USER/NB_UID/NB_GID with home /home/$NB_USER and runs these hooks as root before dropping to
# that user: they then run as NB_USER (aiida_as_user), with their data in that user's home.
# The image's settings that name the image user's home (AIIDA_PATH, AIIDA_SERVICES_DIR,
# AIIDALAB_APPS, [env] in image.toml) follow the home to /home/$NB_USER.

aiida_image_home="/home/$(cat /usr/local/share/imagebuild/user 2>/dev/null || echo jovyan)"
if [ "$(id -u)" = 0 ]; then
    aiida_home="$(getent passwd "${NB_USER:-root}" | cut -d: -f6)"
else
    aiida_home="$HOME"
fi
if [ -n "$aiida_home" ] && [ "$aiida_home" != "$aiida_image_home" ]; then
    for aiida_setting in AIIDA_PATH AIIDA_SERVICES_DIR AIIDALAB_APPS; do
        aiida_value="${!aiida_setting:-}"
        case "$aiida_value" in
            "$aiida_image_home" | "$aiida_image_home"/*) export "$aiida_setting=$aiida_home${aiida_value#"$aiida_image_home"}" ;;
        esac
    done
    unset aiida_setting aiida_value
fi
export AIIDA_SERVICES_DIR="${AIIDA_SERVICES_DIR:-$aiida_home/.aiida-services}"

# aiida_as_user HOOK: run HOOK (a file) as NB_USER when this is root; 1 when there is no such
# user to run it as (NB_USER=root: PostgreSQL refuses to run as root).
aiida_as_user() {
    if [ "${NB_UID:-0}" = 0 ]; then
        echo "$(basename "$1"): AiiDA's services do not run as root; start the container as a user, or as root with NB_USER/NB_UID of a user" >&2
        return 1
    fi
    HOME="$aiida_home" USER="$NB_USER" LOGNAME="$NB_USER" \
        setpriv --reuid "$NB_UID" --regid "$NB_GID" --init-groups -- bash "$1"
}
