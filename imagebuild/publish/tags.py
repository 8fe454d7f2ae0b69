"""Step 9, tag: the names an image is published under.

Immutable tags say what an image is and never change their meaning: the build date
(`YYYY-MM-DD`), the content tag (`sha-<12 hex>`) and version tags read from inside the built
image (`python-3.11`, `aiida-core-2.9.4`), declared per recipe and inherited by children. Moving
tags (`latest`, or `edge` for nightly builds) follow the newest smoke-tested build. An
immutable tag that already names another image in the registry is kept, not moved.
"""

import re
import shlex
from dataclasses import dataclass

from imagebuild.errors import BuildError
from imagebuild.plan import BuildPlan

MOVING_TAGS = ("latest", "edge")
_NOT_IN_TAG = re.compile(r"[^A-Za-z0-9_.-]+")
_PACKAGE_VERSION = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"


@dataclass(frozen=True)
class ImageTags:
    immutable: tuple[str, ...]
    moving: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.immutable + self.moving


def version_commands(item: BuildPlan) -> dict[str, str]:
    """Tag prefix -> shell command, the image's own declarations over its ancestors'."""
    commands: dict[str, str] = {}
    for recipe in (*reversed(item.ancestors), item.recipe):
        for package in recipe.spec.tags.packages:
            commands[package] = f"python -c {shlex.quote(_PACKAGE_VERSION)} {shlex.quote(package)}"
        commands.update(recipe.spec.tags.commands)
    return commands


def version_script(commands: dict[str, str]) -> str:
    """One shell script that prints 'prefix<TAB>version' per command, so one container run reads them all."""
    lines = ["set -u"]
    for prefix, command in sorted(commands.items()):
        lines.append(f"printf '%s\\t%s\\n' {shlex.quote(prefix)} \"$( {command} 2>&1 | head -n 1)\"")
    return "\n".join(lines) + "\n"


def parse_versions(output: str, commands: dict[str, str], image: str) -> dict[str, str]:
    """The version each command printed, made safe for a tag; a command that printed nothing is an error."""
    found = dict(line.split("\t", 1) for line in output.splitlines() if "\t" in line)
    versions = {}
    for prefix in sorted(commands):
        value = _NOT_IN_TAG.sub("-", found.get(prefix, "").strip()).strip("-.")
        if not value or " " in found.get(prefix, "").strip():
            raise BuildError(
                f"{image}: the version command for tag '{prefix}' printed {found.get(prefix, '')!r}, not a version",
                hint=f"correct [tags] in the recipe of {image}: the command must print one version such as 3.11",
            )
        versions[prefix] = value
    return versions


def image_tags(*, created: str, content_hash: str, versions: dict[str, str], moving: str = "latest") -> ImageTags:
    """`created` is the image's ISO creation time; its date is the date tag."""
    if moving not in MOVING_TAGS:
        raise ValueError(f"moving tag must be one of {MOVING_TAGS}")
    immutable = [created[:10], f"sha-{content_hash[:12]}"]
    immutable += [f"{prefix}-{version}"[:128] for prefix, version in sorted(versions.items())]
    return ImageTags(immutable=tuple(dict.fromkeys(immutable)), moving=(moving,))
