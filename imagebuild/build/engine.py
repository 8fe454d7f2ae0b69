"""Step 7, build, in the Docker engine: the only module that imports `docker`.

It finds or starts an engine, imports bootstrapped root file systems, builds contexts with
BuildKit through a docker CLI or with the SDK's classic builder (builders.py chooses), reads
images back by their content-hash label and runs throwaway containers (smoke, version tags).
Whatever the engine or its connection answers with an error becomes an EngineError naming
what was being done.
"""

import contextlib
import io
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import docker.models.images
import requests
from docker.api.build import process_dockerfile
from docker.models.containers import Container
from docker.utils.build import tar

from imagebuild.build.builders import Builder, build_failed, build_with_cli
from imagebuild.build.context import BuildContext
from imagebuild.build.records import ContainerInfo, ContainerRun, EngineStatus, Image, PushFailure, pushed_digest
from imagebuild.errors import BuildError, EngineError

__all__ = ["ContainerInfo", "ContainerRun", "Engine", "EngineStatus", "Image", "PushFailure", "context_tar", "engine_errors", "status"]
"""The engine's API: the records it answers with live in build/records.py and are named here too."""



@contextlib.contextmanager
def engine_errors(doing: str) -> Iterator[None]:
    """The engine's refusals (docker.errors) and a broken connection to it (requests) as one
    EngineError naming what was being done, never a traceback."""
    try:
        yield
    except docker.errors.APIError as error:
        raise EngineError(f"{doing}: the engine answered: {error.explanation or error}") from None
    except docker.errors.DockerException as error:
        raise EngineError(f"{doing}: {error}") from None
    except requests.RequestException as error:
        raise EngineError(f"{doing}: the connection to the engine broke ({error})", hint="run 'imagebuild engine status'") from None


def status() -> EngineStatus:
    try:
        client = docker.from_env(timeout=5)
        version = client.version()
        return EngineStatus(True, f"engine at {client.api.base_url}", f"{version['Version']} (API {version['ApiVersion']})")
    except (docker.errors.DockerException, requests.RequestException) as exc:
        return EngineStatus(False, str(exc))


def context_tar(path: Path, dockerfile: str | None) -> bytes:
    """The build context `docker build` would send for the folder `path` and its `dockerfile`
    (None: a Dockerfile read apart), with the folder's .dockerignore honoured."""
    ignore = path / ".dockerignore"
    lines = [line.strip() for line in ignore.read_text().splitlines()] if ignore.is_file() else []
    exclude = [line for line in lines if line and not line.startswith("#")]
    return tar(path, exclude=exclude, dockerfile=process_dockerfile(dockerfile, str(path))).read(-1)


class Engine:
    """A connected engine. Build, import and look up images by content hash."""

    def __init__(self) -> None:
        try:
            self.client = docker.from_env(timeout=600)
            self.client.ping()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise EngineError(f"no Docker engine answers ({exc})", hint="run 'imagebuild engine up'") from None

    def image(self, ref: str) -> Image | None:
        with engine_errors(f"looking up image {ref}"):
            try:
                return _record(self.client.images.get(ref))
            except docker.errors.ImageNotFound:
                return None

    def containers(self, label: str) -> list[ContainerInfo]:
        """Containers, running or not, carrying `label` (KEY or KEY=VALUE)."""
        with engine_errors(f"listing the containers labelled {label}"):
            return [ContainerInfo.of(container.attrs) for container in self.client.containers.list(all=True, filters={"label": label})]

    def container_logs(self, container_id: str, tail: int = 20) -> str:
        with engine_errors(f"reading the log of container {container_id[:12]}"):
            try:
                return self.client.containers.get(container_id).logs(tail=tail).decode(errors="replace")
            except docker.errors.NotFound:
                return ""

    def remove_container(self, container_id: str) -> None:
        """Stop (with a grace period) and remove, and wait until it is gone (a container created
        with auto-remove goes by itself once stopped; then the engine answers 409 to a remove)."""
        with engine_errors(f"removing container {container_id[:12]}"):
            try:
                container = self.client.containers.get(container_id)
                container.stop(timeout=30)
                container.remove(force=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with engine_errors(f"waiting for container {container_id[:12]} to go"):
                try:
                    self.client.containers.get(container_id)
                except docker.errors.NotFound:
                    return
            time.sleep(0.5)
        raise EngineError(f"container {container_id[:12]} was not removed within 120 s", hint="see 'docker ps -a'")

    def volume_labels(self, name: str) -> dict[str, str] | None:
        """The labels of volume `name`, or None when there is no such volume."""
        with engine_errors(f"looking up volume {name}"):
            try:
                return dict(self.client.volumes.get(name).attrs.get("Labels") or {})
            except docker.errors.NotFound:
                return None

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        with engine_errors(f"creating volume {name}"):
            self.client.volumes.create(name, labels=labels)

    def remove_volume(self, name: str) -> None:
        with engine_errors(f"removing volume {name}"):
            try:
                self.client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                return

    def try_pull(self, ref: str, credentials: tuple[str, str] | None = None) -> bool:
        auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
        with engine_errors(f"pulling {ref}"):
            try:
                self.client.images.pull(ref, auth_config=auth)
            except docker.errors.APIError:
                return False
        return True

    def import_rootfs(self, tarball: Path, ref: str, changes: list[str]) -> Image:
        repository, tag = ref.rsplit(":", 1)
        with engine_errors(f"importing {tarball} as {ref}"):
            self.client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)
        imported = self.image(ref)
        if imported is None:
            raise EngineError(f"importing {tarball} as {ref} left no image", path=tarball)
        return imported

    def images_with_label(self, key: str, value: str | None = None) -> list[Image]:
        """Tagged images carrying the label (intermediates of failed builds inherit labels too)."""
        selector = f"{key}={value}" if value is not None else key
        with engine_errors(f"listing the images labelled {selector}"):
            return [_record(image) for image in self.client.images.list(filters={"label": selector, "dangling": False})]

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
        with engine_errors(f"removing the tag {ref}"):
            self.client.images.remove(ref, noprune=True)

    def run_script(self, ref: str, script: str) -> str:
        """The output of a bash script in a throwaway container of `ref`, without network."""
        with engine_errors(f"running a script in {ref}"):
            output = self.client.containers.run(ref, ["bash", "-c", script], remove=True, network_mode="none")
        return bytes(output).decode(errors="replace")

    def run_offline(
        self, ref: str, command: list[str], *, environment: dict[str, str], put: bytes, collect: str, timeout: float
    ) -> ContainerRun:
        """Run `command` in a throwaway container of `ref` without network, the tar `put` unpacked
        in /tmp first; returns its exit status, output and the file `collect`. Always removed."""
        with engine_errors(f"running a container of {ref}"):
            container = self.client.containers.create(ref, command=command, network_mode="none", environment=environment)
            try:
                container.put_archive("/tmp", put)
                container.start()
                try:
                    exit_status: int | None = int(container.wait(timeout=timeout)["StatusCode"])
                except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                    exit_status = None
                logs = container.logs().decode(errors="replace")
                return ContainerRun(exit_status, logs, _file_in(container, collect))
            finally:
                container.remove(force=True)

    def read_file(self, ref: str, path: str) -> bytes | None:
        """A file of image `ref`, copied out of a created (never started) container; None if absent."""
        with engine_errors(f"reading {path} of {ref}"):
            container = self.client.containers.create(ref, ["true"], network_disabled=True)
            try:
                return _file_in(container, path)
            finally:
                container.remove(force=True)

    def tag(self, image: Image, ref: str) -> None:
        repository, tag = ref.rsplit(":", 1)
        with engine_errors(f"tagging {image.id[:19]} as {ref}"):
            self.client.api.tag(image.id, repository, tag)

    def build(
        self,
        context: BuildContext,
        *,
        builder: Builder,
        tag: str,
        labels: dict[str, str],
        buildargs: dict[str, str],
        secret: Path | None = None,
        nocache: bool = False,
        log_path: Path,
        on_step: Callable[[str], None],
        environ: dict[str, str],
    ) -> Image:
        """Build on host networking (loopback mirrors and build environment) with `builder`;
        `secret` is the build environment BuildKit mounts (the classic builder gets it through
        `buildargs` instead). A failure names the image, the step and its last lines."""
        with log_path.open("w", encoding="utf-8", buffering=1) as log:  # line by line: `tail -f` follows a build
            if builder.uses_buildkit:
                image_id = build_with_cli(context, builder, tag, labels, buildargs, secret, nocache, log, on_step, environ)
            else:
                image_id = self._build_classic(context, tag, labels, buildargs, nocache, log, on_step)
        built = self.image(image_id or tag)
        if built is None:
            raise BuildError(f"the engine reported no image for {tag}", path=log_path)
        return built

    def _build_classic(
        self,
        context: BuildContext,
        tag: str,
        labels: dict[str, str],
        buildargs: dict[str, str],
        nocache: bool,
        log: io.TextIOWrapper,
        on_step: Callable[[str], None],
    ) -> str | None:
        tail: deque[str] = deque(maxlen=25)
        step = "(before the first step)"
        image_id = None
        sent = context.classic_tar()
        with engine_errors(f"building {tag}"):
            stream = self.client.api.build(
                fileobj=io.BytesIO(sent), custom_context=True, tag=tag, labels=labels, buildargs=buildargs,
                network_mode="host", rm=True, forcerm=True, nocache=nocache, pull=False, decode=True,
            )
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
                    raise build_failed(context, step, tail, chunk["error"], log)
        return image_id


def _record(image: docker.models.images.Image) -> Image:
    return Image(id=image.attrs["Id"], tags=tuple(image.tags), labels=image.labels, size=image.attrs.get("Size", 0))


def _file_in(container: Container, path: str) -> bytes | None:
    """The file at `path` in a container (created or stopped), or None when it has none."""
    try:
        stream, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.extractfile(archive.getmembers()[0])
        return member.read() if member else None
