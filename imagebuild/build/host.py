"""`imagebuild engine up`: an engine on this host that builds with BuildKit.

Uses a running engine, or installs and starts Debian's docker.io; then makes sure some docker
CLI builds with BuildKit (builders.py), installing the distribution's docker-buildx where the
CLI needs it (trixie) and the archive has it.
"""

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from imagebuild.build.builders import AUTO, find_builder
from imagebuild.build.engine import EngineStatus, status
from imagebuild.system import apt_has, apt_install, can_apt_install, serve

ENGINE_PACKAGES = ["docker.io"]
BUILDX_PACKAGE = "docker-buildx"
START_TIMEOUT = 60


def up(say: Callable[[str], None], cache: Path, environ: Mapping[str, str]) -> EngineStatus:
    """Make an engine answer: use a running one, or install and start Debian's docker.io (its
    log in the host cache folder `cache`); then make sure builds can use BuildKit."""
    current = status()
    log = cache / "engine.log"
    if current.reachable:
        say(f"using the running {current.detail}, Docker {current.version}")
    else:
        if shutil.which("dockerd") is None:
            say(f"no Docker engine found; installing {', '.join(ENGINE_PACKAGES)} (log: {log})")
            apt_install(ENGINE_PACKAGES, log=log)
        say(f"starting dockerd (log: {log})")
        serve(["dockerd"], ready=lambda: status().reachable, timeout=START_TIMEOUT, log=log)
        current = status()
        say(f"started Docker {current.version}")
    _ensure_buildkit(say, log, environ)
    return current


def _ensure_buildkit(say: Callable[[str], None], log: Path, environ: Mapping[str, str]) -> None:
    """A docker CLI of version 23 or newer builds with BuildKit only through the buildx plugin:
    where no CLI here can, install the distribution's docker-buildx (trixie has it; bookworm's
    docker.io 20.10 CLI needs none)."""
    builder = find_builder(AUTO, environ)
    if builder.uses_buildkit:
        say(f"builds use {builder.describe()}")
        return
    if can_apt_install() and apt_has(BUILDX_PACKAGE):
        say(f"no docker CLI here builds with BuildKit ({builder.note}); installing {BUILDX_PACKAGE} (log: {log})")
        apt_install([BUILDX_PACKAGE], log=log)
        builder = find_builder(AUTO, environ)
    say(f"builds use {builder.describe()}" + ("" if builder.uses_buildkit else f" ({builder.note})"))
