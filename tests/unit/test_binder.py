"""[source] recipes: repo2docker captures a repository's build context (no Docker), the mirror step
routes every address in it, and fetch, ref and detection failures are one line each."""

import difflib
import os
import re
import textwrap
from pathlib import Path

import pytest

from imagebuild.build.binder import capture, source_label
from imagebuild.build.buildenv import SECRET_MOUNT, without_mounts
from imagebuild.errors import LockError, RecipeError
from imagebuild.inputs.lock import lock_image, lock_source
from imagebuild.inputs.lockfile import read_lock
from imagebuild.mirrors.build import build_environment, rewrite_for_build
from imagebuild.mirrors.captured import (
    BUILD_SCRIPTS,
    STAGE_PREAMBLE,
    WRAPPER,
    WRAPPER_FILE,
    rewrite_captured,
)
from imagebuild.model.mirror import load_mirror
from imagebuild.model.project import load_project
from imagebuild.pipeline import prepare, root_image
from imagebuild.plan import plan
from tests.conftest import git, offline_fetcher, write_notebook

PROFILE = """
[pypi]
index_url = "https://pypi.example.org/simple"
[conda]
channel_alias = "https://conda.example.org"
[conda.channels]
"conda-forge" = "https://conda.example.org/conda-forge"
[downloads]
"https://anaconda.org" = "https://files.example.org/anaconda.org"
[registry]
"docker.io" = "registry.example.org/dockerhub"
"""
MIRROR_HOSTS = {"pypi.example.org", "conda.example.org", "files.example.org"}
URL = re.compile(r"[a-z+]+://[^\s\"'#)]+")
INJECTED = {*STAGE_PREAMBLE, f'SHELL ["{WRAPPER}", "/bin/sh", "-c"]\n', 'SHELL ["/bin/sh", "-c"]\n'}


def make_repo(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    git(folder, "init", "--quiet", "--initial-branch=main")
    for relative, text in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(textwrap.dedent(text))
    write_notebook(folder / "notebooks" / "intro.ipynb", "print(1 + 1)")
    git(folder, "add", ".")
    git(folder, "commit", "--quiet", "-m", "course")
    return folder


@pytest.fixture
def site(make_project, tmp_path, monkeypatch):
    """A project with mirror profile 'site' and a recipe 'course' whose [source] is tmp/course."""
    monkeypatch.setenv("IMAGEBUILD_CACHE", str(tmp_path / "cache"))
    (make_project.root / "mirrors").mkdir()
    (make_project.root / "mirrors" / "site.toml").write_text(PROFILE)
    make_project.recipe("course", 'source = { repo = "../../../course", ref = "main" }\n')
    return make_project.root


def _captured(root: Path):
    """(plan item, locked source, repo2docker's context) of the 'course' recipe."""
    item = plan(load_project(root), ["course"])[0]
    source = lock_source(item.recipe, dict(os.environ))
    return item, source, capture(item, source, None, root / "kept")


def _addresses(text: str) -> set[str]:
    """The URLs a build would reach: those outside comment lines."""
    return {url for line in text.splitlines() if not line.lstrip().startswith("#") for url in URL.findall(line)}


@pytest.mark.parametrize(
    "files",
    [
        {"requirements.txt": "numpy==1.26.4\n"},
        {"environment.yml": "channels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - numpy\n"},
    ],
    ids=["requirements.txt", "environment.yml"],
)
def test_every_address_of_a_conda_build_goes_through_the_mirror_and_nothing_else_changes(site, tmp_path, files):
    repo = make_repo(tmp_path / "course", files)
    _item, source, raw = _captured(site)
    mirror = load_mirror("site", site)
    routed = rewrite_captured(raw, mirror)

    assert source.commit == git(repo, "rev-parse", "HEAD") and source.url == "../../../course"
    assert f'repo2docker.ref="{source.commit}"' in raw.dockerfile  # the commit is in what the content hash covers
    assert routed.base_ref == "registry.example.org/dockerhub/library/buildpack-deps:24.04"
    assert f"FROM {routed.base_ref}\n" in routed.dockerfile
    scripts = {f.arcname: f.data.decode() for f in routed.files if f.arcname.startswith(BUILD_SCRIPTS)}
    installer = next(text for name, text in scripts.items() if "install-2dbase-2denv" in name)
    assert "https://files.example.org/anaconda.org/conda-forge/micromamba/${MAMBA_VERSION}/download/" in installer
    locks = [text for name, text in scripts.items() if "-2elock-" in name]
    assert locks and all(line.startswith("https://conda.example.org/conda-forge/") for t in locks for line in t.splitlines() if "://" in line)
    # every network address, in the Dockerfile and every file, is the mirror's
    everything = [routed.dockerfile, *(f.data.decode() for f in routed.files if f.arcname != WRAPPER_FILE.arcname)]
    hosts = {URL.match(url).group(0).split("/")[2] for text in everything for url in _addresses(text)}  # type: ignore[union-attr]
    assert hosts == MIRROR_HOSTS - {"pypi.example.org"}, hosts  # pip takes its index from the build environment
    # pip's index: every RUN runs through with-build-env, which exports the mirror's index during the build only
    first_run = routed.dockerfile.index("\nRUN ")
    assert routed.dockerfile.index(f'SHELL ["{WRAPPER}", "/bin/sh", "-c"]') < first_run
    environment = build_environment(mirror, {}, None, "http://deb.debian.org/debian")
    assert dict(environment.variables)["PIP_INDEX_URL"] == "https://pypi.example.org/simple"
    # channel names (repo2docker's .condarc, the repository's environment.yml) resolve through the
    # mirror: micromamba reads the served settings (CONDARC/MAMBARC) during the build only
    assert "channel_alias: https://conda.example.org\n" in environment.condarc
    assert "  conda-forge: https://conda.example.org\n" in environment.condarc
    # nothing else changed: the repository's files and repo2docker's other files are byte-identical,
    # and the Dockerfile differs only in its FROM, URL lines and the build-environment lines
    before = {f.arcname: f for f in raw.files}
    after = {f.arcname: f for f in routed.files}
    assert set(after) == set(before) | {WRAPPER_FILE.arcname}
    changed = {name for name in before if before[name] != after[name]}
    assert changed and all(name.startswith(BUILD_SCRIPTS) for name in changed)
    for relative in files:
        assert before[f"src/{relative}"].data == (repo / relative).read_bytes()
    assert not any("/.git/" in f"/{name}" for name in after)
    # every RUN gets the build environment as a BuildKit secret (the classic builder gets it without)
    runs = [line for line in routed.dockerfile.splitlines() if line.startswith("RUN ")]
    assert runs and all(line.startswith(f"RUN {SECRET_MOUNT} ") for line in runs)
    classic = without_mounts(routed.dockerfile)
    diff = list(difflib.ndiff(raw.dockerfile.splitlines(keepends=True), classic.splitlines(keepends=True)))
    removed = [line[2:] for line in diff if line.startswith("- ")]
    added = [line[2:] for line in diff if line.startswith("+ ") and line[2:] not in INJECTED]
    assert removed and all(line.startswith("FROM ") or "://" in line for line in removed)
    assert len(added) == len(removed)
    # the repository's notebooks are the default smoke notebooks, kept outside the checkout
    assert [p.name for p in routed.plan.recipe.notebooks] == ["intro.ipynb"]
    assert all(p.is_file() for p in routed.plan.recipe.notebooks)


BINDER_DOCKERFILE = """\
FROM python:3.12-slim AS wheels
RUN pip wheel --wheel-dir /wheels nbclient
FROM docker.io/library/debian:bookworm
COPY --from=wheels /wheels /wheels
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN pip install --no-index --find-links /wheels nbclient
COPY notebooks/ /home/jovyan/
"""


def test_binder_dockerfile_builds_on_the_bootstrapped_root_and_the_registry_mirror(site, tmp_path):
    repo = make_repo(tmp_path / "course", {"binder/Dockerfile": BINDER_DOCKERFILE})
    _, source, raw = _captured(site)
    label = source_label(source)  # imagebuild's one line: the commit, on the image and in the content hash
    assert raw.dockerfile == BINDER_DOCKERFILE + label
    assert {f.arcname for f in raw.files} == {"binder/Dockerfile", "notebooks/intro.ipynb"}  # the checkout, without .git
    assert all(f.data == (repo / f.arcname).read_bytes() for f in raw.files)

    routed = rewrite_captured(raw, load_mirror("site", site))
    assert routed.base_ref == "debian:bookworm"  # imagebuild bootstraps it: no registry needed
    assert routed.dockerfile == (
        "FROM registry.example.org/dockerhub/library/python:3.12-slim AS wheels\n"
        + "".join(STAGE_PREAMBLE)
        + f'SHELL ["{WRAPPER}", "/bin/sh", "-c"]\n'
        f"RUN {SECRET_MOUNT} pip wheel --wheel-dir /wheels nbclient\n"
        'SHELL ["/bin/sh", "-c"]\n'
        "FROM debian:bookworm\n"
        + "".join(STAGE_PREAMBLE)
        + f'SHELL ["{WRAPPER}", "/bin/sh", "-c"]\n'
        "COPY --from=wheels /wheels /wheels\n"
        f'SHELL ["{WRAPPER}", "/bin/bash", "-o", "pipefail", "-c"]\n'
        f"RUN {SECRET_MOUNT} pip install --no-index --find-links /wheels nbclient\n"
        "COPY notebooks/ /home/jovyan/\n"
        + label
        + 'SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n'
    )
    # without a mirror the debian root is still the bootstrapped one, and other images stay upstream
    unmirrored = rewrite_captured(raw, None)
    assert unmirrored.base_ref == "debian:bookworm"
    assert "FROM python:3.12-slim AS wheels\n" in unmirrored.dockerfile


def test_lock_records_the_commit_and_the_content_hash_covers_it(site, tmp_path):
    repo = make_repo(tmp_path / "course", {"binder/Dockerfile": "FROM debian:bookworm\nRUN pip --version\n"})
    project = load_project(site)
    fetcher = offline_fetcher(project)

    def locked_hash() -> tuple[str, str]:
        item = plan(project, ["course"])[0]
        lock_image(item, fetcher)
        (context,) = prepare(fetcher, [item])
        assert root_image(context) == "debian:bookworm"
        return read_lock(item.recipe).source.commit, context.content_hash  # type: ignore[union-attr]

    first = locked_hash()
    assert first[0] == git(repo, "rev-parse", "HEAD")
    (repo / "data.txt").write_text("new\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "more")
    second = locked_hash()
    assert second[0] == git(repo, "rev-parse", "HEAD") and second[1] != first[1]
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "the same files")
    third = locked_hash()
    assert third[0] == git(repo, "rev-parse", "HEAD") and third[1] != second[1]  # the commit itself counts


def test_unknown_ref_and_unreadable_repository_are_one_line_lock_errors(site, tmp_path):
    make_repo(tmp_path / "course", {"requirements.txt": "numpy\n"})
    (site / "images" / "course" / "image.toml").write_text('source = { repo = "../../../course", ref = "fall-2026" }\n')
    with pytest.raises(LockError) as unknown:
        lock_source(load_project(site).recipes["course"], dict(os.environ))
    assert "no branch or tag 'fall-2026'" in unknown.value.message and "\n" not in unknown.value.message
    assert "main" in (unknown.value.hint or "")

    missing = (tmp_path / "gone.git").as_uri()
    (site / "images" / "course" / "image.toml").write_text(f'source = {{ repo = "{missing}" }}\n')
    with pytest.raises(LockError) as unreadable:
        lock_source(load_project(site).recipes["course"], dict(os.environ))
    assert f"cannot read git repository {missing}" in unreadable.value.message and "\n" not in unreadable.value.message


def test_repository_gone_after_locking_cannot_be_fetched(site, tmp_path):
    repo = make_repo(tmp_path / "course", {"requirements.txt": "numpy\n"})
    item = plan(load_project(site), ["course"])[0]
    source = lock_source(item.recipe, dict(os.environ))
    (repo / ".git").rename(tmp_path / "moved.git")
    with pytest.raises(LockError) as caught:
        capture(item, source, None, tmp_path / "kept")
    assert "cannot be fetched" in caught.value.message and "\n" not in caught.value.message


def test_repository_without_binder_files_is_a_recipe_error(site, tmp_path):
    make_repo(tmp_path / "course", {"README.md": "notes only\n"})
    item = plan(load_project(site), ["course"])[0]
    with pytest.raises(RecipeError) as caught:
        capture(item, lock_source(item.recipe, dict(os.environ)), None, tmp_path / "kept")
    assert "finds no environment specification" in caught.value.message and "\n" not in caught.value.message
    assert caught.value.exit_code == 2


def test_source_recipe_rejects_layer_fields_and_missing_folders(site, tmp_path):
    recipe = site / "images" / "course" / "image.toml"
    recipe.write_text('source = { repo = "../../../course" }\n[env]\nA = "b"\n')
    with pytest.raises(RecipeError) as layered:
        load_project(site)
    assert "remove env" in layered.value.render() and str(recipe) in layered.value.render()
    recipe.write_text('source = { repo = "../../../course" }\n')
    with pytest.raises(RecipeError) as missing:
        load_project(site)
    assert "[source].repo: folder '../../../course' not found" in missing.value.render()


def test_mirror_step_routes_a_captured_context_even_without_a_mirror(site, tmp_path):
    make_repo(tmp_path / "course", {"binder/Dockerfile": "FROM docker.io/library/debian:trixie\nRUN true\n"})
    _, _, raw = _captured(site)
    routed = rewrite_for_build(raw, None, "http://deb.debian.org/debian")
    assert routed.base_ref == "debian:trixie" and routed.dockerfile.startswith("FROM debian:trixie\n")
