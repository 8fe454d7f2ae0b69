"""A wheelhouse as `imagebuild mirror sync` fills it: files/ with every file, manifest.json
recording each file's hash and size (so a damaged file is found and fetched again), and
simple/, the PEP 503 pages pip and uv read through a profile's [serve] pypi."""

import hashlib
import html
import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion

from imagebuild.errors import MirrorError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Entry:
    """What manifest.json keeps of one file: enough to verify it and to list it in the index."""

    project: str
    sha256: str
    size: int
    requires_python: str | None = None


def sha256_of(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def member(archive: Path, pattern: str) -> bytes:
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
        raw, _ = parse_email(member(path, metadata))
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as error:
        raise MirrorError(f"not a wheel or source distribution name: {error}", path=path) from None
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        raise MirrorError(f"unreadable archive: {error}", path=path, hint="delete it and sync again") from None
    return Entry(str(project), sha256_of(path), path.stat().st_size, raw.get("requires_python"))


def write_atomically(path: Path, data: bytes) -> None:
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
        if path.stat().st_size != entry.size or sha256_of(path) != entry.sha256:
            say(f"{filename} does not match {MANIFEST}: downloading it again")
            path.unlink()
            continue
        entries[filename] = entry
    return entries


def save_manifest(destination: Path, entries: Mapping[str, Entry]) -> None:
    document = {"version": 1, "files": {name: asdict(entries[name]) for name in sorted(entries)}}
    write_atomically(destination / MANIFEST, (json.dumps(document, indent=1) + "\n").encode())


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
        write_atomically(simple / project / "index.html", _page(f"Links for {project}", links))
    write_atomically(
        simple / "index.html", _page("Simple index", [f'<a href="{name}/">{name}</a>' for name in sorted(projects)])
    )
    for folder in simple.iterdir():
        if folder.is_dir() and folder.name not in projects:
            shutil.rmtree(folder)
