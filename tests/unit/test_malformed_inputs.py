"""Every bad input gets one clear error: exit code 2, the file (or the argument) named, a hint,
no traceback, nothing written. One table row per malformed input, grouped by family; each row
runs the real command line in-process, in a small project of its own."""

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import certifi
import pytest
from typer.testing import CliRunner

from imagebuild.cli.main import app
from imagebuild.errors import ImagebuildError

SECRET = "ghp_" + "Zq8Lw2Nx5Rv7Tb1Kc4Hd6Jf9Mp3Sg0Ye2Ua"
NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
CHILD = 'parent = "base"\n'
SHA = "0" * 64
CONDA = CHILD + '[conda]\nenvironment = "environment.yml"\n'
STACK = "dockerfile = {}\n"
ENVIRONMENT = "channels: [conda-forge]\ndependencies: [numpy]\n"
_BLOCKS = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", Path(certifi.where()).read_text(), re.DOTALL)
CUT_BUNDLE = _BLOCKS[0] + _BLOCKS[1][:300] + "\n"
"""A bundle whose second certificate was cut off (a copy that stopped early)."""
CUT_AND_CLOSED = _BLOCKS[0] + _BLOCKS[1][:300] + "\n-----END CERTIFICATE-----\n" + _BLOCKS[2]


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, str | bytes | None]
    args: list[str]
    named: str
    """The file (or argument) the message must name."""
    says: str = ""
    """A part of the message, to show it is this problem that is reported."""
    hub: bool = False
    """Write a hub folder ('hub') with `imagebuild hub init` first."""
    hidden: tuple[str, ...] = field(default=())
    """Text that must not be in the output (a secret)."""


RENDER = ["render", "t"]
HUB_CHECK = ["hub", "check", "--dir", "hub"]

CASES = [
    # files that are not UTF-8, start with a byte-order mark, or nest absurdly deep
    Case("recipe-latin1", {"images/t/image.toml": b'description = "caf\xe9"\nparent = "base"\n'}, RENDER, "image.toml", "not UTF-8"),
    Case("project-bom", {"imagebuild.toml": '\ufeffimages = "images"\n'}, RENDER, "imagebuild.toml", "byte-order mark"),
    Case("profile-deep", {"mirrors/deep.toml": "a = " + "[" * 5000 + "]" * 5000 + "\n"}, ["mirror", "show", "deep"], "deep.toml", "nests deeper"),
    Case("requirements-latin1", {"images/t/image.toml": CHILD + '[python]\nrequirements = "requirements.txt"\n',
                                 "images/t/requirements.txt": b"caf\xe9\n"}, RENDER, "requirements.txt", "not UTF-8"),
    Case("notebook-bom", {"images/t/smoke/a.ipynb": "\ufeff" + NOTEBOOK}, RENDER, "a.ipynb", "byte-order mark"),
    Case("hub-utf16", {"hub/hub.toml": 'name = "x"\n'.encode("utf-16")}, HUB_CHECK, "hub.toml", "UTF-16", hub=True),
    Case("rewrite-latin1", {"x/requirements.txt": b"caf\xe9\n"}, ["mirror", "rewrite", "x/requirements.txt", "--mirror", "tuna"],
         "requirements.txt", "not UTF-8"),
    Case("lock-latin1", {"images/t/image.toml": CHILD + '[python]\nrequirements = "requirements.txt"\n',
                         "images/t/requirements.txt": "numpy\n", "images/t/image.lock": b'inputs = "\xe9"\n'},
         ["lock", "--check", "t"], "image.lock", "not UTF-8"),
    # YAML of the wrong shape, notebooks that are not notebooks: caught when the recipe is loaded
    Case("environment-dependencies-not-a-list", {"images/t/image.toml": CONDA,
                                                 "images/t/environment.yml": "channels: [conda-forge]\ndependencies: numpy\n"},
         RENDER, "environment.yml", "dependencies"),
    Case("conda-lock-not-a-lock", {"images/t/image.toml": CONDA, "images/t/environment.yml": ENVIRONMENT,
                                   "images/t/conda-lock.yml": "hello: world\n"}, RENDER, "conda-lock.yml", "not a conda-lock file"),
    Case("notebook-invalid-json", {"images/t/smoke/a.ipynb": "{not json"}, RENDER, "a.ipynb", "not valid JSON"),
    Case("notebook-no-cells", {"images/t/smoke/a.ipynb": json.dumps({"nbformat": 4, "metadata": {}})}, RENDER, "a.ipynb", "cells"),
    Case("notebook-nbformat-3", {"images/t/smoke/a.ipynb": json.dumps({"nbformat": 3, "worksheets": []})}, RENDER, "a.ipynb", "nbformat 4"),
    # free-form strings that end up in generated files
    Case("env-name", {"images/t/image.toml": CHILD + '[env]\n"MY VAR" = "1"\n'}, RENDER, "image.toml", "NAME of an environment variable"),
    Case("apt-package", {"images/t/image.toml": CHILD + '[os]\npackages = ["curl; rm -rf /"]\n'}, RENDER, "image.toml", "Debian package"),
    Case("apt-txt-line", {"images/t/image.toml": CHILD + '[os]\npackages_file = "apt.txt"\n', "images/t/apt.txt": "curl\ncurl wget\n"},
         RENDER, "apt.txt", "line 2"),
    Case("root-with-scheme", {"images/t/image.toml": 'root = "https://docker.io/library/debian:bookworm"\n'}, RENDER, "image.toml", "URL scheme"),
    Case("repository-name", {"imagebuild.toml": '[build]\nrepository = "My Images"\n'}, RENDER, "imagebuild.toml", "repository"),
    Case("registry-with-scheme", {"imagebuild.toml": '[publish]\nregistry = "https://127.0.0.1:5000"\n'}, RENDER, "imagebuild.toml", "URL scheme"),
    Case("archive-url", {"imagebuild.toml": '[bootstrap]\narchive = "deb.debian.org/debian"\n'}, RENDER, "imagebuild.toml", "URL"),
    Case("asset-url", {"images/t/image.toml": CHILD + f'[[assets]]\nname = "a"\nurls = ["ftp://x.org/a.tgz"]\nsha256 = "{SHA}"\n'},
         RENDER, "image.toml", "URL"),
    Case("git-url-pip-form", {"images/t/image.toml": CHILD + '[[dev_packages]]\nname = "a"\nurl = "git+https://github.com/a/b@main"\nref = "main"\n'},
         RENDER, "image.toml", "pip's VCS form"),
    Case("volume-placeholder", {"hub/hub.toml": None}, HUB_CHECK, "hub.toml", "unknown placeholder {user}", hub=True),
    Case("asset-dest-root", {"images/t/image.toml": CHILD + f'[[assets]]\nname = "a"\nfilename = "a.tgz"\nsha256 = "{SHA}"\ndest = "/"\n'},
         RENDER, "image.toml", "must not be '/'"),
    Case("file-dest-dotdot", {"images/t/image.toml": CHILD + '[[files]]\nsrc = "a"\ndest = "/etc/../a"\n', "images/t/a": "x"},
         RENDER, "image.toml", "'..'"),
    Case("file-mode", {"images/t/image.toml": CHILD + '[[files]]\nsrc = "a"\ndest = "/a"\nmode = "0o755"\n', "images/t/a": "x"},
         RENDER, "image.toml", "octal file mode"),
    Case("hub-init-registry-url", {}, ["hub", "init", "hub2", "--admin", "alice", "--registry", "https://r.example.org"], "--registry", "URL scheme"),
    Case("selection-digest", {"hub/images.toml": '[[images]]\nlabel = "t"\nimage = "t"\ntag = "1"\nref = "r.org/t@sha256:1"\ndigest = "sha256:1"\n'},
         HUB_CHECK, "images.toml", "[images][0]", hub=True),
    # patterns that match nothing
    Case("smoke-pattern", {"images/t/image.toml": CHILD + '[smoke]\nnotebooks = ["tests/*.ipynb"]\n'}, RENDER, "image.toml", "matches no file"),
    Case("hooks-pattern", {"images/t/image.toml": CHILD + '[hooks]\nbefore_notebook = ["start.d/*.sh"]\n'}, RENDER, "image.toml", "matches no file"),
    # a directory where a file is expected
    Case("requirements-folder", {"images/t/image.toml": CHILD + '[python]\nrequirements = "reqs"\n', "images/t/reqs/x": "numpy\n"},
         RENDER, "image.toml", "is a folder"),
    Case("rewrite-folder", {"x/Dockerfile/y": "FROM debian\n"}, ["mirror", "rewrite", "x/Dockerfile", "--mirror", "tuna"], "Dockerfile", "is a folder"),
    # hub select checks the name and the tag before it asks the registry (none answers here)
    Case("select-unknown-image", {}, ["hub", "select", "nosuch:1", "--dir", "hub"], "nosuch", "not an image of this project", hub=True),
    Case("select-bad-tag", {}, ["hub", "select", "t:la test", "--dir", "hub"], "la test", "tag", hub=True),
    Case("select-url", {}, ["hub", "select", "https://x.org/t:1", "--dir", "hub"], "https://x.org/t:1", "NAME:TAG", hub=True),
    # a setting from imagebuild.toml is reported against imagebuild.toml
    Case("project-mirror", {"imagebuild.toml": '[build]\nmirror = "tunaa"\n'}, RENDER, "imagebuild.toml", "did you mean 'tuna'"),
    Case("project-images", {"imagebuild.toml": 'images = "recipes"\n'}, RENDER, "imagebuild.toml", "images"),
    Case("project-nightly-hub", {"imagebuild.toml": '[nightly]\nhubs = ["nohub"]\n'}, ["nightly"], "imagebuild.toml", "hubs[0]"),
    # a dockerfile recipe's Dockerfile is checked before anything is built: the file and the line
    Case("stack-exec-run", {"images/t/image.toml": STACK, "images/t/Dockerfile": 'FROM debian:bookworm\nRUN ["pip", "install", "x"]\n'},
         ["build", "t"], "images/t/Dockerfile", "line 2: an exec-form RUN"),
    Case("stack-from-arg", {"images/t/image.toml": STACK, "images/t/Dockerfile": "ARG BASE\nFROM ${BASE}\n"},
         ["plan", "t"], "images/t/Dockerfile", "line 2: FROM ${BASE}: the build argument BASE has no value"),
    Case("stack-stage", {"images/t/image.toml": STACK, "images/t/Dockerfile": "FROM debian:bookworm\nCOPY --from=tols /a /a\n"},
         RENDER, "images/t/Dockerfile", "line 2: COPY --from=tols: no stage named 'tols'"),
    Case("stack-parse", {"images/t/image.toml": STACK, "images/t/Dockerfile": "FROM debian:bookworm\nRUN apt-get update &&\n  apt-get install git\n"},
         ["build", "t"], "images/t/Dockerfile", "line 3: unknown instruction 'APT-GET'"),
    Case("stack-target", {"images/t/image.toml": 'dockerfile = { target = "final" }\n', "images/t/Dockerfile": "FROM debian:bookworm AS build\n"},
         ["build", "t"], "image.toml", "no stage named 'final'"),
    # a secret where the NAME of an environment variable belongs is refused, never repeated
    Case("credential-secret", {"mirrors/site.toml": f'[[credentials]]\nhost = "x.org"\nusername_env = "U"\npassword_env = "{SECRET}"\n'},
         ["mirror", "show", "site"], "site.toml", "looks like a secret", hidden=(SECRET,)),
    Case("env-secret", {"images/t/image.toml": CHILD + f'[env]\n"{SECRET}" = "1"\n'}, RENDER, "image.toml", "looks like a secret",
         hidden=(SECRET,)),
    # found tried as an admin would (issue 24): flags, CA bundles, recipe fields
    Case("registry-scheme", {}, ["plan", "t", "--registry", "https://127.0.0.1:5000"], "--registry", "has a URL scheme"),
    Case("ca-folder", {"certs/ca.pem": CUT_BUNDLE}, ["render", "t", "--ca-cert", "certs"], "--ca-cert", "is a folder"),
    Case("ca-cut-off", {"cut.pem": CUT_BUNDLE}, ["render", "t", "--ca-cert", "cut.pem"], "cut.pem", "begins at line 17"),
    Case("ca-cut-and-closed", {"cut.pem": CUT_AND_CLOSED}, ["render", "t", "--ca-cert", "cut.pem"], "cut.pem", "cut off or damaged"),
    Case("stack-undeclared-arg", {"images/t/image.toml": 'dockerfile = { args = { PYTHON_VERSON = "3.12" } }\n',
                                  "images/t/Dockerfile": "ARG PYTHON_VERSION=3.11\nFROM debian:bookworm\n"},
         RENDER, "image.toml", "did you mean 'PYTHON_VERSION'"),
    Case("python-environment-interpreter", {"images/t/image.toml": CHILD + '[python]\nenvironment = "/opt/conda/bin/python"\n'},
         RENDER, "image.toml", "name the environment's folder, the one holding bin/python: '/opt/conda'"),
    Case("env-key-named", {"images/t/image.toml": CHILD + '[env]\n"MY-VAR" = "1"\n'}, RENDER, "image.toml", "key 'MY-VAR'"),
    Case("parent-image-reference", {"images/t/image.toml": 'parent = "imagebuild/base:latest"\n'}, RENDER, "image.toml",
         "is an image reference"),
    Case("toml-never-closed", {"images/t/image.toml": CHILD + 'description = """abc\n'}, RENDER, "image.toml",
         "opened at line 2 and never closed"),
    Case("builder-name", {}, ["build", "t", "--builder", "no such"], "--builder", "is not a builder"),
    Case("jobs-zero", {}, ["build", "t", "--jobs", "0"], "--jobs", "1 or more"),
    Case("unknown-key-secret", {"images/t/image.toml": CHILD + f'"{SECRET}-x" = "1"\n'}, RENDER, "image.toml", "not repeated",
         hidden=(SECRET,)),
]

REPO = Path(__file__).resolve().parents[2]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _run(args: list[str]) -> tuple[int, str]:
    """What `imagebuild ARGS` prints and exits with (cli.main.main's handling, in-process)."""
    result = CliRunner().invoke(app, args)
    error = result.exception
    if isinstance(error, ImagebuildError):
        return error.exit_code, f"{result.output}error: {error.render()}\n"
    if error is not None and not isinstance(error, SystemExit):
        return 1, f"{result.output}Traceback: {error!r}"
    return result.exit_code, result.output


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small project: a root recipe, a child 't', the bundled mirror profiles."""
    root = tmp_path / "project"
    (root / "images" / "base").mkdir(parents=True)
    (root / "images" / "base" / "image.toml").write_text('root = "debian:bookworm"\n')
    (root / "images" / "t").mkdir()
    (root / "images" / "t" / "image.toml").write_text(CHILD)
    (root / "mirrors").mkdir()
    for profile in ("tuna.toml",):
        (root / "mirrors" / profile).write_text((REPO / "mirrors" / profile).read_text())
    monkeypatch.chdir(root)
    monkeypatch.delenv("IMAGEBUILD_MIRROR", raising=False)
    monkeypatch.setenv("IMAGEBUILD_REGISTRY", "127.0.0.1:1")  # nothing answers: no case may get that far
    return root


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_malformed_input_is_one_clear_error(case: Case, project: Path) -> None:
    if case.hub:
        code, output = _run(["hub", "init", "hub", "--admin", "alice"])
        assert code == 0, output
    for relative, data in case.files.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:  # the hub.toml hub init wrote, with one bad volume placeholder
            path.write_text(path.read_text().replace('"hub-user-{username}"', '"hub-user-{user}"'))
        elif isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    before = _snapshot(project)
    code, output = _run(case.args)
    assert "Traceback" not in output
    assert code == 2, output
    first, *rest = output.strip().splitlines()
    assert first.startswith("error: ") and case.named in first, output
    assert case.says in output, output
    assert rest and rest[0].strip().startswith("hint: "), output
    for secret in case.hidden:
        assert secret not in output
    assert _snapshot(project) == before, "nothing is written"
    assert not (project / "hub2").exists()


def test_a_bom_stays_accepted_by_mirror_rewrite(project: Path) -> None:
    """`mirror rewrite` edits files admins already have: their byte-order mark is kept, not refused."""
    (project / "requirements.txt").write_text("\ufeffnumpy\n", encoding="utf-8")
    code, output = _run(["mirror", "rewrite", "requirements.txt", "--mirror", "tuna"])
    assert code == 0, output
    assert output.startswith("\ufeff--index-url https://pypi.tuna.tsinghua.edu.cn/simple")
