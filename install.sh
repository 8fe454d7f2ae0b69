#!/bin/sh
# Install imagebuild into its own virtual environment, .venv beside this script:
#
#   ./install.sh         the project: then .venv/bin/imagebuild
#   ./install.sh test    the project and its test dependencies: then .venv/bin/python -m pytest
#
# A virtual environment, because a distribution's python3 refuses `pip install` (PEP 668,
# "externally-managed-environment") and often has no pip at all. Debian and Ubuntu ship venv's
# ensurepip in a separate package: when it is missing, python3-venv is installed with apt-get
# (as root, or through sudo). Run it again at will: a second run with the same pyproject.toml
# installs nothing (the sources are installed editable, so edits to them need no new run).
# PYTHON names another interpreter (default python3).
set -eu
cd "$(dirname "$0")"

case "${1:-}" in
    "") spec=. stamp=.venv/.installed ;;
    test) spec='.[test]' stamp=.venv/.installed-test ;;
    *) echo "usage: $0 [test]" >&2; exit 2 ;;
esac
python=${PYTHON:-python3}

say() { echo "install.sh: $*" >&2; }

if ! command -v "$python" >/dev/null 2>&1; then
    say "$python not found; install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3)"
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "imagebuild needs Python 3.11 or newer; $python is $("$python" -V 2>&1)"
    exit 1
fi

# Is pyproject.toml unchanged since the install that left stamp $1?
installed() { [ -x .venv/bin/imagebuild ] && [ -f "$1" ] && cmp -s pyproject.toml "$1"; }

if [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1; then
    if installed "$stamp" || { [ "$spec" = . ] && installed .venv/.installed-test; }; then
        say "up to date: .venv (imagebuild $spec)"
        exit 0
    fi
else
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        if ! command -v apt-get >/dev/null 2>&1; then
            say "$python cannot make a virtual environment (no ensurepip module); install venv support for it"
            exit 1
        fi
        sudo=
        if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
        say "$python has no ensurepip: installing python3-venv with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        if ! $sudo apt-get install -y --no-install-recommends python3-venv; then
            say "apt-get update (a fresh machine has no package lists yet), then again"
            $sudo apt-get update
            $sudo apt-get install -y --no-install-recommends python3-venv
        fi
    fi
    say "creating .venv with $python ($("$python" -V 2>&1))"
    rm -rf .venv  # a half-made one, from an earlier failed run
    if ! "$python" -m venv .venv; then
        rm -rf .venv
        exit 1
    fi
fi

say "installing imagebuild ($spec, editable) into .venv"
rm -f "$stamp"
.venv/bin/python -m pip install --disable-pip-version-check -e "$spec"
cp pyproject.toml "$stamp"
say "done: .venv/bin/imagebuild"
