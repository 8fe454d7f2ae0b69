"""Pure URL rewriting: a profile becomes an ordered list of prefix rules.

Each rule's pattern is written once, in the subset of regular expressions that Python's `re`
and `sed -E` read the same way, so the very same rule rewrites files on the host (Python) and
apt sources inside a build (sed, where there is no Python yet). A rule matches an upstream
prefix only at a URL boundary: not preceded by a letter, digit or '/', so a proxy URL that
embeds its upstream (https://proxy/https://github.com/...) is never rewritten twice.
"""

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagebuild.model.mirror import MirrorProfile

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
MAX_REWRITES_PER_LINE = 64

_SPECIAL = set(".^$*+?()[]{}|\\")


def _literal(text: str) -> str:
    """Escape `text` for both Python `re` and POSIX ERE (re.escape escapes too much for sed)."""
    return "".join(f"\\{char}" if char in _SPECIAL else char for char in text)


@dataclass(frozen=True)
class UrlRule:
    """Rewrite any of `upstreams` (URL prefixes, no trailing slash) to `mirror`."""

    upstreams: tuple[str, ...]
    mirror: str
    purpose: str

    @cached_property
    def pattern(self) -> str:
        """Group 1: the boundary before; group 2: the upstream; group 3: the boundary after."""
        alternatives = "|".join(_literal(up) for up in sorted(self.upstreams, key=len, reverse=True))
        return f"(^|[^A-Za-z0-9/])({alternatives})([^A-Za-z0-9_.-]|$)"

    @cached_property
    def _compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    def apply(self, line: str) -> str:
        """Rewrite every occurrence in one line (no newline in it), leftmost first, as sed's loop does."""
        for _ in range(MAX_REWRITES_PER_LINE):
            rewritten = self._compiled.sub(lambda m: m.group(1) + self.mirror + m.group(3), line, count=1)
            if rewritten == line:
                return line
            line = rewritten
        raise ValueError(f"rule for {self.purpose} does not settle on: {line!r}")

    def matches(self, line: str) -> bool:
        return self._compiled.search(line) is not None

    def sed(self, label: str) -> str:
        """The same rewrite as a sed -E loop (the mirror is checked free of '#' by the profile)."""
        replacement = self.mirror.replace("\\", "\\\\").replace("&", "\\&")
        return f":{label}\ns#{self.pattern}#\\1{replacement}\\3#\nt{label}\n"


@dataclass(frozen=True)
class RuleSet:
    """Ordered rules: specific ones (a named conda channel) before general ones (the alias)."""

    rules: tuple[UrlRule, ...] = ()

    def apply_line(self, line: str) -> str:
        for rule in self.rules:
            line = rule.apply(line)
        return line

    def apply(self, text: str) -> str:
        """Rewrite every line of `text`, keeping line endings and everything no rule matches."""
        return "".join(
            self.apply_line(line.rstrip("\r\n")) + line[len(line.rstrip("\r\n")) :]
            for line in text.splitlines(keepends=True)
        )

    def sed_script(self) -> str:
        return "".join(rule.sed(f"r{index}") for index, rule in enumerate(self.rules))

    def only(self, *purposes: str) -> "RuleSet":
        return RuleSet(tuple(rule for rule in self.rules if rule.purpose.split(":")[0] in purposes))

    def __bool__(self) -> bool:
        return bool(self.rules)


def conda_channel_upstreams(channel: str) -> tuple[str, ...]:
    """Where a named channel lives upstream: pkgs/* on repo.anaconda.com, others on anaconda.org."""
    if channel.startswith("pkgs/"):
        return (f"{CONDA_DEFAULTS_UPSTREAM}/{channel}",)
    return tuple(f"{alias}/{channel}" for alias in CONDA_ALIAS_UPSTREAMS)


def url_rules(profile: "MirrorProfile", *, extra_debian_upstreams: tuple[str, ...] = ()) -> RuleSet:
    """Every URL prefix rewrite a profile implies, purpose-tagged ('apt:debian', 'git', ...).

    `extra_debian_upstreams` adds archives that stand for Debian upstream on this host, such as
    the archive a root image was bootstrapped from.
    """
    rules: list[UrlRule] = []
    if profile.pypi is not None:
        rules.append(UrlRule(PYPI_UPSTREAMS, profile.pypi.index_url, "pypi"))
    if profile.conda is not None:
        for channel, mirror in sorted(profile.conda.channels.items()):
            rules.append(UrlRule(conda_channel_upstreams(channel), mirror, f"conda:{channel}"))
        if profile.conda.channel_alias:
            rules.append(UrlRule(CONDA_ALIAS_UPSTREAMS, profile.conda.channel_alias, "conda:channel_alias"))
    if profile.apt is not None:
        for field, upstreams in APT_UPSTREAMS.items():
            mirror = getattr(profile.apt, field)
            if mirror:
                extra = tuple(u.rstrip("/") for u in extra_debian_upstreams) if field == "debian" else ()
                candidates = tuple(dict.fromkeys((*upstreams, *extra)))
                rules.append(UrlRule(tuple(u for u in candidates if u != mirror), mirror, f"apt:{field}"))
    if profile.compose:
        rules.append(UrlRule((COMPOSE_UPSTREAM,), profile.compose, "downloads:compose"))
    for upstream, mirror in sorted(profile.downloads.items(), key=lambda item: -len(item[0])):
        rules.append(UrlRule((upstream,), mirror, "downloads"))
    for upstream, mirror in sorted(profile.git.items(), key=lambda item: -len(item[0])):
        rules.append(UrlRule((upstream,), mirror, "git"))
    return RuleSet(tuple(rule for rule in rules if rule.upstreams))


def unsettled_mirrors(rules: RuleSet) -> list[tuple[UrlRule, UrlRule]]:
    """(mirror's rule, rule that would rewrite it again): pairs that break idempotence."""
    return [
        (owner, other)
        for owner in rules.rules
        for other in rules.rules
        if other.matches(f" {owner.mirror}/x ")
    ]


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
