"""`imagebuild mirror sync`: the exact files the images download from PyPI, as a PEP 503 index.

pip resolves each image as its build does (the recipe's pins with its parents' pins as
constraints, and the installer for root images), but for the image's interpreter and platform
rather than this host's, and reports the files it picked; sync downloads those, checks them
against the index's hashes, and writes the index. A package published only as a source
distribution is mirrored with everything its build needs, which sync proves by building it
here from the mirror alone.
"""

import hashlib
import http.client
import json
import os
import shutil
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from imagebuild.build.render import INSTALLER
from imagebuild.config import RunConfig
from imagebuild.errors import MirrorError
from imagebuild.inputs.lockfile import LOCK_FILE, read_lock
from imagebuild.inputs.target import Target, image_target
from imagebuild.mirrors.pip import Download, PipSource, build_requires, missing_requirement, run_pip, tail
from imagebuild.mirrors.wheelhouse import file_entry, load_manifest, save_manifest, write_index
from imagebuild.plan import plan
from imagebuild.system import Completed, exclusive

if TYPE_CHECKING:  # packaging.requirements is imported where a requirement is parsed (mirrors/pip.py)
    from packaging.requirements import Requirement

DOWNLOADS_AT_ONCE = 4


@dataclass(frozen=True)
class SyncResult:
    """What the images need from `destination`: `files` files (`new` of them downloaded now)."""

    destination: Path
    files: int
    new: int
    total_bytes: int
    packages: tuple[str, ...]


class _Sync:
    """One sync run: the verified files, the files this run needs, and pip's scratch space."""

    def __init__(
        self, destination: Path, source: PipSource, scratch: Path, environ: dict[str, str], say: Callable[[str], None]
    ) -> None:
        self.files = destination / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        for leftover in destination.rglob(".*.part"):  # from a sync that was killed
            leftover.unlink()
        self.destination = destination
        self.source = source
        self.environ = environ
        self.scratch = scratch
        self.say = say
        self.entries = load_manifest(destination, say)
        self.needed: dict[str, Download] = {}
        self.new = 0
        self.sdists: dict[str, Download] = {}  # project -> its source distribution, for wheels built here
        self.standins = scratch / "built"
        self.standins.mkdir()
        self._building: set[str] = set()
        self._source_resolutions: dict[tuple[str, ...], dict[str, str]] = {}
        self._lock = threading.Lock()
        self._reports = 0

    def _pip(self, arguments: list[str], target: Target | None) -> Completed:
        return run_pip(arguments, target, self.environ)

    def _report(
        self, target: Target, arguments: list[str], *, host_tags: bool = False
    ) -> tuple[list[Download] | None, str]:
        """pip's resolution as the files it would install, or None and pip's output. Markers are
        always the target's; wheel tags and Requires-Python too, unless `host_tags`."""
        self._reports += 1
        report = self.scratch / f"report-{self._reports}.json"
        where = [] if host_tags else ["--target", str(self.scratch / "unused"), *target.pip_options()]
        completed = self._pip(
            [
                "install", "--dry-run", "--ignore-installed", "--report", str(report),
                "--find-links", str(self.standins), *where, *self.source.pip_options(), *arguments,
            ],
            target,
        )
        if completed.returncode != 0:
            return None, completed.stdout + completed.stderr
        downloads = []
        for item in json.loads(report.read_text())["install"]:
            project, version = canonicalize_name(item["metadata"]["name"]), item["metadata"]["version"]
            url = item["download_info"]["url"]
            if url.startswith("file:") and not host_tags:  # a wheel built here stands in for its sdist
                downloads.append(self.sdists[project])
                continue
            sha256 = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
            downloads.append(Download(project, version, url, sha256))
        return downloads, ""

    def resolve(self, target: Target, arguments: list[str]) -> list[Download]:
        """The files of pip `arguments` (requirements, -r and -c files) with their dependencies;
        packages that publish no wheel for the target are mirrored as sources first."""
        while True:
            downloads, output = self._report(target, ["--only-binary=:all:", *arguments])
            if downloads is not None:
                return downloads
            missing = missing_requirement(output)
            if missing is None:
                raise MirrorError(
                    f"pip cannot resolve {' '.join(arguments)} for {target}:\n{tail(output)}",
                    hint="check the pins, and the index with 'imagebuild mirror check'",
                )
            if canonicalize_name(missing.name) in self.sdists.keys() | self._building:
                raise MirrorError(
                    f"'{missing}' publishes no wheel for {target}, and the wheel built from its source "
                    f"distribution on this host does not fit it either:\n{tail(output)}",
                    hint=f"sync on a host with Python {target.python_version} on {target.machine} Linux, "
                    f"or pin a version of {missing.name} that publishes a wheel",
                )
            self._mirror_sdist(target, missing, arguments)

    def _version_from_sources(self, target: Target, missing: "Requirement", arguments: list[str]) -> str:
        """The version of `missing` that a resolver which may build sources picks (pip, preferring
        wheels, as the images' own installer would when online); one run serves every package."""
        key = tuple(arguments)
        if key not in self._source_resolutions:
            found, output = self._report(target, ["--prefer-binary", *arguments], host_tags=True)
            if found is None:
                raise MirrorError(
                    f"pip finds no wheel of '{missing}' for {target}, and no version that fits even from "
                    f"source distributions:\n{tail(output)}",
                    hint=f"check the pins that bring in {missing.name}; its files: https://pypi.org/project/{missing.name}/#files",
                )
            self._source_resolutions[key] = {item.project: item.version for item in found}
        version = self._source_resolutions[key].get(canonicalize_name(missing.name))
        if version is None:
            raise MirrorError(f"pip resolves {' '.join(arguments)} from sources without '{missing}'")
        return version

    def _mirror_sdist(self, target: Target, missing: "Requirement", arguments: list[str]) -> None:
        """A package without a wheel: its source distribution, its build requirements (proven by
        building it here from the mirror alone), and the wheel built, to resolve its dependencies."""
        project = canonicalize_name(missing.name)
        pin = f"{missing.name}=={self._version_from_sources(target, missing, arguments)}"
        self.say(f"{pin} publishes no wheel for {target}: mirroring its source distribution and build requirements")
        found, output = self._report(target, ["--no-deps", f"--no-binary={project}", pin])
        if not found:
            raise MirrorError(
                f"'{pin}' has neither a wheel for {target} nor a source distribution:\n{tail(output)}",
                hint=f"pin a version of {missing.name} that publishes one: https://pypi.org/project/{project}/#files",
            )
        (sdist,) = found
        self.fetch([sdist])
        self._building.add(project)
        room = self.scratch / f"build-{project}"  # only the build's own requirements, found afresh each sync
        room.mkdir()
        requires = build_requires(self.files / sdist.filename)
        tried: set[str] = set()
        while True:
            if requires:
                downloads = self.resolve(target, requires)
                self.fetch(downloads)
                for download in downloads:
                    if not (room / download.filename).exists():
                        (room / download.filename).symlink_to(self.files / download.filename)
            built = self._build_here(sdist, room)
            if isinstance(built, Path):
                break
            lacking = missing_requirement(built)
            if lacking is None or str(lacking) in tried:
                raise MirrorError(
                    f"the source distribution {sdist.filename} does not build from the mirror:\n{tail(built)}",
                    hint=f"pin a version of {missing.name} that publishes a wheel for {target}",
                )
            tried.add(str(lacking))
            requires = [str(lacking)]
        self._building.discard(project)
        self.sdists[project] = sdist

    def _build_here(self, sdist: Download, room: Path) -> Path | str:
        """Build `sdist` on this host with the files in `room` only: the wheel, or pip's output."""
        output = self.scratch / "build"
        shutil.rmtree(output, ignore_errors=True)
        completed = self._pip(
            ["wheel", "--no-deps", "--no-index", "--find-links", str(room), "--wheel-dir", str(output),
             str(self.files / sdist.filename)],
            None,
        )
        wheels = list(output.glob("*.whl")) if completed.returncode == 0 else []
        if not wheels:
            return completed.stdout + completed.stderr
        return Path(shutil.move(wheels[0], self.standins / wheels[0].name))

    def fetch(self, downloads: Iterable[Download]) -> None:
        """Download what is not here yet, a few files at once; each is verified, then renamed into place."""
        wanted = {}
        for download in downloads:
            self.needed[download.filename] = download
            if download.filename not in self.entries:
                wanted[download.filename] = download
        with ThreadPoolExecutor(DOWNLOADS_AT_ONCE) as pool:
            list(pool.map(self._download, wanted.values()))

    def _download(self, download: Download) -> None:
        path = self.files / download.filename
        handle, name = tempfile.mkstemp(dir=self.files, prefix=f".{download.filename}.", suffix=".part")
        partial = Path(name)
        digest = hashlib.sha256()
        self.say(f"downloading {download.filename}")
        request, context = self.source.request(download.url)
        try:
            with (
                os.fdopen(handle, "wb") as sink,
                urllib.request.urlopen(request, context=context, timeout=120) as response,
            ):
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    sink.write(chunk)
            if download.sha256 and digest.hexdigest() != download.sha256:
                raise MirrorError(
                    f"{download.filename} from {download.url} has sha256 {digest.hexdigest()}, "
                    f"the index says {download.sha256}",
                    hint="the index or a proxy on the way serves a different file; sync again, or check the mirror",
                )
            os.chmod(partial, 0o644)
            os.replace(partial, path)
        except (OSError, http.client.HTTPException) as error:
            raise MirrorError(
                f"downloading {download.filename} from {download.url} failed: {error}",
                hint="sync again: files already downloaded are kept",
            ) from None
        finally:
            partial.unlink(missing_ok=True)
        entry = file_entry(path)
        with self._lock:
            self.entries[download.filename] = entry
            self.new += 1
            save_manifest(self.destination, self.entries)


def sync(config: RunConfig, names: list[str], destination: Path, *, say: Callable[[str], None]) -> SyncResult:
    """Fill `destination` with every file the images `names` (and their parents) download from
    PyPI while building, and a PEP 503 index of them under simple/, through the run's mirror
    with its credentials and its one CA bundle."""
    plans = plan(config.project, names)
    mirror = config.mirror
    source = PipSource.of(mirror, config.logins(), config.ca_file)
    destination = destination.resolve()
    destination.mkdir(parents=True, exist_ok=True)
    lock = config.cache_dir / f"mirror-sync-{hashlib.sha256(str(destination).encode()).hexdigest()[:12]}.lock"
    with exclusive(lock, say), tempfile.TemporaryDirectory(prefix="imagebuild-sync-") as scratch:
        run = _Sync(destination, source, Path(scratch), dict(config.environ), say)
        for item in plans:
            if item.recipe.spec.source is not None:
                say(f"{item.name}: skipped, repo2docker builds it from its [source] repository")
                continue
            if item.recipe.spec.dockerfile is not None:
                say(f"{item.name}: skipped, its Dockerfile's RUN lines say what they install (the mirror serves them as asked)")
                continue
            target = image_target(item)
            if item.recipe.spec.root is not None or item.on_dockerfile_recipe:
                say(f"{item.name}: resolving the installer {INSTALLER} for {target}")
                run.fetch(run.resolve(target, [INSTALLER]))
            locked = read_lock(item.recipe)
            if locked is not None and locked.requirements.strip():
                say(f"{item.name}: resolving its lock ({LOCK_FILE}) for {target}")
                pins = Path(scratch) / f"{item.name}.lock.txt"
                pins.write_text(locked.requirements)
                run.fetch(run.resolve(target, ["-r", str(pins)]))
            elif locked is None and item.recipe.requirements is not None:
                say(f"{item.name}: resolving {item.recipe.requirements.name} for {target}")
                arguments = ["-r", str(item.recipe.requirements)]
                for parent in item.ancestors:
                    arguments += ["-c", str(parent.requirements)] if parent.requirements else []
                run.fetch(run.resolve(target, arguments))
        save_manifest(destination, run.entries)
        write_index(destination, run.entries)
    needed = [run.entries[filename] for filename in run.needed]
    return SyncResult(
        destination=destination,
        files=len(needed),
        new=run.new,
        total_bytes=sum(entry.size for entry in needed),
        packages=tuple(sorted({entry.project for entry in needed})),
    )
