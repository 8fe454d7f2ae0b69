"""Where each kind of download lives upstream, and which mirror a profile sends it to.

This is what a mirror profile means, as data: each Route maps upstream URL prefixes to a mirror
prefix, and an image reference's registry to a mirror registry. The profile's own checks use it
(a mirror that a route would rewrite again is refused when the profile is loaded); the
rewriters in imagebuild.mirrors apply it to text.

A route matches an upstream prefix only at a URL boundary: not preceded by a letter, digit or
'/', so a proxy URL that embeds its upstream (https://proxy/https://github.com/...) is never
rewritten twice. Its pattern is written in the subset of regular expressions that Python's `re`
and `sed -E` read the same way.
"""

import re
from dataclasses import dataclass
from functools import cached_property

PYPI_UPSTREAMS = ("https://pypi.org/simple", "https://pypi.python.org/simple", "http://pypi.python.org/simple")
CONDA_ALIAS_UPSTREAMS = ("https://conda.anaconda.org", "http://conda.anaconda.org")
CONDA_DEFAULTS_UPSTREAM = "https://repo.anaconda.com"
COMPOSE_UPSTREAM = "https://github.com/docker/compose/releases/download"
APT_UPSTREAMS = {
    "debian_security": (
        "http://security.debian.org/debian-security",
        "https://security.debian.org/debian-security",
        "http://deb.debian.org/debian-security",
        "https://deb.debian.org/debian-security",
    ),
    "debian": (
        "http://deb.debian.org/debian",
        "https://deb.debian.org/debian",
        "http://ftp.debian.org/debian",
        "https://ftp.debian.org/debian",
        "http://httpredir.debian.org/debian",
    ),
    "ubuntu_security": ("http://security.ubuntu.com/ubuntu", "https://security.ubuntu.com/ubuntu"),
    "ubuntu": ("http://archive.ubuntu.com/ubuntu", "https://archive.ubuntu.com/ubuntu"),
}

_SPECIAL = set(".^$*+?()[]{}|\\")


def _literal(text: str) -> str:
    """Escape `text` for both Python `re` and POSIX ERE (re.escape escapes too much for sed)."""
    return "".join(f"\\{char}" if char in _SPECIAL else char for char in text)


@dataclass(frozen=True)
class Route:
    """Any of `upstreams` (URL prefixes, no trailing slash) goes to `mirror`."""

    upstreams: tuple[str, ...]
    mirror: str
    purpose: str

    @cached_property
    def pattern(self) -> str:
        """Group 1: the boundary before; group 2: the upstream; group 3: the boundary after."""
        alternatives = "|".join(_literal(up) for up in sorted(self.upstreams, key=len, reverse=True))
        return f"(^|[^A-Za-z0-9/])({alternatives})([^A-Za-z0-9_.-]|$)"

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    def matches(self, line: str) -> bool:
        return self.compiled.search(line) is not None


def conda_channel_upstreams(channel: str) -> tuple[str, ...]:
    """Where a named channel lives upstream: pkgs/* on repo.anaconda.com, others on anaconda.org."""
    if channel.startswith("pkgs/"):
        return (f"{CONDA_DEFAULTS_UPSTREAM}/{channel}",)
    return tuple(f"{alias}/{channel}" for alias in CONDA_ALIAS_UPSTREAMS)


def unsettled(routes: tuple[Route, ...]) -> list[tuple[Route, Route]]:
    """(a route, another route that would rewrite its mirror again): pairs that break idempotence."""
    return [(owner, other) for owner in routes for other in routes if other.matches(f" {owner.mirror}/x ")]


REGISTRY_DEFAULT = "docker.io"


def split_image_ref(ref: str) -> tuple[str, str]:
    """'postgres:15' -> ('docker.io', 'library/postgres:15'); 'quay.io/a/b' -> ('quay.io', 'a/b').

    Docker's rule: the first path component is a registry when it has a '.' or ':' or is
    'localhost'; otherwise the image is on Docker Hub, and one-component names are 'library/'.
    """
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return REGISTRY_DEFAULT, ref if rest else f"library/{ref}"


def rewrite_image_ref(ref: str, registry: dict[str, str]) -> str:
    """The mirror's reference for `ref`, or `ref` unchanged when its registry has no mirror.

    Already mirrored references are left alone, so rewriting is idempotent.
    """
    name = re.split(r"[:@](?=[^/]*$)", ref, maxsplit=1)[0]  # a tag or digest may hold ${VARIABLES}
    if not registry or ref == "scratch" or "$" in name:
        return ref
    host, path = split_image_ref(ref)
    if host == "index.docker.io" or host == "registry-1.docker.io":
        host = REGISTRY_DEFAULT
    mirror = registry.get(host)
    if mirror is None:
        return ref
    return f"{mirror}/{path}"
