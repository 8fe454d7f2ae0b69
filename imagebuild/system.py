"""The few host commands imagebuild runs (apt-get, dockerd, debootstrap), in one wrapper
that names the command and says what to install when a program is missing."""

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from imagebuild.errors import EngineError


def cache_dir() -> Path:
    """Host cache for bootstrapped root file systems and engine logs (XDG, overridable)."""
    base = os.environ.get("IMAGEBUILD_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imagebuild"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(command: list[str], *, log: Path | None = None) -> None:
    """Run a host command; its output goes to `log` (or is shown), failure raises EngineError."""
    if shutil.which(command[0]) is None:
        raise EngineError(f"'{command[0]}' is not installed", hint=f"install the package that provides {command[0]}")
    if log is None:
        completed = subprocess.run(command, check=False)
    else:
        with log.open("ab") as sink:
            completed = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if completed.returncode != 0:
        where = f"; see {log}" if log else ""
        raise EngineError(f"command failed with exit code {completed.returncode}: {' '.join(command)}{where}")


def port_is_free(port: int) -> bool:
    """Whether a server could listen on this loopback port now. Servers here set SO_REUSEADDR
    (http.server does), so a port still in TIME_WAIT after the last build's server is free; the
    fixed port, and so the build argument and Docker's layer cache, stays the same."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def can_apt_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: list[str], *, log: Path) -> None:
    """Install Debian packages on the host (Debian/Ubuntu, as root only)."""
    if not can_apt_install():
        raise EngineError(
            f"need {', '.join(packages)} and cannot install them here",
            hint=f"install {' '.join(packages)} with your system's package manager (needs root on Debian/Ubuntu)",
        )
    env_prefix = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run([*env_prefix, "apt-get", "update", "-q"], log=log)
    run([*env_prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], log=log)


@contextlib.contextmanager
def exclusive(name: str, say: Callable[[str], None]) -> Iterator[None]:
    """One imagebuild at a time per host for `name`: two builds of the same content at once
    would each tag their own image and move the content tag under the other."""
    with (cache_dir() / f"{name}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another imagebuild to finish ({handle.name})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
