"""Offline assets: files an image needs that are not pip packages, kept in a content-addressed
cache on the host and verified by sha256 before they enter a build context.

A build never downloads an asset inside `docker build`; imagebuild fetches it here (mirror
rewrites, CA and credentials applied, resumable) or the admin carries it in with
`imagebuild assets add`. A file is present only under its own checksum: downloads land in a
partial file and are renamed only after they verify, so a cut connection or a corrupt copy
never counts as present.
"""

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import requests.adapters
from urllib3.exceptions import MaxRetryError, NameResolutionError
from urllib3.util.retry import Retry

from imagebuild.config import Logins
from imagebuild.errors import UNKNOWN_HOST, AssetError, connection_reason
from imagebuild.mirrors.hostenv import with_credentials
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import Mirror
from imagebuild.model.project import Project
from imagebuild.model.recipe import Recipe
from imagebuild.model.recipe_schema import AssetSpec

CHUNK = 1 << 16
ATTEMPTS = 4
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60


@dataclass(frozen=True)
class DeclaredAsset:
    """An asset and the recipe that declares it."""

    spec: AssetSpec
    recipe: Recipe

    @property
    def name(self) -> str:
        return self.spec.name

    def add_command(self) -> str:
        return f"imagebuild assets add {self.spec.file_name}"


def declared_assets(project: Project) -> dict[str, DeclaredAsset]:
    """Every asset of the project by name; one name means one file everywhere."""
    found: dict[str, DeclaredAsset] = {}
    for recipe in project.recipes.values():
        for index, spec in enumerate(recipe.spec.assets):
            other = found.get(spec.name)
            if other is not None and other.spec.sha256 != spec.sha256:
                raise AssetError(
                    f"[[assets]][{index}].name: '{spec.name}' is also declared by {other.recipe.path} "
                    "with another sha256",
                    path=recipe.path,
                    hint="give the two files different names",
                )
            found.setdefault(spec.name, DeclaredAsset(spec, recipe))
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class AssetCache:
    """`<cache>/assets/sha256/<hex>`: complete, verified files; `partial/<hex>`: downloads under way."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.complete = self.root / "sha256"
        self.partial = self.root / "partial"
        for folder in (self.complete, self.partial):
            folder.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.complete / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def verified(self, asset: DeclaredAsset) -> Path:
        """The cached file, checked again now: a file changed on disk is refused and removed."""
        path = self.path(asset.spec.sha256)
        if not path.is_file():
            raise AssetError(
                f"asset '{asset.name}' ({asset.spec.file_name}) is not in the asset cache",
                path=asset.recipe.path,
                hint=f"run 'imagebuild assets fetch {asset.name}', or carry the file in: {asset.add_command()}",
            )
        actual = sha256_of(path)
        if actual != asset.spec.sha256:
            path.unlink()
            raise AssetError(
                f"asset '{asset.name}': the cached file is corrupt (sha256 {actual}, "
                f"expected {asset.spec.sha256}); it was removed from the cache",
                path=asset.recipe.path,
                hint=f"fetch it again: imagebuild assets fetch {asset.name} (or {asset.add_command()})",
            )
        return path

    def add(self, source: Path, expected: str | None = None) -> tuple[str, Path]:
        """Copy `source` in under its checksum; with `expected`, a different checksum keeps nothing."""
        with tempfile.NamedTemporaryFile(dir=self.partial, prefix="add-", delete=False) as handle:
            staging = Path(handle.name)
        try:
            shutil.copyfile(source, staging)
            actual = sha256_of(staging)
            if expected is not None and actual != expected:
                raise AssetError(f"sha256 is {actual}, expected {expected}; the file was not added", path=source)
            return actual, self._commit(staging, actual)
        finally:
            staging.unlink(missing_ok=True)

    def _commit(self, staging: Path, sha256: str) -> Path:
        target = self.path(sha256)
        staging.chmod(0o644)
        os.replace(staging, target)
        return target

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def fetch(
        self,
        asset: DeclaredAsset,
        *,
        mirror: Mirror | None,
        logins: Logins,
        ca_file: Path | None,
        progress: Callable[[int, int | None], None],
        say: Callable[[str], None],
    ) -> Path:
        """Download `asset` from the first URL that serves the right file, resuming a partial one."""
        spec = asset.spec
        if self.has(spec.sha256):
            return self.verified(asset)
        if not spec.urls:
            raise AssetError(
                f"asset '{asset.name}' has no URL to download it from",
                path=asset.recipe.path,
                hint=f"carry the file in: {asset.add_command()}",
            )
        failures = []
        with _session(ca_file) as session:
            for url in _mirrored(spec.urls, mirror, logins):
                try:
                    staging = self._download_with_retries(session, url, spec.sha256, progress, say)
                except (requests.RequestException, OSError) as error:
                    failures.append(f"{_without_credentials(url)}: {connection_reason(error)}")
                    say(f"asset '{asset.name}': {failures[-1]}")
                    continue
                actual = sha256_of(staging)
                if actual == spec.sha256:
                    return self._commit(staging, actual)
                staging.unlink()
                failures.append(f"{_without_credentials(url)}: served a file with sha256 {actual}, refused")
                say(f"asset '{asset.name}': {failures[-1]}")
        raise AssetError(
            f"asset '{asset.name}' could not be fetched: " + "; ".join(failures),
            path=asset.recipe.path,
            hint=f"download {spec.file_name} elsewhere and carry it in: {asset.add_command()}",
        )

    def _download_with_retries(
        self,
        session: requests.Session,
        url: str,
        sha256: str,
        progress: Callable[[int, int | None], None],
        say: Callable[[str], None],
    ) -> Path:
        """A dropped connection is tried again from where it stopped; a 4xx answer or an unknown host is final."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._download(session, url, sha256, progress)
            except requests.HTTPError:
                raise
            except (requests.RequestException, OSError) as error:
                if attempt == ATTEMPTS or UNKNOWN_HOST in str(error):
                    raise  # a host name that does not resolve will not resolve a second later
                say(f"{_without_credentials(url)}: {connection_reason(error)}; continuing (attempt {attempt + 1} of {ATTEMPTS})")
                time.sleep(attempt)
        raise AssertionError("unreachable")

    def _download(
        self, session: requests.Session, url: str, sha256: str, progress: Callable[[int, int | None], None]
    ) -> Path:
        """Into partial/<sha256>, continuing where an earlier attempt stopped if the server allows."""
        staging = self.partial / sha256
        if urlsplit(url).scheme == "file":
            shutil.copyfile(unquote(urlsplit(url).path), staging)
            return staging
        have = staging.stat().st_size if staging.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with session.get(url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as response:
            if response.status_code == 416:  # the partial file is already whole (or bogus): start over
                staging.unlink()
                return self._download(session, url, sha256, progress)
            response.raise_for_status()
            resumed = response.status_code == 206
            length = response.headers.get("Content-Length")
            total = (int(length) + (have if resumed else 0)) if length else None
            done = have if resumed else 0
            with staging.open("ab" if resumed else "wb") as sink:
                for chunk in response.iter_content(CHUNK):
                    sink.write(chunk)
                    done += len(chunk)
                    progress(done, total)
        return staging


def _mirrored(urls: Iterable[str], mirror: Mirror | None, logins: Logins) -> Iterator[str]:
    """Each URL as the profile's download and git rewrites have it, with the mirror's credentials."""
    if mirror is None:
        yield from urls
        return
    rules = url_rules(mirror.spec).only("downloads", "git")
    for url in urls:
        yield with_credentials(rules.apply_line(url), logins)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()



class _Retry(Retry):
    """urllib3's retries, except for a host name that does not resolve: asking again will not help
    (an optional asset from an unreachable site would otherwise hold up every build)."""

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> Retry:
        if isinstance(error, NameResolutionError) and UNKNOWN_HOST in str(error):
            raise MaxRetryError(_pool, url, error)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _session(ca_file: Path | None) -> requests.Session:
    """A session that retries connection errors and 5xx answers and trusts the run's one CA
    bundle (config.merged_trust: the host's, --ca-cert and the profile's ca_cert)."""
    session = requests.Session()
    retry = _Retry(total=ATTEMPTS - 1, backoff_factor=1, status_forcelist=(500, 502, 503, 504), allowed_methods=["GET"])
    adapter = requests.adapters.HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if ca_file is not None:
        session.verify = str(ca_file)
    return session
