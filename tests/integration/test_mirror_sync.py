"""Network test (downloads from PyPI; no engine needed): `mirror sync` of a small project (the
bundled base, and a child pinning six and docopt, which PyPI publishes only as a source
distribution), served on loopback and installed from that index alone with pip into a fresh
virtual environment. The server's access log must show every installed file, and the build
requirements of docopt, which pip fetches while building it."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

from packaging.utils import (
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from imagebuild.build.render import INSTALLER
from imagebuild.mirrors.serve import IndexServer
from imagebuild.mirrors.sync import sync
from imagebuild.model.project import load_project
from tests.conftest import host_trust, run_config

CHILD_PINS = "six==1.16.0\ndocopt==0.6.2\n"


def _pip(python: Path, *arguments: str) -> str:
    """The environment's pip, with none of this host's pip configuration."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    environment["PIP_CONFIG_FILE"] = os.devnull
    completed = subprocess.run(
        [str(python), "-m", "pip", *arguments, "--isolated", "--disable-pip-version-check"],
        env=environment, capture_output=True, text=True, check=False, timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    return completed.stdout


def _distributions(python: Path) -> set[tuple[str, str]]:
    listed = json.loads(_pip(python, "list", "--format", "json"))
    return {(canonicalize_name(item["name"]), item["version"]) for item in listed}


def _served(log: Path) -> dict[str, int]:
    """File name -> status of each request for a file, from the index server's access log."""
    found = {}
    for line in log.read_text().splitlines():
        _, _, method, path, status, _ = line.split()
        if method == "GET" and path.startswith("/files/"):
            found[unquote(path.removeprefix("/files/"))] = int(status)
    return found


def _release(filename: str) -> tuple[str, str]:
    parse = parse_wheel_filename if filename.endswith(".whl") else parse_sdist_filename
    name, version = parse(filename)[:2]
    return str(name), str(version)


def test_sync_from_pypi_then_install_from_the_served_folder_alone(make_project, tmp_path):
    make_project.recipe(
        "tiny",
        """\
        parent = "base"
        [python]
        requirements = "requirements.txt"
        """,
        {"requirements.txt": CHILD_PINS},
    )
    project = load_project(make_project.root)
    wheelhouse = tmp_path / "wheelhouse"
    started = time.monotonic()
    result = sync(run_config(project, host_trust(), offline=False), ["tiny"], wheelhouse, say=print)
    print(f"synced {result.files} files, {result.total_bytes / 1e6:.1f} MB in {time.monotonic() - started:.0f} s")
    files = {path.name for path in (wheelhouse / "files").iterdir()}
    assert "docopt-0.6.2.tar.gz" in files
    assert {"six", "uv", "jupyterlab", "setuptools", "wheel"} <= set(result.packages)
    assert result.new == result.files == len(files)


    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    bundled = _distributions(python)  # pip and setuptools, which venv brings along
    base_pins = str(make_project.root / "images" / "base" / "requirements.txt")
    child_pins = str(make_project.root / "images" / "tiny" / "requirements.txt")
    with IndexServer(wheelhouse, "http://127.0.0.1:0/simple") as server:
        index = ["--no-cache-dir", "--index-url", server.url]
        _pip(python, "install", *index, INSTALLER)
        _pip(python, "install", *index, "-r", base_pins)
        _pip(python, "install", *index, "-r", child_pins, "-c", base_pins)
    installed = _distributions(python) - bundled

    served = _served(wheelhouse / "access.log")
    assert set(served.values()) == {200}, {name: status for name, status in served.items() if status != 200}
    releases = {_release(name) for name in served}
    assert len(installed) > 50
    assert installed <= releases, sorted(installed - releases)
    assert ("docopt", "0.6.2") in installed
    assert {"setuptools", "wheel"} <= {name for name, _ in releases}  # docopt's build, through the index
