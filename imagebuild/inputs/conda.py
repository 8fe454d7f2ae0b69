"""Conda environments: an environment.yml solved by rattler (the solver of pixi; no conda or
micromamba binary needed) and written as a standard conda-lock file through conda-lock's own
models, so conda-lock users can read it.

The solve goes through the mirror profile's conda rewrites; the lock records the upstream
channel URLs (the same files, the same hashes), and the build rewrites them again on the way
in (support/install-conda), so the lock and the content hash do not depend on the mirror.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagebuild.errors import LockError
from imagebuild.inputs.target import Target
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.environment import load_environment
from imagebuild.model.mirror import Mirror
from imagebuild.model.recipe import CONDA_LOCK_FILE
from imagebuild.model.routes import CONDA_ALIAS_UPSTREAMS

if TYPE_CHECKING:  # rattler and conda-lock are imported where used: a build that reuses its images needs neither
    import rattler
    from conda_lock.lockfile.v2prelim.models import Lockfile

LOCK_FILE = CONDA_LOCK_FILE


@dataclass(frozen=True)
class Environment:
    """The parts of an environment.yml imagebuild installs: channels and conda specs."""

    path: Path
    channels: tuple[str, ...]
    specs: tuple[str, ...]


def read_environment(path: Path) -> Environment:
    """The environment.yml as the model checked it when the recipe was loaded."""
    spec = load_environment(path)
    return Environment(path, tuple(spec.channels), spec.specs)


def channel_url(channel: str) -> str:
    """'conda-forge' -> https://conda.anaconda.org/conda-forge; URLs stay as they are."""
    return channel.rstrip("/") if "://" in channel else f"{CONDA_ALIAS_UPSTREAMS[0]}/{channel}"


@dataclass(frozen=True)
class ChannelRoute:
    """Where a channel lives upstream, and where this run reads it (the mirror's copy, or upstream)."""

    upstream: str
    used: str


def routes(environment: Environment, mirror: Mirror | None) -> list[ChannelRoute]:
    rules = url_rules(mirror.spec).only("conda") if mirror is not None else None
    found = []
    for channel in environment.channels:
        upstream = channel_url(channel)
        found.append(ChannelRoute(upstream, rules.apply_line(upstream) if rules else upstream))
    return found


LOCAL_PACKAGES = "/opt/imagebuild/conda-pkgs"
"""Where the build puts conda packages carried in as assets; install-conda takes them from there."""


@dataclass(frozen=True)
class LocalPackage:
    """A conda package carried in by hand: the file in the asset cache, and the URL the lock records
    (its declared download URL; without one, where the build puts it)."""

    file_name: str
    path: Path
    url: str


def local_channel(packages: Sequence[LocalPackage], folder: Path) -> ChannelRoute | None:
    """The carried-in packages as an indexed channel in `folder`, read before any other channel."""
    if not packages:
        return None
    import asyncio

    import rattler

    folder.mkdir(parents=True, exist_ok=True)
    for package in packages:
        named = folder / package.file_name  # rattler reads the archive format from the file name
        shutil.copyfile(package.path, named)
        subdir_name = rattler.IndexJson.from_package_archive(named).subdir or "noarch"
        (folder / subdir_name).mkdir(parents=True, exist_ok=True)
        named.replace(folder / subdir_name / package.file_name)
    for subdir_name in ("noarch", "linux-64"):
        (folder / subdir_name).mkdir(exist_ok=True)
    asyncio.run(rattler.index.index_fs(folder, write_shards=False, write_zst=False, force=True))
    return ChannelRoute(upstream=f"file://{LOCAL_PACKAGES}", used=folder.as_uri())


def _virtual_packages(target: Target) -> list[rattler.GenericVirtualPackage]:
    """The image's platform as conda sees it: Linux with the suite's glibc."""
    import rattler

    glibc = ".".join(str(part) for part in target.glibc)
    return [
        rattler.GenericVirtualPackage(rattler.PackageName(name), rattler.Version(version), rattler.BuildString("0"))
        for name, version in (("__unix", "0"), ("__linux", "6.1"), ("__glibc", glibc), ("__archspec", "1"))
    ]


def subdir(target: Target) -> str:
    return {"x86_64": "linux-64", "aarch64": "linux-aarch64"}[target.machine]


def extended(parent: Environment, child: Environment) -> Environment:
    """A child's environment on top of its parent's: both channel lists, both spec lists."""
    return Environment(
        path=child.path,
        channels=tuple(dict.fromkeys((*parent.channels, *child.channels))),
        specs=(*parent.specs, *child.specs),
    )


def locked_records(path: Path, platform: str) -> list[rattler.RepoDataRecord]:
    """The packages of a conda-lock file as solver records, to hold a parent's pins fixed."""
    import rattler
    from conda_lock.lockfile import parse_conda_lock_file

    found = []
    for package in parse_conda_lock_file(path).package:
        if package.manager != "conda" or package.platform != platform:
            continue
        package_subdir = package.url.rsplit("/", 2)[-2]
        record = rattler.PackageRecord(
            name=package.name,
            version=package.version,
            build=rattler.BuildString(package.build or "0"),
            build_number=0,
            subdir=package_subdir,
            noarch="generic" if package_subdir == "noarch" else None,
            depends=[f"{name} {spec}".strip() for name, spec in package.dependencies.items()],
            sha256=bytes.fromhex(package.hash.sha256) if package.hash.sha256 else None,
            md5=bytes.fromhex(package.hash.md5) if package.hash.md5 else None,
        )
        found.append(rattler.RepoDataRecord(record, package.url.rsplit("/", 1)[-1], package.url, package.url.rsplit("/", 2)[0]))
    return found


def solve(
    environment: Environment,
    target: Target,
    channel_routes: Sequence[ChannelRoute],
    mirror: Mirror | None,
    pinned: Sequence[rattler.RepoDataRecord] = (),
) -> list[rattler.RepoDataRecord]:
    """rattler's solution for the image's platform; errors name the conflict or the channel (and mirror)."""
    import asyncio

    import rattler
    import rattler.exceptions

    platform = subdir(target)
    try:
        return asyncio.run(
            rattler.solve(
                [rattler.Channel(route.used) for route in channel_routes],
                list(environment.specs),
                platforms=[rattler.Subdir(platform), "noarch"],
                virtual_packages=_virtual_packages(target),
                pinned_packages=list(pinned),
            )
        )
    except rattler.exceptions.SolverError as error:
        raise LockError(
            f"the conda environment does not solve for {platform}:\n{error}",
            path=environment.path,
            hint="loosen or correct the specs named above",
        ) from None
    except (rattler.exceptions.GatewayError, rattler.exceptions.FetchRepoDataError) as error:
        via = f" through mirror '{mirror.name}' ({mirror.path})" if mirror else ""
        channels = ", ".join(route.used for route in channel_routes)
        raise LockError(
            f"a conda channel cannot be read{via}: {channels}: {str(error).splitlines()[0]}",
            path=environment.path,
            hint="check the channel names, and the mirror's [conda] section ('imagebuild mirror check')",
        ) from None


def _upstream_url(url: str, channel_routes: Sequence[ChannelRoute], local: Sequence[LocalPackage] = ()) -> str:
    name = url.rsplit("/", 1)[-1]
    for package in local:
        if package.file_name == name and url.startswith("file:"):
            return package.url or f"file://{LOCAL_PACKAGES}/{url.rsplit('/', 2)[-2]}/{name}"
    for route in channel_routes:
        if url.startswith(route.used + "/"):
            return route.upstream + url[len(route.used) :]
    return url


def lockfile(
    records: list[rattler.RepoDataRecord],
    environment: Environment,
    target: Target,
    channel_routes: Sequence[ChannelRoute],
    local: Sequence[LocalPackage] = (),
) -> Lockfile:
    """The solution in conda-lock's model, with upstream URLs and both hashes of every package."""
    from conda_lock.lockfile.v2prelim.models import HashModel, LockedDependency, Lockfile, LockMeta
    from conda_lock.models.channel import Channel as LockChannel

    platform = subdir(target)
    packages = [
        LockedDependency(
            name=record.name.normalized,
            version=str(record.version),
            manager="conda",
            platform=platform,
            dependencies={dep.split(" ", 1)[0]: (dep.split(" ", 1)[1] if " " in dep else "") for dep in record.depends},
            url=_upstream_url(record.url, channel_routes, local),
            hash=HashModel(md5=record.md5.hex() if record.md5 else None, sha256=record.sha256.hex() if record.sha256 else None),
            build=str(record.build),
            categories={"main"},
        )
        for record in sorted(records, key=lambda r: r.name.normalized)
    ]
    metadata = LockMeta(
        content_hash={platform: hashlib.sha256(environment.path.read_bytes()).hexdigest()},
        channels=[LockChannel.from_string(route.upstream) for route in channel_routes if not route.used.startswith("file:")],
        platforms=[platform],
        sources=[environment.path.name],
    )
    return Lockfile(package=packages, metadata=metadata)


def write(lock: Lockfile, path: Path) -> bool:
    """Write the lock; False when the file already says exactly this (it is not touched)."""
    from conda_lock.lockfile import write_conda_lock_file

    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / path.name
        write_conda_lock_file(lock, staged, metadata_choices=None)
        if path.is_file() and path.read_bytes() == staged.read_bytes():
            return False
        shutil.move(staged, path)
    return True


def conda_lock_path(directory: Path) -> Path:
    return directory / LOCK_FILE
