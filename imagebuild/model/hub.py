"""The files of a hub folder as typed models: hub.toml (settings), images.toml (the selection,
written by `hub select`) and .env (secrets, mode 0600). jupyterhub_config.py inside the hub
reads the same files; the checks here run before anything starts (`hub check`, `hub up`)."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from imagebuild.errors import RecipeError
from imagebuild.model.names import (
    ImageReference,
    RegistryHost,
    env_names,
    host_name,
    image_reference,
    ip_address,
    optional,
    tag,
    web_url,
)
from imagebuild.model.text import read_text
from imagebuild.model.toml import StrictModel, parse_toml

SETTINGS_FILE, SELECTION_FILE, SECRETS_FILE, COMPOSE_FILE = "hub.toml", "images.toml", ".env", "compose.yml"
SELECTION_HEADER = (
    "# The images this hub offers, written by `imagebuild hub select`: label -> image pinned to the\n"
    "# digest that was published. The hub reads this file at every spawn.\n"
)
# What DockerSpawner fills into volume names (DockerSpawner.template_namespace: `{username}` and
# `{safe_username}` escaped for Docker, `{raw_username}` as typed; `{servername}` escaped likewise)
VOLUME_PLACEHOLDERS = {"username", "safe_username", "raw_username", "servername", "raw_servername", "imagename", "prefix"}


OptionalUrl = Annotated[str, AfterValidator(optional(web_url))]


class AuthenticatorSettings(StrictModel):
    kind: Literal["github", "generic", "native", "dummy"] = "native"
    admin_users: list[str] = Field(default_factory=list)
    allowed_users: list[str] = Field(default_factory=list)
    allow_all: bool = Field(default=False, description="every account of the OAuth provider may log in")
    open_signup: bool = Field(default=False, description="native: sign-ups need no admin approval")
    allowed_organizations: list[str] = Field(default=[], description="github: members of these organisations")
    allowed_groups: list[str] = Field(default=[], description="generic: members of these groups (claim_groups_key)")
    claim_groups_key: str = "groups"
    oauth_callback_url: OptionalUrl = Field(default="", description="the hub's public URL + /hub/oauth_callback")
    authorize_url: OptionalUrl = Field(default="", description="generic: the provider's authorization endpoint")
    token_url: OptionalUrl = Field(default="", description="generic: the provider's token endpoint")
    userdata_url: OptionalUrl = Field(default="", description="generic: the provider's userinfo endpoint")
    username_claim: str = "preferred_username"
    scope: list[str] = Field(default=["openid", "profile", "email"], description="generic: scopes asked of the provider")

    def who_may_log_in(self) -> list[str]:
        """What an OAuth hub.toml says about who may log in (empty: nobody was named)."""
        named = [*self.allowed_users, *self.admin_users]
        if self.kind == "github":
            named += self.allowed_organizations
        if self.kind == "generic":
            named += self.allowed_groups
        return named


class LimitSettings(StrictModel):
    memory: str = Field(default="4G", pattern=r"^[0-9]+(\.[0-9]+)?[KMGT]?$")
    cpus: float = Field(default=2.0, gt=0)


def _volume_template(value: str) -> str:
    placeholders = set(re.findall(r"{([^{}]*)}", value))
    unknown = placeholders - VOLUME_PLACEHOLDERS
    if unknown:
        known = ", ".join(f"{{{name}}}" for name in sorted(VOLUME_PLACEHOLDERS))
        raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}; DockerSpawner fills in {known}")
    if value.count("{") != value.count("}") or re.search(r"{[^{}]*{|}[^{}]*}", value):
        raise ValueError(f"{value!r} has unbalanced braces; write placeholders as {{username}}")
    if value and not re.fullmatch(r"[A-Za-z0-9_.{}/-]+", value):
        raise ValueError(f"{value!r} is not a volume name or absolute host path")
    if value and not value.startswith("/") and not re.match(r"[A-Za-z0-9{]", value):
        raise ValueError(f"{value!r}: a volume name starts with a letter or digit (a host path with '/')")
    return value


class VolumeSettings(StrictModel):
    home: str = "jupyterhub-user-{username}"
    shared_data: str = ""
    team: str = ""

    _check = field_validator("home", "shared_data", "team")(_volume_template)


class SpawnSettings(StrictModel):
    """How long a spawn may take: a first start of a large image on a slow host takes a minute."""

    start_timeout: int = Field(default=600, ge=30, description="seconds until the container must run")
    http_timeout: int = Field(default=300, ge=30, description="seconds until its server must answer")


class ProxySettings(StrictModel):
    domain: Annotated[str, AfterValidator(optional(host_name))] = Field(
        default="", description="serve https://DOMAIN through Caddy (ports 80 and 443): a DNS name, no scheme or path"
    )
    http_port: int = Field(default=80, gt=0, lt=65536)
    https_port: int = Field(default=443, gt=0, lt=65536)


class HubSettings(StrictModel):
    """The schema of hub.toml."""

    name: str = Field(default="hub", pattern=r"^[a-z][a-z0-9]{0,30}$", description="compose project, network and volume prefix")
    registry: RegistryHost = Field(description="registry host[:port] the offered images are pulled from")
    hub_image: ImageReference = Field(description="the hub's image reference, e.g. 127.0.0.1:5000/imagebuild/hub:latest")
    database_image: ImageReference = Field(description="the database's image reference")
    proxy_image: Annotated[str, AfterValidator(optional(image_reference))] = Field(
        default="", description="the TLS proxy's image reference (needed with [proxy].domain)"
    )
    port: int = Field(default=8000, gt=0, lt=65536)
    bind_address: Annotated[str, AfterValidator(ip_address)] = Field(
        default="127.0.0.1", description="the IP address plain http listens on; 0.0.0.0 for every interface"
    )
    development: bool = False
    idle_timeout: int = Field(default=3600, ge=0, description="seconds; idle user servers are stopped (0: never)")
    spawn: SpawnSettings = SpawnSettings()
    authenticator: AuthenticatorSettings = AuthenticatorSettings()
    limits: LimitSettings = LimitSettings()
    volumes: VolumeSettings = VolumeSettings()
    environment: dict[str, str] = Field(default_factory=dict)
    proxy: ProxySettings = ProxySettings()

    _variable_names = field_validator("environment")(env_names)

    @field_validator("environment")
    @classmethod
    def _known_settings(cls, environment: dict[str, str]) -> dict[str, str]:
        """Settings of the bundled images that a user's container could not use as written."""
        registry = environment.get("AIIDALAB_REGISTRY")
        if registry is not None:
            try:
                web_url(registry.rstrip("/"))
            except ValueError as error:
                raise ValueError(
                    f"AIIDALAB_REGISTRY {error}: the AiiDAlab app registry's base URL, under which the App Store "
                    "reads apps_index.json (e.g. https://aiidalab.github.io/aiidalab-registry/api/v1)"
                ) from None
        return environment

    @model_validator(mode="after")
    def _safe(self) -> "HubSettings":
        auth = self.authenticator
        if auth.kind == "dummy" and not self.development:
            raise ValueError("[authenticator].kind: 'dummy' lets anyone log in as anyone; set development = true on a test hub only")
        if auth.kind in ("github", "generic") and not auth.allow_all and not auth.who_may_log_in():
            raise ValueError(
                f"[authenticator]: a {auth.kind} hub must say who may log in: allowed_users"
                + (", allowed_organizations" if auth.kind == "github" else ", allowed_groups")
                + " or admin_users, or allow_all = true to admit every account of the provider"
            )
        if auth.kind == "native" and not auth.admin_users:
            raise ValueError("[authenticator].admin_users: a native hub needs an admin to approve sign-ups")
        if self.proxy.domain and not self.proxy_image:
            raise ValueError("proxy_image: [proxy].domain is set, so the hub needs a proxy image")
        return self

    @property
    def network(self) -> str:
        return f"{self.name}-jupyterhub"

    @property
    def public_url(self) -> str:
        if self.proxy.domain:
            port = "" if self.proxy.https_port == 443 else f":{self.proxy.https_port}"
            return f"https://{self.proxy.domain}{port}"
        host = "127.0.0.1" if self.bind_address in ("127.0.0.1", "0.0.0.0") else self.bind_address
        return f"http://{host}:{self.port}"


class SelectedImage(StrictModel):
    label: str
    image: str
    tag: Annotated[str, AfterValidator(tag)]
    ref: ImageReference = Field(description="registry/repository@digest: what the hub starts, whatever the tag says later")
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="the image's digest, sha256:<64 hex digits>")


class Selection(StrictModel):
    """The schema of images.toml."""

    images: list[SelectedImage] = Field(default_factory=list)


def read_secrets(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of .env (comments and blank lines skipped)."""
    text = read_text(path, missing_hint="a hub folder is written by 'imagebuild hub init'")
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@dataclass(frozen=True)
class HubFolder:
    path: Path

    @property
    def settings(self) -> HubSettings:
        """hub.toml, validated: unsafe settings are refused here, before any container starts."""
        if not (self.path / SETTINGS_FILE).exists():
            raise RecipeError(
                f"no {SETTINGS_FILE} here", path=self.path, hint="write a hub with 'imagebuild hub init DIR --admin NAME'"
            )
        return parse_toml(self.path / SETTINGS_FILE, HubSettings)

    @property
    def selection(self) -> Selection:
        path = self.path / SELECTION_FILE
        return parse_toml(path, Selection) if path.exists() else Selection()

    @property
    def secrets(self) -> dict[str, str]:
        return read_secrets(self.path / SECRETS_FILE)

    def check(self) -> tuple[HubSettings, Selection]:
        """Everything `hub up` needs from the folder, or the first problem (the secrets' values are
        never part of a message)."""
        settings, selection, secrets = self.settings, self.selection, self.secrets
        required = ["POSTGRES_PASSWORD", "IMAGEBUILD_HUB_API_TOKEN"]
        if settings.authenticator.kind in ("github", "generic"):
            required += ["OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET"]
        for key in required:
            if not secrets.get(key):
                raise RecipeError(
                    f"{key} is empty", path=self.path / SECRETS_FILE, hint=f"set {key}=... (the OAuth app's client, for OAuth hubs)"
                )
        return settings, selection
