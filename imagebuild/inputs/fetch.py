"""How one run obtains offline inputs: from the host caches only (--offline), or fetching
assets and building dev-package wheels as needed. Shared by builds, `lock` and `assets fetch`."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from imagebuild.errors import LockError
from imagebuild.inputs.assets import AssetCache, DeclaredAsset
from imagebuild.inputs.devpackages import (
    LockedDevPackage,
    build_wheel,
    cached_wheel,
    host_environment,
)
from imagebuild.model.mirror import Mirror
from imagebuild.plan import BuildPlan


@dataclass(frozen=True)
class Fetcher:
    """How inputs are obtained in this run: from the cache only (offline) or fetched as needed."""

    cache: AssetCache
    offline: bool
    mirror: Mirror | None
    ca_bundle: bytes | None
    git_env: dict[str, str]
    say: Callable[[str], None]
    show_progress: bool = False

    def asset(self, asset: DeclaredAsset) -> Path:
        if self.offline or self.cache.has(asset.spec.sha256):
            return self.cache.verified(asset)
        self.say(f"fetching asset '{asset.name}' ({asset.spec.file_name})")
        with Progress(
            "{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), disable=not self.show_progress,
            transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task(asset.spec.file_name, total=None)
            return self.cache.fetch(
                asset,
                mirror=self.mirror,
                ca_bundle=self.ca_bundle,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                say=self.say,
            )

    def dev_wheel(self, item: BuildPlan, package_lock: LockedDevPackage) -> Path:
        found = cached_wheel(package_lock)
        if found is not None:
            return found
        if self.offline:
            raise LockError(
                f"{item.name}: the wheel of dev package {package_lock.describe()} is not built on this host",
                path=item.recipe.path,
                hint="run 'imagebuild assets fetch' once while online; it builds the locked commits",
            )
        return build_wheel(package_lock, self.git_env, self.say)


def fetcher_for(
    mirror: Mirror | None, ca_file: Path | None, *, offline: bool, say: Callable[[str], None], show_progress: bool = False
) -> Fetcher:
    """The fetcher of one command: the mirror's rewrites and the build's CA for downloads, git and uv."""
    return Fetcher(
        cache=AssetCache(),
        offline=offline,
        mirror=mirror,
        ca_bundle=ca_file.read_bytes() if ca_file else None,
        git_env=host_environment(mirror, ca_file),
        say=say,
        show_progress=show_progress,
    )
