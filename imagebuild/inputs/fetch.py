"""How one run obtains offline inputs: from the host caches only (--offline), or fetching
assets and building dev-package wheels as needed. Shared by builds, `lock` and `assets fetch`."""

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from imagebuild.config import RunConfig
from imagebuild.errors import LockError
from imagebuild.inputs.assets import AssetCache, DeclaredAsset
from imagebuild.inputs.devpackages import (
    LockedDevPackage,
    archive,
    build_wheel,
    cached_wheel,
    host_environment,
)
from imagebuild.model.mirror import Mirror
from imagebuild.plan import BuildPlan

ProgressUpdate = Callable[[int, int | None], None]
"""Bytes done so far and the total when known."""
DownloadProgress = Callable[[str], AbstractContextManager[ProgressUpdate]]
"""Shows one download (by file name) while it runs; the command line draws a bar on a terminal."""


@contextlib.contextmanager
def no_progress(_file_name: str) -> Iterator[ProgressUpdate]:
    yield lambda _done, _total: None


@dataclass(frozen=True)
class Fetcher:
    """How inputs are obtained in this run: from the cache only (offline) or fetched as needed,
    through the run's mirror, with its credentials and the run's one CA bundle."""

    config: RunConfig
    say: Callable[[str], None]
    progress: DownloadProgress = no_progress

    @property
    def mirror(self) -> Mirror | None:
        return self.config.mirror

    @property
    def offline(self) -> bool:
        return self.config.offline

    @cached_property
    def cache(self) -> AssetCache:
        return AssetCache(self.config.cache_dir / "assets")

    @cached_property
    def git_env(self) -> dict[str, str]:
        """git's and uv's environment on this host: the mirror's rewrites and index, the run's CA."""
        logins = self.config.logins()
        return host_environment(self.config.environ, self.mirror, logins, self.config.ca_file)

    def asset(self, asset: DeclaredAsset) -> Path:
        if self.offline or self.cache.has(asset.spec.sha256):
            return self.cache.verified(asset)
        self.say(f"fetching asset '{asset.name}' ({asset.spec.file_name})")
        with self.progress(asset.spec.file_name) as update:
            return self.cache.fetch(
                asset,
                mirror=self.mirror,
                logins=self.config.logins(),
                ca_file=self.config.ca_file,
                progress=update,
                say=self.say,
            )

    def dev_wheel(self, item: BuildPlan, package_lock: LockedDevPackage) -> Path:
        wheels = self.config.cache_dir / "dev-wheels"
        found = cached_wheel(package_lock, wheels)
        if found is not None:
            return found
        if self.offline:
            raise LockError(
                f"{item.name}: the wheel of dev package {package_lock.describe()} is not built on this host",
                path=item.recipe.path,
                hint="run 'imagebuild assets fetch' once while online; it builds the locked commits",
            )
        return build_wheel(package_lock, self.config.cache_dir, self.git_env, self.say)

    def dev_checkout(self, package_lock: LockedDevPackage) -> bytes:
        """The package's files at its locked commit (a tar), for its `checkout` folder."""
        return archive(package_lock, self.config.cache_dir, self.git_env, offline=self.offline)
