"""`hub init` writes a hub folder; `hub select` writes its images.toml.

The folder holds hub.toml (settings), images.toml (the selection), jupyterhub_config.py (reads
both inside the hub), compose.yml (rendered from hub.toml) and .env (secrets, 0600).
"""

import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomli_w

from imagebuild.build.render import templates
from imagebuild.errors import PublishError, RecipeError
from imagebuild.hub.compose import render_compose
from imagebuild.model.hub import (
    COMPOSE_FILE,
    SECRETS_FILE,
    SELECTION_FILE,
    SELECTION_HEADER,
    SETTINGS_FILE,
    HubFolder,
    HubSettings,
    SelectedImage,
    Selection,
)
from imagebuild.model.names import TAG, image_reference
from imagebuild.model.project import Project
from imagebuild.model.toml import validated
from imagebuild.publish.push import registry_repository
from imagebuild.publish.registry import Registry

AUTHENTICATORS = ("github", "generic", "native", "dummy")
# The bundled recipes the compose file runs: hub, its database, its TLS proxy.
HUB_RECIPES = {"hub_image": "hub", "database_image": "postgres", "proxy_image": "proxy"}
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")


def hub_name(folder: Path) -> str:
    """A compose project name both Compose 1 and 2 keep as it is: lower-case letters and digits."""
    name = re.sub(r"[^a-z0-9]", "", folder.resolve().name.lower()).lstrip("0123456789")
    return name[:31] or "hub"


def _write_secrets(path: Path) -> None:
    """The .env file, created with mode 0600 before a byte is written (never world-readable)."""
    values = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "IMAGEBUILD_HUB_API_TOKEN": secrets.token_hex(32),
        "OAUTH_CLIENT_ID": "",
        "OAUTH_CLIENT_SECRET": "",
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("# Secrets of this hub (mode 0600); never commit this file. OAuth hubs: fill in the client.\n")
        handle.writelines(f"{key}={value}\n" for key, value in values.items())


@dataclass(frozen=True)
class HubInit:
    """What `hub init` is asked for."""

    folder: Path
    registry: str
    admin: str
    hub_tag: str = "latest"
    port: int = 8000
    authenticator: str = "native"
    development: bool = False
    proxy_domain: str | None = None


def init(project: Project, request: HubInit) -> list[Path]:
    """Write a new hub folder; an existing hub.toml or .env is never overwritten."""
    folder = request.folder
    for name in (SETTINGS_FILE, SECRETS_FILE):
        if (folder / name).exists():
            raise RecipeError(f"{name} exists already", path=folder / name, hint="choose an empty folder for a new hub")
    if request.authenticator not in AUTHENTICATORS:
        raise RecipeError(f"--authenticator: unknown kind '{request.authenticator}'", hint=", ".join(AUTHENTICATORS))
    if request.authenticator == "dummy" and not request.development:
        raise RecipeError("the dummy authenticator is for development only", hint="add --development, on a test hub only")
    if not USER_NAME.match(request.admin):
        raise RecipeError(f"--admin: '{request.admin}' is not a user name", hint="lower-case letters, digits, '.', '_', '-' or '@'")
    images = {
        key: f"{request.registry}/{registry_repository(project, recipe)}:{request.hub_tag}" for key, recipe in HUB_RECIPES.items()
    }
    name = hub_name(folder)
    public_url = f"https://{request.proxy_domain}" if request.proxy_domain else f"http://127.0.0.1:{request.port}"
    settings = templates.get_template("hub/hub.toml.j2").render(
        name=name,
        registry=request.registry,
        images=images,
        port=request.port,
        development=str(request.development).lower(),
        authenticator=request.authenticator,
        admin=request.admin,
        public_url=public_url,
        proxy_domain=request.proxy_domain or "",
    )
    try:  # what would be written validates, or nothing is
        hub_settings = validated(tomllib.loads(settings), folder / SETTINGS_FILE, HubSettings)
    except RecipeError as error:
        raise RecipeError(
            f"hub init: the options give an invalid {SETTINGS_FILE}: {error.message}",
            path=folder,
            hint=f"{error.hint}; correct the option (--registry, --hub-tag, --proxy-domain, ...); nothing was written",
        ) from None
    folder.mkdir(parents=True, exist_ok=True)
    written = {
        SETTINGS_FILE: settings,
        COMPOSE_FILE: render_compose(hub_settings, settings),
        "jupyterhub_config.py": resources.files("imagebuild").joinpath("templates", "hub", "jupyterhub_config.py").read_text(),
        SELECTION_FILE: SELECTION_HEADER,
    }
    for file_name, text in written.items():
        (folder / file_name).write_text(text)
    _write_secrets(folder / SECRETS_FILE)
    return [folder / file_name for file_name in (*written, SECRETS_FILE)]


@dataclass(frozen=True)
class Wanted:
    """`NAME:TAG` as given to `hub select`."""

    name: str
    tag: str

    @classmethod
    def parse(cls, text: str, project: Project) -> "Wanted":
        """Checked against the project's images and Docker's tag grammar, before any registry is asked."""
        images = project.root / project.config.images
        known = f"the images are: {', '.join(sorted(project.recipes))}"
        if "://" in text:
            raise RecipeError(
                f"hub select: '{text}' is not NAME:TAG of this project", path=images, hint=f"give NAME:TAG, no registry or URL; {known}"
            )
        name, _, tag = text.partition(":")
        if not name or not tag:
            raise RecipeError(f"hub select: '{text}' is not NAME:TAG", path=images, hint="for example aiidalab:2026-11-22")
        if name not in project.recipes:
            raise RecipeError(f"hub select: '{name}' is not an image of this project", path=images, hint=known)
        if not TAG.fullmatch(tag):
            raise RecipeError(
                f"hub select: '{text}': '{tag}' is not a valid tag", hint="letters, digits, '_', '.' and '-', at most 128"
            )
        return cls(name, tag)


def select(folder: Path, project: Project, wanted: list[Wanted], login: tuple[str, str] | None = None) -> Selection:
    """Pin each NAME:TAG to the digest the registry has for it and write images.toml, or change nothing."""
    settings = HubFolder(folder).settings
    for item in wanted:
        reference = f"{settings.registry}/{registry_repository(project, item.name)}:{item.tag}"
        try:
            image_reference(reference)
        except ValueError as error:
            raise RecipeError(
                f"hub select: {item.name}:{item.tag} would be {error}",
                path=project.root / project.config.images / item.name,
                hint="name the recipe's folder in lower case (letters, digits, '.', '_', '-')",
            ) from None
    registry = Registry(settings.registry, login)
    chosen = []
    for item in wanted:
        repository = registry_repository(project, item.name)
        remote = registry.image(repository, item.tag)
        if remote is None:
            published = registry.tags(repository)
            raise PublishError(
                f"{settings.registry}/{repository} has no tag '{item.tag}'; the selection was not changed",
                hint=f"published tags: {', '.join(published[-12:]) or '(none)'}; publish with 'imagebuild push {item.name}'",
            )
        chosen.append(
            SelectedImage(
                label=f"{item.name} {item.tag}",
                image=item.name,
                tag=item.tag,
                ref=f"{settings.registry}/{repository}@{remote.digest}",
                digest=remote.digest,
            )
        )
    selection = Selection(images=chosen)
    path = folder / SELECTION_FILE
    staging = path.with_name(f".{SELECTION_FILE}.tmp")
    staging.write_text(SELECTION_HEADER + tomli_w.dumps(selection.model_dump()))
    staging.replace(path)  # atomic: the hub reads the old selection or the new one
    return selection
