"""images/<name>/image.lock: the file `imagebuild lock` writes and builds read, with every
Python pin (hashed), dev package commit, Debian index digest and what the lock was made from."""

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import Field

from imagebuild.inputs.devpackages import LockedDevPackage
from imagebuild.inputs.target import Target
from imagebuild.model.recipe import Recipe
from imagebuild.model.toml import StrictModel, parse_toml
from imagebuild.plan import BuildPlan

LOCK_FILE = "image.lock"
HEADER = "# Written by `imagebuild lock`; commit it. Builds use these pins and commits until the next lock.\n"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


class ImageLock(StrictModel):
    """The schema of images/<name>/image.lock."""

    version: Literal[1] = 1
    inputs: str
    input_digests: dict[str, str] = Field(
        default={}, description="each input's own digest (lockstate.py), so `lock --check` names the one that changed"
    )
    python: str = ""
    platform: str = ""
    source: LockedDevPackage | None = Field(
        default=None, description="a [source] recipe: the commit its ref named when locked; builds fetch that commit"
    )
    dev_packages: list[LockedDevPackage] = Field(default=[], description="each dev package ref and the commit it named when locked")
    debian: dict[str, str] = Field(
        default={}, description="root images: suite -> sha256 of its package index when locked; a change rebuilds with the updates"
    )
    requirements: str = ""
    pins_digest: str = Field(
        default="", description="sha256 of the pins and commits as `imagebuild lock` wrote them: a hand edit shows as stale"
    )

    def content_digest(self) -> str:
        """The digest of what builds take from the lock: its pins, commits, indexes and [source]."""
        content = self.model_dump(include={"requirements", "dev_packages", "debian", "source"}, mode="json")
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def edited(self) -> bool:
        """Whether its pins or commits changed since `imagebuild lock` wrote it."""
        return bool(self.pins_digest) and self.pins_digest != self.content_digest()

    def pins(self) -> dict[str, str]:
        """name -> version of every locked distribution."""
        return pins_of(self.requirements)


def pins_of(requirements: str) -> dict[str, str]:
    """name -> version of every pin in a requirements text (uv's hashed output)."""
    return {match[1].lower(): match[3] for line in requirements.splitlines() if (match := _PIN.match(line))}


def lock_path(recipe: Recipe) -> Path:
    return recipe.directory / LOCK_FILE


def needs_lock(recipe: Recipe) -> bool:
    return (
        recipe.requirements is not None
        or recipe.spec.git_source is not None
        or recipe.conda_environment is not None
        or bool(recipe.spec.dev_packages)
        or any(a.wheel for a in recipe.spec.assets)
    )


def read_lock(recipe: Recipe) -> ImageLock | None:
    path = lock_path(recipe)
    return parse_toml(path, ImageLock) if path.exists() else None


def platform_tag(target: Target) -> str:
    return f"{target.machine}-manylinux_{target.glibc[0]}_{target.glibc[1]}"


def write_lock(item: BuildPlan, lock: ImageLock) -> bool:
    """Write the lock file; False when it already says exactly this (the file is not touched)."""
    path = lock_path(item.recipe)
    lock = lock.model_copy(update={"pins_digest": lock.content_digest()})
    empty = {name for name in ("debian", "source", "python", "platform", "input_digests") if not getattr(lock, name)}
    text = HEADER + tomli_w.dumps(lock.model_dump(exclude=empty), multiline_strings=True)
    if path.is_file() and path.read_text() == text:
        return False
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    staging.replace(path)
    return True
