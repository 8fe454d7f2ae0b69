"""Mirror profiles: the typed `mirrors/<name>.toml` files an admin writes.

A profile names where each kind of download should go instead of upstream. Every section is
optional; an empty profile changes nothing. Secrets never live in the file: a credential names
the environment variables that hold it, and URLs with a user or password are rejected.
"""

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from imagebuild.errors import RecipeError
from imagebuild.model.names import EnvName, HostName, registry_host
from imagebuild.model.project import PROJECT_FILE
from imagebuild.model.routes import (
    APT_UPSTREAMS,
    COMPOSE_UPSTREAM,
    CONDA_ALIAS_UPSTREAMS,
    PYPI_UPSTREAMS,
    Route,
    conda_channel_upstreams,
    rewrite_image_ref,
    unsettled,
)
from imagebuild.model.toml import StrictModel, parse_toml

MIRRORS_DIR = "mirrors"
NO_MIRROR = "none"


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.username or parts.password:  # checked first: the URL is not repeated
        raise ValueError(
            "must not contain a user or password; name the environment variables that hold them in [[credentials]]"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    if "#" in value or any(c.isspace() for c in value):
        raise ValueError(f"must not contain '#' or spaces, got {value!r}")
    return value.rstrip("/")


def _registry_prefix(value: str) -> str:
    """A registry host (Docker's rule: it has a '.' or ':' or is localhost) and an optional path;
    'mirror/hub' would be read as a Docker Hub repository and rewritten again."""
    host = value.split("/", 1)[0]
    well_formed = re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?(/[a-z0-9._/-]+)?", value)
    if "://" in value or "@" in value or not well_formed or not ("." in host or ":" in host or host == "localhost"):
        raise ValueError(
            f"must be a registry host with an optional path, such as 'docker.m.daocloud.io', got {value!r}"
        )
    return value.rstrip("/")


Url = Annotated[str, AfterValidator(_url)]
RegistryPrefix = Annotated[str, AfterValidator(_registry_prefix)]


class PypiSection(StrictModel):
    index_url: Url = Field(description="replaces https://pypi.org/simple for pip and uv")
    extra_index_urls: list[Url] = Field(default_factory=list)
    trusted_hosts: list[HostName] = Field(default=[], description="hosts pip and uv may reach without TLS verification")


class CondaSection(StrictModel):
    channel_alias: Url | None = Field(default=None, description="replaces https://conda.anaconda.org for any channel")
    channels: dict[str, Url] = Field(default={}, description="channel name (conda-forge, pkgs/main) -> its mirror URL")


class AptSection(StrictModel):
    debian: Url | None = Field(default=None, description="replaces http://deb.debian.org/debian")
    debian_security: Url | None = Field(default=None, description="replaces http://security.debian.org/debian-security")
    ubuntu: Url | None = Field(default=None, description="replaces http://archive.ubuntu.com/ubuntu")
    ubuntu_security: Url | None = Field(default=None, description="replaces http://security.ubuntu.com/ubuntu")


class Credential(StrictModel):
    host: str = Field(description="host[:port] the credential is sent to")
    username_env: EnvName = Field(description="the NAME of the environment variable that holds the user name")
    password_env: EnvName = Field(description="the NAME of the environment variable that holds the password or token")

    @field_validator("host")
    @classmethod
    def _bare_host(cls, host: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", host):
            raise ValueError(f"must be a host name with an optional port, such as 'pypi.example.org', got {host!r}")
        return host


class ServeSection(StrictModel):
    pypi: str | None = Field(
        default=None,
        description="a folder filled by 'imagebuild mirror sync'; imagebuild serves it at [pypi].index_url while it builds",
    )


class MirrorProfile(StrictModel):
    """The schema of mirrors/<name>.toml."""

    description: str = ""
    runtime: bool = Field(default=False, description="also configure the mirror inside the image, for its users")
    ca_cert: str | None = Field(default=None, description="a CA bundle (PEM) to trust while building")
    pypi: PypiSection | None = None
    conda: CondaSection | None = None
    apt: AptSection | None = None
    registry: dict[str, RegistryPrefix] = Field(default={}, description="registry (docker.io, quay.io) -> mirror prefix")
    compose: Url | None = Field(
        default=None, description="replaces https://github.com/docker/compose/releases/download"
    )
    downloads: dict[Url, Url] = Field(default={}, description="any other tool download: URL prefix -> mirror prefix")
    git: dict[Url, Url] = Field(default={}, description="git host prefix (https://github.com/) -> proxy prefix")
    credentials: list[Credential] = Field(default_factory=list)
    serve: ServeSection = ServeSection()

    @field_validator("registry")
    @classmethod
    def _registry_hosts(cls, registry: dict[str, str]) -> dict[str, str]:
        for host in registry:
            registry_host(host)
        return registry

    def routes(self, *, extra_debian_upstreams: tuple[str, ...] = ()) -> tuple[Route, ...]:
        """Every URL prefix route the profile implies, purpose-tagged ('apt:debian', 'git', ...), specific
        ones (a named conda channel) before general ones (the alias).

        `extra_debian_upstreams` adds archives that stand for Debian upstream on this host, such as
        the archive a root image was bootstrapped from.
        """
        routes: list[Route] = []
        if self.pypi is not None:
            routes.append(Route(PYPI_UPSTREAMS, self.pypi.index_url, "pypi"))
        if self.conda is not None:
            for channel, mirror in sorted(self.conda.channels.items()):
                routes.append(Route(conda_channel_upstreams(channel), mirror, f"conda:{channel}"))
            if self.conda.channel_alias:
                routes.append(Route(CONDA_ALIAS_UPSTREAMS, self.conda.channel_alias, "conda:channel_alias"))
        if self.apt is not None:
            for field, upstreams in APT_UPSTREAMS.items():
                mirror = getattr(self.apt, field)
                if mirror:
                    extra = tuple(u.rstrip("/") for u in extra_debian_upstreams) if field == "debian" else ()
                    candidates = tuple(dict.fromkeys((*upstreams, *extra)))
                    routes.append(Route(tuple(u for u in candidates if u != mirror), mirror, f"apt:{field}"))
        if self.compose:
            routes.append(Route((COMPOSE_UPSTREAM,), self.compose, "downloads:compose"))
        for upstream, mirror in sorted(self.downloads.items(), key=lambda item: -len(item[0])):
            routes.append(Route((upstream,), mirror, "downloads"))
        for upstream, mirror in sorted(self.git.items(), key=lambda item: -len(item[0])):
            routes.append(Route((upstream,), mirror, "git"))
        return tuple(route for route in routes if route.upstreams)

    @model_validator(mode="after")
    def _settles(self) -> "MirrorProfile":
        """A mirror URL that an upstream route would match again makes rewriting non-idempotent."""
        for owner, other in unsettled(self.routes()):
            raise ValueError(
                f"the mirror for {owner.purpose} ({owner.mirror}) would itself be rewritten by the rule for "
                f"{other.purpose}; a mirror URL must not embed an upstream URL after a character other than a slash"
            )
        for registry, prefix in self.registry.items():
            probe = rewrite_image_ref(f"{registry}/probe/image:1", self.registry)
            if rewrite_image_ref(probe, self.registry) != probe:
                raise ValueError(
                    f"[registry]: the mirror of {registry} ({prefix}) is itself a registry with a mirror here; "
                    "a mirrored reference would be rewritten again"
                )
        return self


@dataclass(frozen=True)
class Mirror:
    """A validated profile with its files resolved; `name` is what the user selected."""

    name: str
    path: Path
    spec: MirrorProfile

    @property
    def ca_cert(self) -> Path | None:
        return self.path.parent / self.spec.ca_cert if self.spec.ca_cert else None

    @property
    def serve_pypi(self) -> Path | None:
        return self.path.parent / self.spec.serve.pypi if self.spec.serve.pypi else None

    def credentials(self) -> dict[str, tuple[str, str]]:
        """host -> (user, password), read from the environment now; a missing variable is an error."""
        found = {}
        for index, credential in enumerate(self.spec.credentials):
            values = []
            for field in ("username_env", "password_env"):
                variable = getattr(credential, field)
                value = os.environ.get(variable)
                if not value:
                    raise RecipeError(
                        f"[[credentials]][{index}].{field}: environment variable {variable} is not set",
                        path=self.path,
                        hint=f"export {variable}=... before building with mirror '{self.name}'",
                    )
                values.append(value)
            found[credential.host] = (values[0], values[1])
        return found


def profile_paths(project_root: Path) -> dict[str, Path]:
    """The profiles shipped in the project's mirrors/ folder, by name."""
    return {path.stem: path for path in sorted((project_root / MIRRORS_DIR).glob("*.toml"))}


def load_mirror(selection: str, project_root: Path) -> Mirror:
    """`selection` is a profile name from mirrors/ or the path of a profile file."""
    known = profile_paths(project_root)
    if "://" in selection:
        raise RecipeError(
            f"the mirror '{selection}' is a URL; a mirror is chosen by profile",
            path=project_root / MIRRORS_DIR,
            hint=f"name a profile ({', '.join(known) or 'none'}) or a .toml file; put the URL in the profile",
        )
    if selection in known:
        path = known[selection]
    elif selection.endswith(".toml") or os.sep in selection:
        path = Path(selection)
    else:
        close = difflib.get_close_matches(selection, list(known), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known profiles: {', '.join(known) or '(none)'}"
        raise RecipeError(f"no mirror profile named '{selection}'", path=project_root / MIRRORS_DIR, hint=hint)
    names = ", ".join(known) or "none"
    spec = parse_toml(path, MirrorProfile, missing_hint=f"a profile is a name from {MIRRORS_DIR}/ ({names}) or a .toml file's path")
    mirror = Mirror(name=path.stem if selection in known else str(path), path=path, spec=spec)
    if mirror.ca_cert is not None and not mirror.ca_cert.is_file():
        problem = "is a folder, where a PEM file is expected" if mirror.ca_cert.is_dir() else "not found"
        raise RecipeError(f"ca_cert: '{mirror.ca_cert}' {problem}", path=path, hint="give a PEM file's path relative to the profile")
    if spec.serve.pypi and spec.pypi is None:
        raise RecipeError(
            "[serve].pypi: needs [pypi].index_url, the address to serve it at",
            path=path,
            hint='add [pypi] index_url = "http://127.0.0.1:3141/simple"',
        )
    return mirror


def selected_mirror(option: str | None, default: str | None, project_root: Path) -> Mirror | None:
    """`--mirror` wins over the project's default ([build] mirror in imagebuild.toml, where an
    unknown name is reported); 'none' means no mirror at all."""
    choice = option or default
    if choice is None or choice == NO_MIRROR:
        return None
    try:
        return load_mirror(choice, project_root)
    except RecipeError as error:
        if option or error.path != project_root / MIRRORS_DIR:
            raise
        raise RecipeError(
            f"[build].mirror: {error.message}", path=project_root / PROJECT_FILE, hint=f"{error.hint} (or pass --mirror NAME)"
        ) from None
