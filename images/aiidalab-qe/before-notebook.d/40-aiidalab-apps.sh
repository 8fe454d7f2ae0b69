#!/bin/bash
# The apps this image ships (/opt/aiidalab/apps/<name>) appear in the user's $AIIDALAB_APPS, as
# upstream's images make them appear: the home app as a link, so every image tag brings its own
# home app; any other app (the QE app) as a copy made when the user has none of that name, which
# is then the user's (a new image tag does not replace it; the app manager updates or removes it,
# and its pages and images are served from the home folder, as Jupyter serves no file through a
# link out of it). An app the user installed or replaced stays as it is.
# As root, it runs as NB_USER (10-aiida-user.sh).
if [ "$(id -u)" = 0 ] && declare -F aiida_as_user >/dev/null; then
    aiida_as_user "${BASH_SOURCE[0]}" || true
else (
    apps="${AIIDALAB_APPS:-$HOME/apps}"
    mkdir -p "$apps" || exit 0
    for shipped in /opt/aiidalab/apps/*/; do
        shipped="${shipped%/}"
        name="$(basename "$shipped")"
        if [ -e "$apps/$name" ] || [ -L "$apps/$name" ]; then
            continue
        elif [ "$name" = home ]; then
            ln -s "$shipped" "$apps/$name"
        else
            cp -r "$shipped" "$apps/.$name.copying" && mv "$apps/.$name.copying" "$apps/$name" \
                && echo "40-aiidalab-apps.sh: installed the image's $name app in $apps/$name" >&2
        fi
    done
) fi
