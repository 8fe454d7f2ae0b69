"""Step 7, build, in the Docker engine: the only module that imports `docker` (smoke.py borrows the client).

It finds or starts an engine, imports bootstrapped root file systems, builds contexts
through the SDK's classic builder and reads images back by their content-hash label.
"""

import io
import shutil
import subprocess
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests
from docker.models.images import Image as Image

from imagebuild.build.context import BuildContext
from imagebuild.errors import BuildError, EngineError
from imagebuild.system import apt_install, cache_dir

ENGINE_PACKAGES = ["docker.io"]
START_TIMEOUT = 60


class PushFailure(Exception):
    """A push the engine did not complete; the message is the engine's."""


def pushed_digest(stream: Iterable[dict]) -> str:
    """The digest a push stream reports; a failure reported inside the stream raises PushFailure."""
    digest = None
    for item in stream:
        if "errorDetail" in item or "error" in item:
            detail = item.get("errorDetail") or {}
            raise PushFailure(str(detail.get("message") or item.get("error")).strip())
        digest = (item.get("aux") or {}).get("Digest", digest)
    if digest is None:
        raise PushFailure("the engine finished the push without reporting a digest")
    return digest


@dataclass(frozen=True)
class EngineStatus:
    reachable: bool
    detail: str
    version: str | None = None


def _client(timeout: int = 600) -> docker.DockerClient:
    return docker.from_env(timeout=timeout)


def status() -> EngineStatus:
    try:
        client = _client(timeout=5)
        version = client.version()
        return EngineStatus(True, f"engine at {client.api.base_url}", f"{version['Version']} (API {version['ApiVersion']})")
    except docker.errors.DockerException as exc:
        return EngineStatus(False, str(exc))


def up(say: Callable[[str], None]) -> EngineStatus:
    """Make an engine answer: use a running one, or install and start Debian's docker.io."""
    current = status()
    if current.reachable:
        say(f"using the running {current.detail}, Docker {current.version}")
        return current
    log = cache_dir() / "engine.log"
    if shutil.which("dockerd") is None:
        say(f"no Docker engine found; installing {', '.join(ENGINE_PACKAGES)} (log: {log})")
        apt_install(ENGINE_PACKAGES, log=log)
    say(f"starting dockerd (log: {log})")
    with log.open("ab") as sink:
        subprocess.Popen(["dockerd"], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        current = status()
        if current.reachable:
            say(f"started Docker {current.version}")
            return current
        time.sleep(0.5)
    raise EngineError(f"dockerd did not answer within {START_TIMEOUT} s", path=log, hint="read the engine log above")


@dataclass(frozen=True)
class ContainerInfo:
    """What `hub status` and `hub up` need to know of a container."""

    id: str
    name: str
    image: str
    state: str  # running, exited, restarting, ...
    health: str  # healthy, starting, unhealthy, or "" without a health check
    started_at: str
    restarts: int
    labels: dict[str, str]
    environment: dict[str, str]


class Engine:
    """A connected engine. Build, import and look up images by content hash."""

    def __init__(self) -> None:
        try:
            self.client = _client()
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise EngineError(f"no Docker engine answers ({exc})", hint="run 'imagebuild engine up'") from None

    def image(self, ref: str) -> Image | None:
        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None

    def containers(self, label: str) -> list[ContainerInfo]:
        """Containers, running or not, carrying `label` (KEY or KEY=VALUE)."""
        found = []
        for container in self.client.containers.list(all=True, filters={"label": label}):
            attrs = container.attrs
            state = attrs["State"]
            found.append(
                ContainerInfo(
                    id=container.id,
                    name=container.name,
                    image=attrs["Config"]["Image"],
                    state=state["Status"],
                    health=(state.get("Health") or {}).get("Status", ""),
                    started_at=state.get("StartedAt", ""),
                    restarts=attrs.get("RestartCount", 0),
                    labels=attrs["Config"].get("Labels") or {},
                    environment=dict(item.split("=", 1) for item in attrs["Config"].get("Env") or [] if "=" in item),
                )
            )
        return found

    def container_logs(self, container_id: str, tail: int = 20) -> str:
        try:
            return self.client.containers.get(container_id).logs(tail=tail).decode(errors="replace")
        except docker.errors.NotFound:
            return ""

    def remove_container(self, container_id: str) -> None:
        """Stop (with a grace period) and remove, and wait until it is gone (a container created
        with auto-remove goes by itself once stopped; then the engine answers 409 to a remove)."""
        try:
            container = self.client.containers.get(container_id)
            container.stop(timeout=30)
            container.remove(force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise EngineError(f"could not remove container {container_id[:12]}: {exc.explanation}") from None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.client.containers.get(container_id)
            except docker.errors.NotFound:
                return
            time.sleep(0.5)
        raise EngineError(f"container {container_id[:12]} was not removed within 120 s", hint="see 'docker ps -a'")

    def try_pull(self, ref: str, credentials: tuple[str, str] | None = None) -> bool:
        auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
        try:
            self.client.images.pull(ref, auth_config=auth)
        except docker.errors.APIError:
            return False
        return True

    def import_rootfs(self, tarball: Path, ref: str, changes: list[str]) -> Image:
        repository, tag = ref.rsplit(":", 1)
        self.client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)
        imported = self.image(ref)
        if imported is None:
            raise EngineError(f"importing {tarball} as {ref} left no image", path=tarball)
        return imported

    def images_with_label(self, key: str, value: str | None = None) -> list[Image]:
        """Tagged images carrying the label (intermediates of failed builds inherit labels too)."""
        selector = f"{key}={value}" if value is not None else key
        return self.client.images.list(filters={"label": selector, "dangling": False})

    def push(self, repository: str, tag: str, credentials: tuple[str, str] | None) -> str:
        """Push one tag; returns the digest the engine reports. The engine reports failures inside a
        successful-looking HTTP stream (`errorDetail`), so every item is checked."""
        auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
        try:
            return pushed_digest(self.client.images.push(repository, tag, stream=True, decode=True, auth_config=auth))
        except docker.errors.APIError as error:
            raise PushFailure(str(error.explanation or error)) from None
        except requests.RequestException as error:
            raise PushFailure(f"the engine connection broke: {error}") from None

    def untag(self, ref: str) -> None:
        self.client.images.remove(ref, noprune=True)

    def run_script(self, ref: str, script: str) -> str:
        """The output of a bash script in a throwaway container of `ref`, without network."""
        output = self.client.containers.run(ref, ["bash", "-c", script], remove=True, network_mode="none")
        return output.decode(errors="replace")

    def read_file(self, ref: str, path: str) -> bytes | None:
        """A file of image `ref`, copied out of a created (never started) container; None if absent."""
        container = self.client.containers.create(ref, ["true"], network_disabled=True)
        try:
            stream, _ = container.get_archive(path)
        except docker.errors.NotFound:
            return None
        finally:
            container.remove(force=True)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.extractfile(archive.getmembers()[0])
            return member.read() if member else None

    def tag(self, image: Image, ref: str) -> None:
        repository, tag = ref.rsplit(":", 1)
        image.tag(repository, tag)

    def build(
        self,
        context: BuildContext,
        *,
        tag: str,
        labels: dict[str, str],
        buildargs: dict[str, str],
        nocache: bool = False,
        log_path: Path,
        on_step: Callable[[str], None],
    ) -> Image:
        """Build through the classic builder on host networking (loopback mirrors and build environment)."""
        tail: deque[str] = deque(maxlen=25)
        step = "(before the first step)"
        image_id = None
        stream = self.client.api.build(
            fileobj=io.BytesIO(context.tar),
            custom_context=True,
            tag=tag,
            labels=labels,
            buildargs=buildargs,
            network_mode="host",
            rm=True,
            forcerm=True,
            nocache=nocache,
            pull=False,
            decode=True,
        )
        with log_path.open("w", encoding="utf-8") as log:
            for chunk in stream:
                if "stream" in chunk:
                    text = chunk["stream"]
                    log.write(text)
                    for line in text.splitlines():
                        if line.startswith("Step "):
                            step = line
                            on_step(line)
                        if line.strip():
                            tail.append(line)
                elif "aux" in chunk:
                    image_id = chunk["aux"].get("ID", image_id)
                elif "error" in chunk:
                    log.write(f"ERROR: {chunk['error']}\n")
                    raise BuildError(
                        f"build of {context.rendered.plan.name} failed at {step}\n"
                        + "\n".join(f"    {line}" for line in tail)
                        + f"\n  error: {chunk['error'].strip()}",
                        path=log_path,
                        hint="the full log is in the file named above",
                    )
        built = self.image(image_id or tag)
        if built is None:
            raise BuildError(f"the engine reported no image for {tag}", path=log_path)
        return built

