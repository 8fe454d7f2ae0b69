"""Shared helpers: the repository root and a way to write small projects in tmp folders."""

import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from imagebuild.config import RunConfig, RunOptions, configure, merged_trust
from imagebuild.inputs.fetch import Fetcher
from imagebuild.model.mirror import Mirror
from imagebuild.model.project import Project
from imagebuild.system import port_is_free

REPO = Path(__file__).resolve().parent.parent

# Integration tests run the `imagebuild` command in subprocesses (unit tests run it in-process:
# tests/cli.py). Under the README's test command the interpreter is .venv/bin/python of a virtual
# environment nobody activated, so that command is not on PATH (or an older install elsewhere is):
# put this interpreter's folder first, for the whole session, so every subprocess finds the
# `imagebuild` installed beside it. Not resolved: a venv's python is a symlink to the system's.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def write_notebook(path: Path, *sources: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity; its stdout."""
    return subprocess.run(["git", "-C", str(repo), *args], env=GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


def free_port(span: int = 1) -> int:
    """A loopback port that is free, with the `span - 1` ports after it (a hub uses three in a row)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + span < 65000 and all(port_is_free(port + offset) for offset in range(1, span)):
            return port


PSEUDO_ELEMENTS = {"Si": 4, "O": 6, "Al": 3}


def write_pseudo_archive(path: Path) -> str:
    """A small SSSP-style library: a tar.gz of valid UPF v2 files, one per element. Returns its sha256."""
    with tarfile.open(path, "w:gz") as archive:
        for element, valence in PSEUDO_ELEMENTS.items():
            body = (
                '<UPF version="2.0.1">\n'
                f'  <PP_HEADER element="{element}" pseudo_type="NC" functional="PBE" z_valence="{valence}.0" />\n'
                "</UPF>\n"
            ).encode()
            info = tarfile.TarInfo(f"{element}.pbe-test.UPF")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ProjectFactory:
    """A throwaway project: the bundled base recipe copied in, plus recipes a test writes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "images").mkdir(parents=True)
        shutil.copytree(REPO / "images" / "base", root / "images" / "base")

    def recipe(self, name: str, toml: str, files: dict[str, str] | None = None) -> Path:
        folder = self.root / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "image.toml").write_text(textwrap.dedent(toml))
        for relative, text in (files or {}).items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(textwrap.dedent(text))
        return folder


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    return ProjectFactory(tmp_path / "project")


def run_config(
    project: Project, ca_bundle: bytes | None = None, mirror: Mirror | None = None, *, offline: bool = True
) -> RunConfig:
    """A run's configuration as a command resolves it, with `mirror` given as an object and
    exactly the CA bundle `ca_bundle` trusted (none when None)."""
    return configure(project, mirror, RunOptions(offline=offline), os.environ, ca_bundle)


def host_trust() -> bytes | None:
    """The bundle a command would trust on this host with no --ca-cert and no profile."""
    return merged_trust(os.environ, None, None)


def offline_fetcher(
    project: Project, ca_bundle: bytes | None = None, mirror: Mirror | None = None, *, offline: bool = True
) -> Fetcher:
    """A fetcher as `imagebuild render` makes one: inputs from the host caches, nothing downloaded."""
    return Fetcher(run_config(project, ca_bundle, mirror, offline=offline), say=print)
