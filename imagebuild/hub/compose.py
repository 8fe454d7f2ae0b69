"""The compose file, rendered from hub.toml, and the Compose program that runs it.

Debian has no `docker compose` plugin for its docker.io 20.10: bookworm ships Compose 1.29 as
the `docker-compose` package, trixie 2.x. The compose file keeps to what both understand
(no `name:` key: the project is given with -p; explicit container, network and volume names).
"""

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagebuild.build.render import templates
from imagebuild.errors import EngineError, HubError
from imagebuild.model.hub import HubSettings
from imagebuild.system import Completed, apt_install, run

COMPOSE_PACKAGE = "docker-compose"


def render_compose(settings: HubSettings, settings_text: str) -> str:
    """compose.yml for these settings; the hub carries hub.toml's hash, so an edit recreates it alone."""
    sha = hashlib.sha256(settings_text.encode()).hexdigest()[:16]
    return templates.get_template("hub/compose.yml.j2").render(settings=settings, settings_sha=sha)


@dataclass(frozen=True)
class Compose:
    """A Compose program: its command words and what it says of its version."""

    command: tuple[str, ...]
    version: str

    def run(self, folder: Path, project: str, *args: str, timeout: int = 600) -> Completed:
        """`compose -p PROJECT -f compose.yml ARGS` in the hub folder; output captured, the exit
        code left to the caller (it words the error); a timeout is a HubError."""
        return run([*self.command, "-p", project, "-f", "compose.yml", *args], cwd=folder, timeout=timeout, check=False, error=HubError)


def _version(command: list[str]) -> str | None:
    """What a Compose program says of its version, or None when it does not answer as Compose."""
    try:
        answer = run([*command, "version", "--short"], timeout=60, check=False)
    except EngineError:
        return None
    return answer.stdout.strip() if answer.returncode == 0 and answer.stdout.strip() else None


def find_compose(say: Callable[[str], None], cache: Path) -> Compose:
    """The `docker compose` plugin when present, else a `docker-compose` program, else Debian's
    package (its install log in the host cache folder `cache`)."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if shutil.which(command[0]) and (version := _version(command)):
            return Compose(tuple(command), version)
    say(f"no Compose found; installing the distribution's {COMPOSE_PACKAGE} package")
    log = cache / "compose-install.log"
    apt_install([COMPOSE_PACKAGE], log=log)
    for command in candidates:
        if shutil.which(command[0]) and (version := _version(command)):
            return Compose(tuple(command), version)
    raise EngineError(
        f"the {COMPOSE_PACKAGE} package was installed but no Compose answers",
        hint=f"see {log}",
    )
