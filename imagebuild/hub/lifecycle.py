"""`hub up|down|status|logs`: run the hub folder's compose file and report on it.

`up` makes every image the compose file names present (engine, else the hub's registry, else
built from the project's bundled recipe and pushed), renders compose.yml from hub.toml, runs
Compose, and waits until the hub answers on its public URL. A service that fails takes the
whole hub down again (volumes kept): nothing is left half-started.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from imagebuild import pipeline
from imagebuild.build.engine import Engine
from imagebuild.build.records import ContainerInfo
from imagebuild.config import RunConfig
from imagebuild.errors import HubError, PublishError, RecipeError
from imagebuild.hub.compose import Compose, render_compose
from imagebuild.hub.folder import HUB_RECIPES
from imagebuild.model.hub import COMPOSE_FILE, SETTINGS_FILE, HubFolder, HubSettings
from imagebuild.model.project import Project
from imagebuild.publish import registry as registry_module
from imagebuild.runs import Reporter
from imagebuild.system import port_is_free

DATABASE_KEY_LABEL = "io.imagebuild.hub-database-key"
"""On the database volume: a digest of the folder's database password (not the password), naming its owner."""

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
USER_LABEL = "io.imagebuild.hub"  # on user containers (jupyterhub_config.py sets it)
READY_TIMEOUT = 600  # seconds for every service to come up: a first start initialises PostgreSQL


@dataclass(frozen=True)
class UpRequest:
    """Everything `hub up` needs, resolved by the command line."""

    folder: Path
    compose: Compose
    project: Project | None  # the project whose bundled recipes build missing images
    config: RunConfig | None  # the run's configuration; None outside a project
    reporter: Reporter
    ready_timeout: int = READY_TIMEOUT


@dataclass(frozen=True)
class UpResult:
    url: str
    compose: str
    images: dict[str, str]  # ref -> "present", "pulled" or "built"
    services: dict[str, str]  # service -> "created", "recreated", "started" or "unchanged"
    seconds: float


@dataclass(frozen=True)
class HubStatus:
    name: str
    url: str
    services: list[dict[str, str | int]]
    selected: list[dict[str, str]]
    user_servers: list[dict[str, str]] = field(default_factory=list)


def service_containers(engine: Engine, settings: HubSettings) -> dict[str, ContainerInfo]:
    return {c.labels.get(SERVICE_LABEL, c.name): c for c in engine.containers(f"{PROJECT_LABEL}={settings.name}")}


def _needed_images(settings: HubSettings) -> dict[str, str]:
    """ref -> the bundled recipe that makes it."""
    refs = {settings.hub_image: HUB_RECIPES["hub_image"], settings.database_image: HUB_RECIPES["database_image"]}
    if settings.proxy.domain:
        refs[settings.proxy_image] = HUB_RECIPES["proxy_image"]
    return refs


def ensure_images(request: UpRequest, settings: HubSettings, engine: Engine) -> dict[str, str]:
    """Each image present in the engine, pulled from the hub's registry, or built and pushed there."""
    done: dict[str, str] = {}
    for ref, recipe in _needed_images(settings).items():
        if engine.image(ref) is not None:
            done[ref] = "present"
            continue
        if not registry_module.answers(settings.registry):
            raise PublishError(
                f"{ref} is not in the engine and the registry {settings.registry} does not answer",
                path=request.folder / SETTINGS_FILE,
                hint="start it with 'imagebuild registry up', or set registry (and the image names) in hub.toml",
            )
        request.reporter.say(f"pulling {ref}")
        if engine.try_pull(ref):
            done[ref] = "pulled"
            continue
        project = request.project
        tag = ref.rsplit(":", 1)[-1]
        if project is None or request.config is None or recipe not in project.recipes or tag != "latest":
            raise PublishError(
                f"{settings.registry} has no {ref}, and it cannot be built here",
                path=request.folder / SETTINGS_FILE,
                hint=f"run 'imagebuild build {recipe} --push' in the imagebuild project, or name a published tag",
            )
        request.reporter.say(f"{settings.registry} has no {ref}: building the bundled recipe '{recipe}' and pushing it")
        pipeline.build(request.config, [recipe], reporter=request.reporter, push_to=settings.registry)
        if engine.image(ref) is None and not engine.try_pull(ref):
            raise PublishError(f"{ref} was built and pushed but the engine cannot find it", hint=f"check {settings.registry}")
        done[ref] = "built"
    return done


def _check_port(settings: HubSettings, running: dict[str, ContainerInfo], folder: Path) -> None:
    if settings.proxy.domain or ("hub" in running and running["hub"].state == "running"):
        return
    if not port_is_free(settings.port):
        raise RecipeError(
            f"port {settings.port} is taken by another program",
            path=folder / SETTINGS_FILE,
            hint="stop that program, or choose another port in hub.toml",
        )


@dataclass(frozen=True)
class DatabaseVolume:
    """The hub's database volume and the key of the folder whose database it holds: a digest of
    the folder's database password (not the password)."""

    name: str
    key: str

    @classmethod
    def of(cls, settings: HubSettings, folder: Path) -> "DatabaseVolume":
        password = HubFolder(folder).secrets["POSTGRES_PASSWORD"]
        return cls(f"{settings.name}-db-data", hashlib.sha256(f"imagebuild hub database\0{password}".encode()).hexdigest()[:16])

    def missing(self, engine: Engine, folder: Path) -> bool:
        """Whether the volume is still to be made; one another folder of the same `name` made is
        refused (its database has that folder's password: the hub could not log in). A volume
        without the label (made before imagebuild set it) is taken as it is."""
        labels = engine.volume_labels(self.name)
        if labels is not None and labels.get(DATABASE_KEY_LABEL, self.key) != self.key:
            raise RecipeError(
                f"the volume {self.name} holds the database of another hub folder of the same name (another password)",
                path=folder / SETTINGS_FILE,
                hint=f"give this hub another name in hub.toml; if that other hub is gone for good, "
                f"'docker volume rm {self.name}' deletes its data",
            )
        return labels is None


def _changes(before: dict[str, ContainerInfo], after: dict[str, ContainerInfo]) -> dict[str, str]:
    changes = {}
    for service, container in sorted(after.items()):
        previous = before.get(service)
        if previous is None:
            changes[service] = "created"
        elif previous.id != container.id:
            changes[service] = "recreated"
        elif previous.started_at != container.started_at:
            changes[service] = "started"
        else:
            changes[service] = "unchanged"
    return changes


def _wait_until_ready(request: UpRequest, settings: HubSettings, engine: Engine, before: dict[str, ContainerInfo]) -> None:
    """Every service running (and healthy where it has a check), the hub answering on its URL;
    a service that exits, restarts or turns unhealthy fails at once."""
    restarts = {service: c.restarts for service, c in before.items()}
    deadline = time.monotonic() + request.ready_timeout
    waiting_for = "the services"
    while time.monotonic() < deadline:
        services = service_containers(engine, settings)
        for service, container in services.items():
            restarted = container.restarts > restarts.get(service, 0)
            if container.state in ("exited", "dead") or restarted or container.health == "unhealthy":
                raise _failure(engine, service, container, f"{container.state}, {container.health or 'no health check'}")
        healthy = all(c.state == "running" and c.health in ("", "healthy") for c in services.values())
        if healthy and {"db", "hub"} <= services.keys():
            if settings.proxy.domain or _answers(f"{settings.public_url}/hub/health"):
                return
            waiting_for = f"{settings.public_url}"
        else:
            waiting_for = ", ".join(s for s, c in sorted(services.items()) if c.health != "healthy") or "the services"
        time.sleep(1)
    services = service_containers(engine, settings)
    service = "hub" if "hub" in services else next(iter(services), "hub")
    raise _failure(engine, service, services.get(service), f"not ready within {request.ready_timeout} s (waiting for {waiting_for})")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _failure(engine: Engine, service: str, container: ContainerInfo | None, what: str) -> HubError:
    tail = engine.container_logs(container.id, tail=12) if container else ""
    lines = "\n".join(f"    {line}" for line in tail.rstrip().splitlines())
    return HubError(f"service '{service}' did not come up ({what}); its last log lines:\n{lines}")


def up(request: UpRequest, engine: Engine) -> UpResult:
    began = time.monotonic()
    settings, _selection = HubFolder(request.folder).check()  # every file readable before anything starts
    before = service_containers(engine, settings)
    _check_port(settings, before, request.folder)
    database = DatabaseVolume.of(settings, request.folder)
    new_database = database.missing(engine, request.folder)
    images = ensure_images(request, settings, engine)
    compose_path = request.folder / COMPOSE_FILE
    rendered = render_compose(settings, (request.folder / SETTINGS_FILE).read_text())
    if not compose_path.is_file() or compose_path.read_text() != rendered:
        compose_path.write_text(rendered)
    request.reporter.say(f"starting the hub with {' '.join(request.compose.command)} {request.compose.version}")
    if new_database:  # made here, not by Compose: it is external in the compose file
        engine.create_volume(database.name, {DATABASE_KEY_LABEL: database.key})
    started = request.compose.run(request.folder, settings.name, "up", "-d", "--remove-orphans")
    try:
        if started.returncode != 0:
            raise HubError(
                f"{' '.join(request.compose.command)} up failed: " + (started.stderr.strip().splitlines() or ["(no output)"])[-1],
                path=request.folder / COMPOSE_FILE,
            )
        _wait_until_ready(request, settings, engine, before)
    except HubError:
        request.compose.run(request.folder, settings.name, "down")  # volumes are kept, but one made by this failed start
        if new_database:
            engine.remove_volume(database.name)
        raise
    after = service_containers(engine, settings)
    return UpResult(
        url=settings.public_url,
        compose=f"{' '.join(request.compose.command)} {request.compose.version}",
        images=images,
        services=_changes(before, after),
        seconds=round(time.monotonic() - began, 1),
    )


def user_servers(engine: Engine, settings: HubSettings) -> list[ContainerInfo]:
    return engine.containers(f"{USER_LABEL}={settings.name}")


def down(folder: Path, compose: Compose, engine: Engine, say: Callable[[str], None]) -> list[str]:
    """Stop user servers and the services; every volume (database, homes) is kept."""
    settings = HubFolder(folder).settings
    stopped = []
    for container in user_servers(engine, settings):
        say(f"stopping {container.name}")
        engine.remove_container(container.id)
        stopped.append(container.name)
    result = compose.run(folder, settings.name, "down")
    if result.returncode != 0:
        raise HubError(f"{' '.join(compose.command)} down failed: {result.stderr.strip()[-500:]}", path=folder / COMPOSE_FILE)
    return stopped


def status(folder: Path, engine: Engine) -> HubStatus:
    hub = HubFolder(folder)
    settings = hub.settings
    services: list[dict[str, str | int]] = [
        {"service": service, "container": c.name, "state": c.state, "health": c.health or "-", "image": c.image, "restarts": c.restarts}
        for service, c in sorted(service_containers(engine, settings).items())
    ]
    servers = [
        {"user": c.environment.get("JUPYTERHUB_USER", "?"), "container": c.name, "image": c.image, "state": c.state, "since": c.started_at[:19]}
        for c in user_servers(engine, settings)
    ]
    selected = [{"label": item.label, "ref": item.ref} for item in hub.selection.images]
    return HubStatus(name=settings.name, url=settings.public_url, services=services, selected=selected, user_servers=servers)


def logs(folder: Path, compose: Compose, service: str | None, tail: int) -> str:
    settings = HubFolder(folder).settings
    if service is not None and service not in ("db", "hub", "proxy"):
        raise RecipeError(f"no service '{service}'", hint="the services are db, hub and (with [proxy].domain) proxy")
    result = compose.run(folder, settings.name, "logs", "--no-color", "--tail", str(tail), *([service] if service else []))
    return result.stdout + result.stderr
