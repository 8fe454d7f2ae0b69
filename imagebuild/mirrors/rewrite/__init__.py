"""Pure rewriters for files admins already have: `imagebuild mirror rewrite FILE --mirror NAME`.

One module per kind of file, each a `Rewriter`; KINDS below is the registry (the file names
that tell a kind, and its rewriter), so a new kind is one module and one entry here.

Every rewriter edits the text in place, by line and column (document.py), and never
re-serialises it: YAML and INI writers would drop the comments, quoting and layout that admins
keep in these files. PyYAML and configparser only validate the input and locate what to edit.
So a rewrite with an empty profile returns the input unchanged, a second rewrite changes
nothing, and every line no rule concerns comes back byte-identical. A byte-order mark is kept.
"""

import configparser
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from imagebuild.errors import RecipeError
from imagebuild.mirrors.rewrite import apt, compose, conda, dockerfile, pip
from imagebuild.mirrors.rewrite.document import Document
from imagebuild.mirrors.rewrite.yamlnodes import YAML_LOADER
from imagebuild.model.mirror import MirrorProfile


class FileKind(StrEnum):
    """What `imagebuild mirror rewrite` knows how to edit; the values are what --kind takes."""

    DOCKERFILE = "dockerfile"
    COMPOSE = "compose"
    ENVIRONMENT = "environment"
    CONDA_LOCK = "conda-lock"
    REQUIREMENTS = "requirements"
    PIP_CONF = "pip-conf"
    CONDARC = "condarc"
    APT_SOURCES = "apt-sources"


Rewriter = Callable[[Document, MirrorProfile, Path], str]
"""(the file as a Document, the profile, the file's path for errors) -> the rewritten text."""


@dataclass(frozen=True)
class Kind:
    names: tuple[str, ...]
    """File name patterns that tell this kind."""
    rewrite: Rewriter


KINDS: dict[FileKind, Kind] = {
    FileKind.DOCKERFILE: Kind(
        ("Dockerfile", "Containerfile", "Dockerfile.*", "*.Dockerfile", "*.dockerfile"), dockerfile.rewrite_dockerfile_document
    ),
    FileKind.COMPOSE: Kind(
        ("docker-compose*.yml", "docker-compose*.yaml", "compose*.yml", "compose*.yaml"), compose.rewrite_compose
    ),
    FileKind.CONDA_LOCK: Kind(
        ("conda-lock.yml", "conda-lock.yaml", "*.conda-lock.yml", "*.conda-lock.yaml", "conda-*.lock"), conda.rewrite_conda_lock
    ),
    FileKind.ENVIRONMENT: Kind(("environment*.yml", "environment*.yaml"), conda.rewrite_environment),
    FileKind.REQUIREMENTS: Kind(("requirements*.txt", "constraints*.txt", "*.in"), pip.rewrite_requirements),
    FileKind.PIP_CONF: Kind(("pip.conf", "pip.ini"), pip.rewrite_pip_conf),
    FileKind.CONDARC: Kind((".condarc", "condarc", "*.condarc"), conda.rewrite_condarc),
    FileKind.APT_SOURCES: Kind(("sources.list", "*.list", "*.sources"), apt.rewrite_apt_sources),
}
"""Every kind, in the order their name patterns are tried (conda-lock.yml before environment*.yml)."""

_DOCKERFILE_START = re.compile(r"\s*(FROM|ARG)\s+\S")
_APT_LINE = re.compile(r"\s*(deb|deb-src)\s+(\[[^\]]*\]\s+)?[a-z]+://|\s*Types:\s*deb", re.IGNORECASE)
_REQUIREMENT_LINE = re.compile(
    r"\s*(-{1,2}[A-Za-z]|git\+|https?://|[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*(==|>=|<=|~=|!=|<|>|@|;|$))"
)


def detect_kind(path: Path, text: str) -> FileKind:
    """The kind of `path`: by its name when that is telling, else by what `text` holds."""
    if path.name.endswith(".txt") and conda.has_explicit_marker(text):
        return FileKind.CONDA_LOCK
    for kind, entry in KINDS.items():
        if any(fnmatchcase(path.name, pattern) for pattern in entry.names):
            return kind
    found = _kind_from_content(text)
    if found is None:
        raise RecipeError(
            "cannot tell which kind of file this is from its name or content",
            path=path,
            hint=f"pass --kind <{'|'.join(FileKind)}>",
        )
    return found


def _kind_from_content(text: str) -> FileKind | None:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return None
    if conda.has_explicit_marker(text):
        return FileKind.CONDA_LOCK
    if _DOCKERFILE_START.match(lines[0]) and any(re.match(r"\s*FROM\s", line) for line in lines):
        return FileKind.DOCKERFILE
    if any(_APT_LINE.match(line) for line in lines):
        return FileKind.APT_SOURCES
    kind = _yaml_kind(text)
    if kind is not None:
        return kind
    if _is_pip_conf(text):
        return FileKind.PIP_CONF
    only_words = all(re.fullmatch(r"\s*[\w.-]+\s*", line) for line in lines)  # any text file could be that
    if all(_REQUIREMENT_LINE.match(line) for line in lines) and not only_words:
        return FileKind.REQUIREMENTS
    return None


def _yaml_kind(text: str) -> FileKind | None:
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)
    except (yaml.YAMLError, RecursionError):
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    keys = {key.value for key, _ in root.value if isinstance(key, yaml.ScalarNode)}
    if "services" in keys:
        return FileKind.COMPOSE
    if {"package", "metadata"} <= keys:
        return FileKind.CONDA_LOCK
    if "dependencies" in keys:
        return FileKind.ENVIRONMENT
    if keys & {"channels", "channel_alias", "default_channels", "custom_channels"}:
        return FileKind.CONDARC
    return None


def _is_pip_conf(text: str) -> bool:
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error:
        return False
    return parser.has_section("global") or any(parser.has_option(name, "index-url") for name in parser.sections())


def rewrite_file(kind: FileKind, text: str, profile: MirrorProfile, *, source: Path, plain_runs: bool = False) -> str:
    """`text` pointed at the mirrors of `profile`; `source` only names the file in errors. A
    Dockerfile's RUN lines take their settings from a BuildKit secret, or with `plain_runs` from
    their own text (for builders without BuildKit; the settings then show in `docker history`)."""
    if kind is FileKind.DOCKERFILE:
        return dockerfile.rewrite_dockerfile_document(Document(text), profile, source, secret_runs=not plain_runs)
    return KINDS[kind].rewrite(Document(text), profile, source)


def unrouted_entries(kind: FileKind, text: str, profile: MirrorProfile) -> list[str]:
    """'line N: why' for each entry of a requirements file or apt sources that the rewrite
    leaves on its upstream (the command warns; Dockerfile RUN lines have their own check)."""
    if kind is FileKind.REQUIREMENTS:
        return pip.unrouted_requirements(text, profile)
    if kind is FileKind.APT_SOURCES:
        return apt.unrouted_apt_sources(text, profile)
    return []
