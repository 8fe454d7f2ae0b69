"""`imagebuild mirror sync`: the exact files the images download from PyPI, as a PEP 503 index.

pip resolves each image as its build does (the recipe's pins with its parents' pins as
constraints, and the installer for root images), but for the image's interpreter and platform
rather than this host's, and reports the files it picked; sync downloads those, checks them
against the index's hashes, and writes the index. A package published only as a source
distribution is mirrored with everything its build needs, which sync proves by building it
here from the mirror alone.
"""

import base64
import hashlib
import html
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import tomllib
import urllib.request
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion

from imagebuild.build.render import INSTALLER
from imagebuild.errors import MirrorError
from imagebuild.inputs.lock import LOCK_FILE, read_lock
from imagebuild.inputs.target import Target, image_target
from imagebuild.mirrors.hostenv import with_credentials
from imagebuild.model.mirror import Mirror
from imagebuild.plan import Project, plan
from imagebuild.system import exclusive

if TYPE_CHECKING:  # packaging.requirements is imported where a requirement is parsed
    from packaging.requirements import Requirement

PYPI = "https://pypi.org/simple"
MANIFEST = "manifest.json"
LEGACY_BUILD_REQUIRES = ["setuptools>=40.8.0", "wheel"]
"""What pip and uv build a source tree without [build-system] with (PEP 518)."""
DOWNLOADS_AT_ONCE = 4


_PIP_FOR_TARGET = """\
import json, runpy, sys
from pip._vendor.packaging import markers
target = json.loads(sys.argv.pop(1))
host = markers.default_environment
markers.default_environment = lambda: {**host(), **target}
sys.argv[0] = "pip"
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""
"""pip takes tags and Requires-Python from --python-version and --platform, but evaluates
markers such as `; python_version < "3.12"` for the interpreter running it; this runs pip
with the target's marker values, so the host's Python does not change what is mirrored."""


@dataclass(frozen=True)
class Entry:
    """What manifest.json keeps of one file: enough to verify it and to list it in the index."""

    project: str
    sha256: str
    size: int
    requires_python: str | None = None


@dataclass(frozen=True)
class Download:
    """A file pip picked: where its index has it, and the hash the index gives for it."""

    project: str
    version: str
    url: str
    sha256: str | None

    @property
    def filename(self) -> str:
        return unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class SyncResult:
    """What the images need from `destination`: `files` files (`new` of them downloaded now)."""

    destination: Path
    files: int
    new: int
    total_bytes: int
    packages: tuple[str, ...]


def _sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _member(archive: Path, pattern: str) -> bytes:
    """The first file in a wheel or source distribution whose path matches `pattern`, or b''."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as opened:
            names = [name for name in opened.namelist() if re.fullmatch(pattern, name)]
            return opened.read(names[0]) if names else b""
    with tarfile.open(archive) as opened:
        member = next((item for item in opened if re.fullmatch(pattern, item.name)), None)
        handle = opened.extractfile(member) if member else None
        return handle.read() if handle else b""


def file_entry(path: Path) -> Entry:
    """Hash, size, project (from the file name, as installers read it) and Requires-Python."""
    from packaging.metadata import parse_email  # (and the email package's parsers) only when a wheelhouse is read

    try:
        if path.name.endswith(".whl"):
            project = parse_wheel_filename(path.name)[0]
        else:
            project = parse_sdist_filename(path.name)[0]
        metadata = r"[^/]+\.dist-info/METADATA" if path.name.endswith(".whl") else r"[^/]+/PKG-INFO"
        raw, _ = parse_email(_member(path, metadata))
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as error:
        raise MirrorError(f"not a wheel or source distribution name: {error}", path=path) from None
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        raise MirrorError(f"unreadable archive: {error}", path=path, hint="delete it and sync again") from None
    return Entry(str(project), _sha256(path), path.stat().st_size, raw.get("requires_python"))


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a part of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def load_manifest(destination: Path, say: Callable[[str], None]) -> dict[str, Entry]:
    """The manifest's entries whose files are present and intact; a damaged file is deleted."""
    try:
        document = json.loads((destination / MANIFEST).read_text())
        recorded = {filename: Entry(**fields) for filename, fields in document["files"].items()}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, AttributeError):
        say(f"{destination / MANIFEST} is damaged: downloading every file again")
        return {}
    entries = {}
    for filename, entry in recorded.items():
        path = destination / "files" / filename
        if not path.is_file():
            continue
        if path.stat().st_size != entry.size or _sha256(path) != entry.sha256:
            say(f"{filename} does not match {MANIFEST}: downloading it again")
            path.unlink()
            continue
        entries[filename] = entry
    return entries


def save_manifest(destination: Path, entries: Mapping[str, Entry]) -> None:
    document = {"version": 1, "files": {name: asdict(entries[name]) for name in sorted(entries)}}
    _write_atomically(destination / MANIFEST, (json.dumps(document, indent=1) + "\n").encode())


def _page(title: str, links: list[str]) -> bytes:
    body = "\n".join(f"    {link}<br>" for link in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    ).encode()


def write_index(destination: Path, entries: Mapping[str, Entry]) -> None:
    """PEP 503 pages under simple/ linking each file in files/ with its hash and Requires-Python."""
    projects: dict[str, list[str]] = defaultdict(list)
    for filename in sorted(entries):
        entry = entries[filename]
        attributes = f' data-requires-python="{html.escape(entry.requires_python)}"' if entry.requires_python else ""
        href = f"../../files/{quote(filename)}#sha256={entry.sha256}"
        projects[entry.project].append(f'<a href="{href}"{attributes}>{html.escape(filename)}</a>')
    simple = destination / "simple"
    for project, links in projects.items():
        _write_atomically(simple / project / "index.html", _page(f"Links for {project}", links))
    _write_atomically(
        simple / "index.html", _page("Simple index", [f'<a href="{name}/">{name}</a>' for name in sorted(projects)])
    )
    for folder in simple.iterdir():
        if folder.is_dir() and folder.name not in projects:
            shutil.rmtree(folder)


def _missing(pip_output: str) -> "Requirement | None":
    """The requirement pip found no file for, from its one stable error line."""
    from packaging.requirements import InvalidRequirement, Requirement

    found = re.findall(r"No matching distribution found for (\S+)", pip_output)
    try:
        return Requirement(found[-1]) if found else None
    except InvalidRequirement:
        return None


def _tail(output: str, lines: int = 12) -> str:
    return "\n".join(output.strip().splitlines()[-lines:])


def _build_requires(sdist: Path) -> list[str]:
    """The static [build-system] requires of a source distribution (PEP 518)."""
    try:
        document = tomllib.loads(_member(sdist, r"[^/]+/pyproject\.toml").decode())
        requires = document.get("build-system", {}).get("requires")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        requires = None
    return list(requires) if isinstance(requires, list) else LEGACY_BUILD_REQUIRES


@dataclass
class _Source:
    """The index pip reads and the way to fetch its files: TLS trust and credentials."""

    index_url: str = PYPI
    extra_index_urls: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    cert: Path | None = None

    @classmethod
    def of(cls, mirror: Mirror | None, ca_bundle: Path | None, scratch: Path) -> "_Source":
        bundles = [path for path in (ca_bundle, mirror.ca_cert if mirror else None) if path is not None]
        cert = None
        if bundles:
            cert = scratch / "ca-bundle.pem"
            cert.write_bytes(b"\n".join(path.read_bytes() for path in bundles))
        if mirror is None or mirror.spec.pypi is None:
            return cls(cert=cert)
        pypi = mirror.spec.pypi
        return cls(pypi.index_url, list(pypi.extra_index_urls), list(pypi.trusted_hosts), mirror.credentials(), cert)

    def pip_options(self) -> list[str]:
        options = ["--index-url", with_credentials(self.index_url, self.credentials)]
        for url in self.extra_index_urls:
            options += ["--extra-index-url", with_credentials(url, self.credentials)]
        for host in self.trusted_hosts:
            options += ["--trusted-host", host]
        return [*options, "--cert", str(self.cert)] if self.cert else options

    def request(self, url: str) -> tuple[urllib.request.Request, ssl.SSLContext]:
        """A request for one of the index's files, with its host's credentials, and the TLS to use."""
        parts = urlsplit(url)
        request = urllib.request.Request(url)
        login = self.credentials.get(parts.netloc) or self.credentials.get(parts.hostname or "")
        if login:
            token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=self.cert)
        if parts.netloc in self.trusted_hosts or parts.hostname in self.trusted_hosts:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return request, context


class _Sync:
    """One sync run: the verified files, the files this run needs, and pip's scratch space."""

    def __init__(self, destination: Path, source: _Source, scratch: Path, say: Callable[[str], None]) -> None:
        self.files = destination / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        for leftover in destination.rglob(".*.part"):  # from a sync that was killed
            leftover.unlink()
        self.destination = destination
        self.source = source
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

    def _pip(self, arguments: list[str], target: Target | None) -> subprocess.CompletedProcess[str]:
        """pip without this host's configuration (pip.conf, PIP_* variables), for `target` when given."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        environment["PIP_CONFIG_FILE"] = os.devnull
        launcher = [sys.executable, "-m", "pip"]
        if target is not None:
            launcher = [sys.executable, "-c", _PIP_FOR_TARGET, json.dumps(target.markers())]
        options = ["--isolated", "--disable-pip-version-check", "--no-input", "--quiet"]
        return subprocess.run(
            [*launcher, *arguments, *options], env=environment, capture_output=True, text=True, check=False
        )

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
            missing = _missing(output)
            if missing is None:
                raise MirrorError(
                    f"pip cannot resolve {' '.join(arguments)} for {target}:\n{_tail(output)}",
                    hint="check the pins, and the index with 'imagebuild mirror check'",
                )
            if canonicalize_name(missing.name) in self.sdists.keys() | self._building:
                raise MirrorError(
                    f"'{missing}' publishes no wheel for {target}, and the wheel built from its source "
                    f"distribution on this host does not fit it either:\n{_tail(output)}",
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
                    f"source distributions:\n{_tail(output)}",
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
                f"'{pin}' has neither a wheel for {target} nor a source distribution:\n{_tail(output)}",
                hint=f"pin a version of {missing.name} that publishes one: https://pypi.org/project/{project}/#files",
            )
        (sdist,) = found
        self.fetch([sdist])
        self._building.add(project)
        room = self.scratch / f"build-{project}"  # only the build's own requirements, found afresh each sync
        room.mkdir()
        requires = _build_requires(self.files / sdist.filename)
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
            lacking = _missing(built)
            if lacking is None or str(lacking) in tried:
                raise MirrorError(
                    f"the source distribution {sdist.filename} does not build from the mirror:\n{_tail(built)}",
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


def sync(
    project: Project,
    names: list[str],
    destination: Path,
    *,
    mirror: Mirror | None,
    ca_bundle: Path | None,
    say: Callable[[str], None],
) -> SyncResult:
    """Fill `destination` with every file the images `names` (and their parents) download from
    PyPI while building, and a PEP 503 index of them under simple/."""
    plans = plan(project, names)
    destination = destination.resolve()
    destination.mkdir(parents=True, exist_ok=True)
    lock = "mirror-sync-" + hashlib.sha256(str(destination).encode()).hexdigest()[:12]
    with exclusive(lock, say), tempfile.TemporaryDirectory(prefix="imagebuild-sync-") as scratch:
        run = _Sync(destination, _Source.of(mirror, ca_bundle, Path(scratch)), Path(scratch), say)
        for item in plans:
            if item.recipe.spec.source is not None:
                say(f"{item.name}: skipped, repo2docker builds it from its [source] repository")
                continue
            target = image_target(item)
            if item.recipe.spec.root is not None:
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
