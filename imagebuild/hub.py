"""Step 12, hub: a ready-to-run JupyterHub (DockerSpawner) that offers exactly the published
tags an admin selects.

`hub init` writes the folder (compose file, jupyterhub_config.py, hub.toml settings, an empty
images.toml selection and a 0600 .env with generated secrets); `hub select` writes images.toml,
refusing tags the registry does not have and pinning each to its digest, so what users start
is what was published; `hub render --target z2jh` gives the same selection as a
Zero-to-JupyterHub profile list for sites on Kubernetes.
"""

import os
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import tomli_w
import yaml
from pydantic import Field

from imagebuild.errors import PublishError, RecipeError
from imagebuild.mirrors.files import FileKind, rewrite_file
from imagebuild.mirrors.profile import Mirror
from imagebuild.mirrors.rules import url_rules
from imagebuild.plan import Project
from imagebuild.publish import registry_repository
from imagebuild.recipes import StrictModel, parse_toml
from imagebuild.registry import Registry
from imagebuild.render import templates

SETTINGS_FILE, SELECTION_FILE, SECRETS_FILE = "hub.toml", "images.toml", ".env"
COMPOSE_VERSION = "v2.29.7"
SELECTION_HEADER = (
    "# The images this hub offers, written by `imagebuild hub select`: label -> image pinned to the\n"
    "# digest that was published. The hub reads this file at every spawn.\n"
)


class AuthenticatorSettings(StrictModel):
    kind: Literal["github", "generic", "native", "dummy"] = "native"
    admin_users: list[str] = []
    allowed_users: list[str] = []
    oauth_callback_url: str = ""
    authorize_url: str = ""
    token_url: str = ""
    userdata_url: str = ""
    username_claim: str = "preferred_username"


class LimitSettings(StrictModel):
    memory: str = Field(default="4G", pattern=r"^[0-9]+(\.[0-9]+)?[KMGT]?$")
    cpus: float = Field(default=2.0, gt=0)


class VolumeSettings(StrictModel):
    home: str = "jupyterhub-user-{username}"
    shared_data: str = ""
    team: str = ""


class TlsSettings(StrictModel):
    certificate: str = ""
    key: str = ""


class HubSettings(StrictModel):
    """The schema of hub.toml (read by jupyterhub_config.py inside the hub)."""

    registry: str
    hub_image: str
    port: int = Field(default=8000, gt=0, lt=65536)
    network: str = "jupyterhub"
    development: bool = False
    authenticator: AuthenticatorSettings = AuthenticatorSettings()
    limits: LimitSettings = LimitSettings()
    volumes: VolumeSettings = VolumeSettings()
    environment: dict[str, str] = {}
    tls: TlsSettings = TlsSettings()


class SelectedImage(StrictModel):
    label: str
    image: str
    tag: str
    ref: str = Field(description="registry/repository@digest: what the hub starts, whatever the tag says later")
    digest: str


class Selection(StrictModel):
    """The schema of images.toml."""

    images: list[SelectedImage] = []


@dataclass(frozen=True)
class HubFolder:
    path: Path

    @property
    def settings(self) -> HubSettings:
        """hub.toml, validated (the dummy authenticator only in development mode)."""
        settings = parse_toml(self.path / SETTINGS_FILE, HubSettings)
        if settings.authenticator.kind == "dummy" and not settings.development:
            raise RecipeError(
                "[authenticator].kind: 'dummy' lets anyone log in as anyone",
                path=self.path / SETTINGS_FILE,
                hint="choose github, generic or native; or set development = true on a test hub only",
            )
        if bool(settings.tls.certificate) != bool(settings.tls.key):
            raise RecipeError("[tls]: give both certificate and key, or neither", path=self.path / SETTINGS_FILE)
        return settings

    @property
    def selection(self) -> Selection:
        path = self.path / SELECTION_FILE
        return parse_toml(path, Selection) if path.is_file() else Selection()


def _template(name: str, **values: object) -> str:
    return templates.get_template(f"hub/{name}").render(**values)


def _write_secrets(path: Path) -> None:
    """The .env file, created with mode 0600 before a byte is written (never world-readable)."""
    values = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
        "OAUTH_CLIENT_ID": "",
        "OAUTH_CLIENT_SECRET": "",
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("# Secrets of this hub (mode 0600); never commit this file.\n")
        handle.writelines(f"{key}={value}\n" for key, value in values.items())


def init(
    folder: Path,
    project: Project,
    registry: str,
    *,
    hub_tag: str,
    mirror: Mirror | None,
    network: str,
    port: int,
    authenticator: str,
    development: bool,
    proxy_domain: str | None,
) -> list[Path]:
    """Write a new hub folder; an existing hub.toml or .env is never overwritten."""
    for name in (SETTINGS_FILE, SECRETS_FILE):
        if (folder / name).exists():
            raise RecipeError(f"{name} exists already", path=folder / name, hint="choose an empty folder for a new hub")
    if authenticator == "dummy" and not development:
        raise RecipeError("the dummy authenticator is for development only", hint="add --development, on a test hub only")
    folder.mkdir(parents=True, exist_ok=True)
    hub_image = f"{registry}/{registry_repository(project, 'hub')}:{hub_tag}"
    public_url = f"https://{proxy_domain}" if proxy_domain else f"http://localhost:{port}"
    settings = _template(
        "hub.toml.j2",
        registry=registry,
        hub_image=hub_image,
        port=port,
        network=network,
        development=str(development),
        authenticator=authenticator,
        public_url=public_url,
        memory="4G",
        cpus="2.0",
    )
    compose = _template("compose.yml.j2", hub_image=hub_image, port=port, proxy=bool(proxy_domain), domain=proxy_domain)
    get_compose = _template("get-compose.sh.j2", compose_version=COMPOSE_VERSION)
    if mirror is not None:
        compose = rewrite_file(FileKind.COMPOSE, compose, mirror.spec, source=folder / "compose.yml")
        get_compose = url_rules(mirror.spec).only("downloads").apply(get_compose)
    written = {
        SETTINGS_FILE: settings,
        "compose.yml": compose,
        "jupyterhub_config.py": resources.files("imagebuild").joinpath("templates", "hub", "jupyterhub_config.py").read_text(),
        "get-compose.sh": get_compose,
        SELECTION_FILE: SELECTION_HEADER,
    }
    for name, text in written.items():
        (folder / name).write_text(text)
    (folder / "get-compose.sh").chmod(0o755)
    _write_secrets(folder / SECRETS_FILE)
    _ = HubFolder(folder).settings  # what was written validates, or init fails here
    return [folder / name for name in (*written, SECRETS_FILE)]


@dataclass(frozen=True)
class Wanted:
    """`NAME:TAG` as given to `hub select`."""

    name: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> "Wanted":
        name, _, tag = text.partition(":")
        if not name or not tag:
            raise RecipeError(f"'{text}' is not NAME:TAG", hint="for example aiidalab:2026-11-22")
        return cls(name, tag)


def select(folder: Path, project: Project, wanted: list[Wanted]) -> Selection:
    """Pin each NAME:TAG to the digest the registry has for it and write images.toml, or change nothing."""
    hub = HubFolder(folder)
    settings = hub.settings
    registry = Registry(settings.registry)
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


def render_z2jh(selection: Selection) -> str:
    """The `singleuser.profileList` of a Zero-to-JupyterHub values file for the same selection."""
    if not selection.images:
        raise RecipeError("no images are selected", hint="run 'imagebuild hub select NAME:TAG...' first")
    profiles = [
        {
            "display_name": item.label,
            "description": item.ref,
            "default": index == 0,
            "kubespawner_override": {"image": item.ref},
        }
        for index, item in enumerate(selection.images)
    ]
    header = "# Zero-to-JupyterHub values written by `imagebuild hub render --target z2jh`.\n"
    return header + yaml.safe_dump({"singleuser": {"profileList": profiles}}, sort_keys=False)

