"""The host side of imagebuild: its cache folder, the one wrapper every external command runs
through (a timeout, a missing program named with what to install), the one way a background
server (dockerd, docker-registry) is started and waited for, apt-get, a per-host lock."""

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from imagebuild.errors import EngineError, ImagebuildError

Completed = subprocess.CompletedProcess[str]
"""What `run` gives back: the command, its exit code and (unless it went to a log) its output."""

APT_TIMEOUT = 1800
"""apt-get update or install on a slow mirror; a hung download fails instead of blocking a run."""


def cache_dir(environ: Mapping[str, str]) -> Path:
    """Host cache for assets, wheels, root file systems and engine logs: IMAGEBUILD_CACHE, else
    $XDG_CACHE_HOME/imagebuild. Read once by the command line: into a run's RunConfig (config.py),
    or for the host-level commands (`engine up`, `registry up`, Compose) that have no run."""
    base = environ.get("IMAGEBUILD_CACHE") or Path(environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imagebuild"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(
    command: list[str],
    *,
    timeout: float,
    log: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    error: type[ImagebuildError] = EngineError,
) -> Completed:
    """Every external command (git, uv, pip, apt-get, debootstrap, tar, compose) runs here: a
    missing program, a timeout or (with `check`) a non-zero exit becomes one `error` naming the
    command. Output goes to `log` when given, else it is captured (text) for the caller; with
    `check=False` the caller reads the exit code and output and words its own error."""
    _require(command[0], env, error)
    shown = " ".join(command)
    try:
        if log is None:
            completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        else:
            with log.open("ab") as sink:
                finished = subprocess.run(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout, check=False)
            completed = subprocess.CompletedProcess(command, finished.returncode, "", "")
    except subprocess.TimeoutExpired:
        raise error(f"{shown} did not finish within {timeout:.0f} s", hint="see the log for where it stopped" if log else None) from None
    except OSError as failure:
        raise error(f"{shown} could not start: {failure.strerror or failure}") from None
    if check and completed.returncode != 0:
        where = f"; see {log}" if log else ""
        detail = _last_lines(completed.stderr or completed.stdout)
        raise error(f"command failed with exit code {completed.returncode}: {shown}{where}{detail}")
    return completed


class Streamed:
    """A long command whose merged output is read line by line as it comes (a build's progress),
    `stdin` written to it meanwhile; `returncode` is set once the output is read to its end."""

    def __init__(self, command: list[str], *, stdin: bytes, env: dict[str, str], error: type[ImagebuildError] = EngineError) -> None:
        _require(command[0], env, error)
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        except OSError as failure:
            raise error(f"{' '.join(command)} could not start: {failure.strerror or failure}") from None
        self.returncode: int | None = None
        self.feeding = threading.Thread(target=self._feed, args=(stdin,), daemon=True)  # a pipe holds 64 KiB
        self.feeding.start()

    def _feed(self, data: bytes) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.write(data)
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()

    def __iter__(self) -> Iterator[str]:
        assert self.process.stdout is not None
        try:
            for raw in self.process.stdout:
                yield raw.decode(errors="replace").rstrip("\n")
        finally:
            self.process.stdout.close()
            self.returncode = self.process.wait()
            self.feeding.join()


def _require(program: str, env: dict[str, str] | None, error: type[ImagebuildError]) -> None:
    if shutil.which(program, path=(env or os.environ).get("PATH")) is None and not Path(program).is_file():
        raise error(f"'{program}' is not installed", hint=f"install the package that provides {program}")


def serve(
    command: list[str],
    *,
    ready: Callable[[], bool],
    timeout: float,
    log: Path,
    error: type[ImagebuildError] = EngineError,
) -> int:
    """Start a long-running server in its own session (it outlives imagebuild), its output
    appended to `log`, and wait until `ready()` says it answers; returns its process ID. A
    missing program, a start failure, an exit before it answers or no answer within `timeout`
    (then it is stopped) is one `error` naming the log."""
    _require(command[0], None, error)
    shown = " ".join(command)
    try:
        with log.open("ab") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as failure:
        raise error(f"{shown} could not start: {failure.strerror or failure}", path=log) from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return process.pid
        if (code := process.poll()) is not None:
            with log.open("rb") as written:  # the log grows run after run: its end is this start's
                written.seek(max(0, log.stat().st_size - 4096))
                detail = _last_lines(written.read().decode(errors="replace"))
            raise error(f"{shown} exited with code {code} before it answered{detail}", path=log, hint="read the log named above")
        time.sleep(0.3)
    process.terminate()  # nothing is left half-started
    raise error(f"{shown} did not answer within {timeout:.0f} s", path=log, hint="read the log named above")


def _last_lines(output: str, count: int = 5) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return ("\n" + "\n".join(lines[-count:])) if lines else ""


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


def apt_has(package: str) -> bool:
    """Whether the host's apt sources offer `package` (docker-buildx: trixie has it, bookworm not)."""
    if shutil.which("apt-cache") is None:
        return False
    return bool(run(["apt-cache", "show", "--no-all-versions", package], timeout=60, check=False).stdout.strip())


def apt_install(packages: list[str], *, log: Path) -> None:
    """Install Debian packages on the host (Debian/Ubuntu, as root only)."""
    if not can_apt_install():
        raise EngineError(
            f"need {', '.join(packages)} and cannot install them here",
            hint=f"install {' '.join(packages)} with your system's package manager (needs root on Debian/Ubuntu)",
        )
    env_prefix = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run([*env_prefix, "apt-get", "update", "-q"], log=log, timeout=APT_TIMEOUT)
    run([*env_prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], log=log, timeout=APT_TIMEOUT)


@contextlib.contextmanager
def exclusive(lock_file: Path, say: Callable[[str], None]) -> Iterator[None]:
    """One imagebuild at a time per host for `lock_file` (in the host cache): two builds of the
    same content at once would each tag their own image and move the content tag under the other."""
    with lock_file.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another imagebuild to finish ({handle.name})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
