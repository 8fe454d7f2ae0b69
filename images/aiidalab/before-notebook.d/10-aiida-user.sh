#!/bin/bash
# Who AiiDA's services and profile belong to, and whether this start needs them, for
# 20-aiida-services.sh and 30-aiida-profile.sh (sourced by start.sh before them, so what it
# defines reaches them).
# Started as a user, they run as that user. Started as root, start.sh has made the image user into
# NB_USER/NB_UID/NB_GID with home /home/$NB_USER and runs these hooks as root before dropping to
# that user: they then run as NB_USER (aiida_as_user), with their data in that user's home.
# AIIDA_PATH, AIIDA_SERVICES_DIR and AIIDALAB_APPS are not set in the image: unset, AiiDA, AiiDAlab
# and these hooks take them from the home of whoever runs. `docker exec` keeps the image's
# HOME=/home/jovyan, so a root start that gave NB_USER another home links AiiDA's folders there
# from the image user's home: `docker exec -u alice verdi status` sees alice's profile.

if [ "$(id -u)" = 0 ]; then
    aiida_home="$(getent passwd "${NB_USER:-root}" | cut -d: -f6)"
    aiida_image_home="/home/$(cat /usr/local/share/imagebuild/user 2>/dev/null || echo jovyan)"
    if [ -n "$aiida_home" ] && [ "$aiida_home" != "$aiida_image_home" ] && [ -d "$aiida_image_home" ] \
        && ! [ "$aiida_image_home" -ef "$aiida_home" ] && ! mountpoint -q "$aiida_image_home"; then
        for aiida_folder in .aiida .aiida-services apps; do
            [ -e "$aiida_image_home/$aiida_folder" ] || [ -L "$aiida_image_home/$aiida_folder" ] \
                || ln -s "$aiida_home/$aiida_folder" "$aiida_image_home/$aiida_folder"
        done
        unset aiida_folder
    fi
    unset aiida_image_home
else
    aiida_home="$HOME"
fi

# aiida_services_wanted: whether this start runs a Jupyter server, which is what the services and
# the profile are prepared for; a one-shot command (`docker run IMAGE verdi --version`) starts
# without them. AIIDA_SERVICES=always prepares them for any command (a smoke run, `docker run IMAGE
# sleep infinity` to exec into), never for none. START_COMMAND is start.sh's command.
aiida_services_wanted() {
    case "${AIIDA_SERVICES:-server}" in
        always) return 0 ;;
        never) return 1 ;;
    esac
    [ -n "${IMAGEBUILD_SMOKE:-}" ] && return 0  # imagebuild's smoke run executes notebooks
    case "$(basename "${START_COMMAND[0]:-start-notebook.py}")" in
        start-notebook.* | start-singleuser.* | jupyterhub-singleuser | jupyter-lab | jupyter-notebook | jupyter-server | jupyter-nbclassic) return 0 ;;
        jupyter) [[ "${START_COMMAND[1]:-}" =~ ^(lab|notebook|server|nbclassic)$ ]] ;;
        *) return 1 ;;
    esac
}

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
