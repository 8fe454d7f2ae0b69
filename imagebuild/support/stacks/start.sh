#!/bin/bash
# The entrypoint of every image (ENTRYPOINT ["tini", "-g", "--", "start.sh"]): the
# jupyter/docker-stacks runtime contract, so hub configurations and `docker run` habits written
# for those images work unchanged. Usage: start.sh [COMMAND...] (default: bash).
#
# 1. start-notebook.d hooks, as whoever the container started as.
# 2. Started as root: make the image user into NB_USER/NB_UID/NB_GID (NB_GROUP), give it
#    /home/NB_USER (a copy of the image user's home), CHOWN_HOME/CHOWN_EXTRA (with *_OPTS),
#    GRANT_SUDO, then run before-notebook.d as root and drop to that user for COMMAND.
#    NB_USER=root NB_UID=0 NB_GID=0 keeps root, with home /home/root.
#    Started as another user: give an unknown UID a passwd entry when /etc/passwd is writable
#    (group 0), warn about what only root could change, run before-notebook.d as that user.
# 3. Unset JUPYTER_ENV_VARS_TO_UNSET (comma-separated names), exec COMMAND.
set -e
# shellcheck source=_docker_stacks_log.sh
source /usr/local/bin/_docker_stacks_log.sh
_log_info "Entered start.sh with args:" "$@"

[[ $# -gt 0 ]] || set -- bash
# The command, for sourced before-notebook.d hooks that prepare only what a server needs (a
# sourced hook sees this shell's variables, not start.sh's arguments).
# shellcheck disable=SC2034 # read by the hooks
START_COMMAND=("$@")
if [[ "${_START_SH_EXECUTED:-}" == 1 ]]; then
    # already the entrypoint: a CMD that names start.sh again must not prepare twice
    _log_warn "start.sh is the default ENTRYPOINT, do not include it in CMD"
    exec "$@"
fi
export _START_SH_EXECUTED=1

image_user=$(cat /usr/local/share/imagebuild/user 2>/dev/null || echo jovyan)
image_home=/home/$image_user
NB_USER=${NB_USER:-$image_user}

is_yes() { [[ "${1:-}" == 1 || "${1:-}" == yes ]]; }

unset_requested_variables() {
    local name
    for name in ${JUPYTER_ENV_VARS_TO_UNSET//,/ }; do
        _log_info "Unset $name due to JUPYTER_ENV_VARS_TO_UNSET"
        unset "$name"
    done
    unset JUPYTER_ENV_VARS_TO_UNSET
}

# Root: the image user becomes NB_USER with NB_UID and primary group NB_GID.
refit_user() {
    if ! id -u "$NB_USER" &>/dev/null; then
        id -u "$image_user" &>/dev/null \
            || _log_fatal "Neither the image user $image_user nor $NB_USER exists (was this container started before with another NB_USER?)"
        usermod --login "$NB_USER" --home "/home/$NB_USER" "$image_user"
        _log_info "Renamed the image user:"
        _log_info "$(printf -- '- username: %-12s -> %s' "$image_user" "$NB_USER")"
        _log_info "$(printf -- '- home dir: %-12s -> %s' "$image_home" "/home/$NB_USER")"
    fi
    if [[ "$NB_UID" != "$(id -u "$NB_USER")" || "$NB_GID" != "$(id -g "$NB_USER")" ]]; then
        _log_info "Update $NB_USER's UID:GID to $NB_UID:$NB_GID"
        getent group "$NB_GID" >/dev/null || groupadd --gid "$NB_GID" "${NB_GROUP:-$NB_USER}"
        # recreated rather than usermod --uid, which would chown the whole home (CHOWN_HOME's job)
        userdel "$NB_USER"
        useradd --no-log-init --no-create-home --non-unique --home-dir "/home/$NB_USER" --shell /bin/bash \
            --uid "$NB_UID" --gid "$NB_GID" --groups users "$NB_USER"
    fi
}

# Root: /home/NB_USER starts as a copy of the image user's home (a symlink if it cannot be copied).
move_home() {
    local home=$1 copy=(-a)
    [[ "$home" != "$image_home" && ! -e "$home" ]] || return 0
    [[ "$NB_UID" != 0 ]] || copy=(-a --no-preserve=ownership)
    _log_info "Copying $image_home to $home"
    mkdir "$home"
    if ! cp "${copy[@]}" "$image_home/." "$home/"; then
        rmdir "$home" 2>/dev/null || true
        ln -s "$image_home" "$home" || _log_fatal "Could neither copy nor link $image_home to $home"
        _log_info "Linked $home to $image_home instead"
    fi
    if [[ "$PWD/" == "$image_home/"* ]]; then
        cd "$home${PWD#"$image_home"}"
        _log_info "Changed the working directory to $PWD"
    fi
}

# Root: sudo resolves commands with secure_path, not PATH: put the image's environments
# (/opt/venv/bin, conda prefixes: the PATH entries under /opt) before the distribution's.
sudo_settings() {
    [[ -d /etc/sudoers.d ]] || return 0
    local system entry envs=""
    system=$(sed -n 's/^Defaults[[:space:]]\+secure_path[[:space:]]*=[[:space:]]*"\?\([^"]*\)"\?.*/\1/p' /etc/sudoers | head -n 1)
    IFS=: read -r -a entries <<<"$PATH"
    for entry in "${entries[@]}"; do
        [[ "$entry" == /opt/* && ":$envs:" != *":$entry:"* ]] && envs+="$entry:"
    done
    echo "Defaults secure_path=\"$envs${system:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}\"" >/etc/sudoers.d/imagebuild-path
    if is_yes "${GRANT_SUDO:-}"; then
        _log_info "Granting $NB_USER passwordless sudo rights"
        echo "$NB_USER ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/imagebuild-grant-sudo
    fi
}

# Not root: name an unknown UID (software breaks without a passwd entry).
name_this_uid() {
    whoami &>/dev/null && return 0
    if [[ ! -w /etc/passwd ]]; then
        _log_warn "UID $(id -u) has no /etc/passwd entry and /etc/passwd is not writable. Try setting gid=0 with \"--user=$(id -u):0\"."
        return 0
    fi
    local passwd
    passwd=$(sed "s/^$image_user:/$image_user-image:/" /etc/passwd)
    printf '%s\n%s\n' "$passwd" "$NB_USER:x:$(id -u):$(id -g):,,,:$image_home:/bin/bash" >/etc/passwd
    _log_info "Added $NB_USER ($(id -u):$(id -g)) to /etc/passwd; the image user is now $image_user-image"
    [[ "$NB_USER" == "$image_user" ]] \
        || _log_warn "user is $NB_USER but home is $image_home. You must run as root to rename the home directory!"
}

# shellcheck source=run-hooks.sh
source /usr/local/bin/run-hooks.sh /usr/local/bin/start-notebook.d

if [[ "$(id -u)" == 0 ]]; then
    NB_UID=${NB_UID:-$(id -u "$image_user")}
    NB_GID=${NB_GID:-$(id -g "$image_user")}
    home=/home/$NB_USER
    if [[ "$NB_USER" == root && "$NB_UID" == 0 && "$NB_GID" == 0 ]]; then
        # usermod refuses while root runs processes (this one): edit root's home field directly
        passwd=$(awk -F: -v OFS=: -v home="$home" '$1 == "root" { $6 = home } { print }' /etc/passwd)
        printf '%s\n' "$passwd" >/etc/passwd
    else
        refit_user
    fi
    move_home "$home"
    if is_yes "${CHOWN_HOME:-}"; then
        _log_info "Ensuring $home is owned by $NB_UID:$NB_GID ${CHOWN_HOME_OPTS:+(chown options: $CHOWN_HOME_OPTS)}"
        # shellcheck disable=SC2086 # the options are words
        chown ${CHOWN_HOME_OPTS:-} "$NB_UID:$NB_GID" "$home"
    fi
    for extra in ${CHOWN_EXTRA//,/ }; do
        _log_info "Ensuring $extra is owned by $NB_UID:$NB_GID ${CHOWN_EXTRA_OPTS:+(chown options: $CHOWN_EXTRA_OPTS)}"
        # shellcheck disable=SC2086
        chown ${CHOWN_EXTRA_OPTS:-} "$NB_UID:$NB_GID" "$extra"
    done
    sudo_settings
    # shellcheck source=run-hooks.sh
    source /usr/local/bin/run-hooks.sh /usr/local/bin/before-notebook.d
    unset_requested_variables
    _log_info "Running as $NB_USER:" "$@"
    if [[ "$NB_UID" == 0 ]]; then
        HOME=$home exec "$@"
    fi
    # setpriv keeps the environment as it is (sudo would filter it) and resolves COMMAND with PATH
    HOME=$home USER=$NB_USER LOGNAME=$NB_USER exec setpriv --reuid "$NB_UID" --regid "$NB_GID" --init-groups -- "$@"
fi

is_yes "${GRANT_SUDO:-}" && _log_warn "container must be started as root to grant sudo permissions!"
image_uid=$(id -u "$image_user" 2>/dev/null || echo "${NB_UID:-}")
image_gid=$(id -g "$image_user" 2>/dev/null || echo "${NB_GID:-}")
name_this_uid
if [[ "$NB_USER" != "$image_user" && "$NB_USER" != "$(id -un 2>/dev/null)" ]]; then
    _log_warn "container must be started as root to change the user's name with NB_USER=\"$NB_USER\"!"
fi
if [[ -n "${NB_UID:-}" && "$NB_UID" != "$image_uid" && "$NB_UID" != "$(id -u)" ]]; then
    _log_warn "container must be started as root to change the user's id with NB_UID=\"$NB_UID\"!"
fi
if [[ -n "${NB_GID:-}" && "$NB_GID" != "$image_gid" && "$NB_GID" != "$(id -g)" ]]; then
    _log_warn "container must be started as root to change the user's group id with NB_GID=\"$NB_GID\"!"
fi
[[ -w "$image_home" ]] \
    || _log_warn "no write access to $image_home. Try starting the container with group 'users' (100), e.g. using \"--group-add=users\"."
# shellcheck source=run-hooks.sh
source /usr/local/bin/run-hooks.sh /usr/local/bin/before-notebook.d
unset_requested_variables
_log_info "Executing the command:" "$@"
exec "$@"
