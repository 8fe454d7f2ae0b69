"""The grammars of free-form strings that end up in generated files (Dockerfiles, compose
files, shell lines), checked when a file is loaded so a bad one never reaches a build.

Each check returns the value or raises ValueError with a message that says what is allowed;
pydantic turns it into an error naming the file and the field. A value that looks like a
secret is never repeated in a message.
"""

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN_PREFIX = re.compile(r"gh[pousr]_|github_pat_|glpat-|xox[abprs]-|sk-|AKIA|ASIA|AIza|pypi-")
"""Prefixes of well-known tokens (GitHub, GitLab, Slack, OpenAI, AWS, Google, PyPI)."""


def looks_like_secret(value: str) -> bool:
    """A token pasted where a name belongs: a known token prefix, or long and mixing cases and digits."""
    if _TOKEN_PREFIX.match(value):
        return True
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    return len(value) >= 20 and mixed


def env_name(value: str) -> str:
    """The NAME of an environment variable; a value that looks like a secret is refused unrepeated."""
    if looks_like_secret(value):
        raise ValueError(
            "looks like a secret, not the NAME of an environment variable (so it is not repeated here); "
            "write a variable name such as SITE_MIRROR_PASSWORD and keep the secret itself out of this file"
        )
    if not ENV_NAME.fullmatch(value):
        raise ValueError("must be the NAME of an environment variable: letters, digits and '_', not starting with a digit")
    return value


def env_names(values: dict[str, str]) -> dict[str, str]:
    """The keys of an [env]-like table (each checked by env_name); the message names the key,
    unless it looks like a secret."""
    for name in values:
        try:
            env_name(name)
        except ValueError as error:
            if looks_like_secret(name):
                raise
            raise ValueError(f"key {name!r} {error}") from None
    return values


EnvName = Annotated[str, AfterValidator(env_name)]

_APT_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?([=/][A-Za-z0-9.+~:_-]+)?")
"""A Debian package name, optionally with :arch and =version or /release (apt-get install's forms)."""


def apt_package(value: str) -> str:
    if not _APT_PACKAGE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Debian package name (lower-case letters, digits, '+', '-', '.'; "
            "optionally :arch and =version or /release); one package per entry or line"
        )
    return value


AptPackage = Annotated[str, AfterValidator(apt_package)]

# Docker's reference grammar (distribution/reference): [domain/]path[:tag][@digest]
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_PATH_PART}(?:/{_PATH_PART})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REGISTRY_HOST = re.compile(_DOMAIN)
REPOSITORY = re.compile(rf"(?:{_DOMAIN}/)?{_PATH}")
IMAGE_REFERENCE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH}(?::{_TAG})?(?:@{_DIGEST})?")
TAG = re.compile(_TAG)


def _no_scheme(value: str, example: str) -> None:
    if "://" in value:
        raise ValueError(f"{value!r} has a URL scheme; write it without one, like '{example}'")


def image_reference(value: str) -> str:
    """An image reference as Docker reads it, e.g. 'debian:bookworm' or 'quay.io/org/image:1.0'."""
    _no_scheme(value, "quay.io/org/image:tag")
    if len(value) > 255 or not IMAGE_REFERENCE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an image reference: [registry/]name[:tag][@digest], the name in lower case, "
            "e.g. 'debian:bookworm' or 'quay.io/org/image:1.0'"
        )
    return value


def repository(value: str) -> str:
    """A repository without tag, e.g. 'imagebuild' or 'registry.example.org/team/images'."""
    _no_scheme(value, "registry.example.org/team")
    if len(value) > 255 or not REPOSITORY.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a repository name: lower-case letters, digits, '.', '_', '-' and '/', no tag"
        )
    return value


def registry_host(value: str) -> str:
    """A registry as host[:port], e.g. '127.0.0.1:5000' or 'registry.example.org'."""
    _no_scheme(value, "registry.example.org:5000")
    if not REGISTRY_HOST.fullmatch(value):
        raise ValueError(f"{value!r} is not a registry: host[:port], e.g. 'registry.example.org' or '127.0.0.1:5000'")
    return value


def tag(value: str) -> str:
    """An image tag: letters, digits, '_', '.', '-' (not first), at most 128."""
    if not TAG.fullmatch(value):
        raise ValueError(f"{value!r} is not a tag: letters, digits, '_', '.' and '-' (not first), at most 128")
    return value


def host_name(value: str) -> str:
    """A DNS name or IP address with an optional port, e.g. 'pypi.example.org' or '10.0.0.5:3141'."""
    _no_scheme(value, "pypi.example.org")
    if not re.fullmatch(rf"{_DOMAIN}", value):
        raise ValueError(f"{value!r} is not a host name: letters, digits, '-' and '.', optionally ':port'")
    return value


def ip_address(value: str) -> str:
    """An IPv4 or IPv6 address, as Docker binds a published port to it."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address, e.g. '127.0.0.1' or '0.0.0.0'") from None
    return value


def optional(check: Callable[[str], str]) -> Callable[[str], str]:
    """`check` for a value that may be left empty."""
    return lambda value: check(value) if value else value


ImageReference = Annotated[str, AfterValidator(image_reference)]
HostName = Annotated[str, AfterValidator(host_name)]
BUILDX_BUILDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def builder_name(value: str) -> str:
    """auto, buildkit, classic or a buildx builder's name (docker's rule: letters, digits, '_', '.', '-')."""
    if not BUILDX_BUILDER.fullmatch(value):
        raise ValueError(f"{value!r} is not a builder: auto, buildkit, classic, or a buildx builder's name (letters, digits, '_', '.', '-')")
    return value


Repository = Annotated[str, AfterValidator(repository)]
RegistryHost = Annotated[str, AfterValidator(registry_host)]
BuilderName = Annotated[str, AfterValidator(builder_name)]


def web_url(value: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """A download URL: one of `schemes`, a host (file: none), no spaces."""
    parts = urlsplit(value)
    if parts.password:  # checked first: the URL is not repeated
        raise ValueError("must not contain a password; a URL here ends up in the image and its logs")
    if parts.scheme not in schemes or (parts.scheme != "file" and not parts.hostname):
        raise ValueError(f"must be an {', '.join(schemes[:-1])} or {schemes[-1]} URL with a host, got {value!r}")
    if any(c.isspace() for c in value):
        raise ValueError(f"must not contain spaces (write them as %20), got {value!r}")
    return value


GIT_URL_SCHEMES = ("https", "http", "ssh", "git", "file")


def git_url(value: str) -> str:
    """A git repository URL as git clones it; pip's 'git+https://...@ref' form gets its own hint."""
    if urlsplit(value.removeprefix("git+")).password:  # checked first: the URL is not repeated
        raise ValueError("must not contain a password; give git its credentials outside the recipe (a credential helper)")
    if value.startswith("git+"):
        raise ValueError(
            f"{value!r} is pip's VCS form; give git's URL here (without 'git+' and '@ref') and the ref in 'ref'"
        )
    parts = urlsplit(value)
    if parts.scheme not in GIT_URL_SCHEMES or (parts.scheme != "file" and not parts.hostname):
        raise ValueError(f"must be a git URL (https://, ssh://, git://, file://) with a host, got {value!r}")
    if any(c.isspace() for c in value):
        raise ValueError(f"must not contain spaces, got {value!r}")
    return value


GitUrl = Annotated[str, AfterValidator(git_url)]


def path_in_image(path: str) -> str:
    """An absolute path in the image that is not the root folder and has no '..'."""
    if not path.startswith("/"):
        raise ValueError(f"must be an absolute path in the image, got {path!r}")
    if ".." in path.split("/"):
        raise ValueError(f"must not contain '..', got {path!r}")
    if path.strip("/") == "":
        raise ValueError("must not be '/': name a folder or file below it")
    if not re.fullmatch(r"[A-Za-z0-9._+@%=,:/-]+", path):
        raise ValueError(
            f"{path!r} has characters a Dockerfile line would misread: use letters, digits, '/', '.', '_', '-', '+', '@'"
        )
    return path


PathInImage = Annotated[str, AfterValidator(path_in_image)]


def file_mode(mode: str) -> str:
    """An octal permission mode such as '0644' or '755' (at most 07777)."""
    if not re.fullmatch(r"0?[0-7]{3,4}", mode) or int(mode, 8) > 0o7777:
        raise ValueError(f"must be an octal file mode such as '0755' (digits 0-7, at most 07777), got {mode!r}")
    return mode


def one_line(value: str) -> str:
    """A value written into a generated file on one line."""
    if "\n" in value or "\r" in value or "\x00" in value:
        raise ValueError("must be one line (no line break or NUL)")
    return value


OneLine = Annotated[str, AfterValidator(one_line)]
