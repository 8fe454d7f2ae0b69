"""End to end, issue 9's first check: a Binder repository (a local git repository whose
binder/Dockerfile starts FROM an upstream image that cannot be pulled here and installs with
pip) is locked to a commit, captured by repo2docker, built through a mirror profile (pip reaches
only the profile's local index) on the bootstrapped root image, smoke-tested with the
repository's own notebook, pushed to a registry and selected in a hub."""

import json
import os
import secrets
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from imagebuild.publish import registry as registry_module
from imagebuild.system import cache_dir
from tests.conftest import ProjectFactory, free_port, git, write_notebook

pytestmark = pytest.mark.engine

REPOSITORY = "imagebuild-binder"
DOCKERFILE = """\
FROM docker.io/library/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv && rm -rf /var/lib/apt/lists/*
RUN : session {token} && useradd -m -u 1000 -g 100 jovyan && python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-cache-dir jupyterlab jupyterhub nbclient ipykernel
ENV PATH=/opt/venv/bin:$PATH
COPY --chown=1000:100 notebooks/ /home/jovyan/
USER 1000
WORKDIR /home/jovyan
CMD ["jupyterhub-singleuser"]
"""
PROFILE = """\
description = "a local index only"
[pypi]
index_url = "http://127.0.0.1:{port}/simple"
[serve]
pypi = "../wheelhouse"
"""


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["imagebuild", *args], cwd=root, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def course(tmp_path_factory, engine) -> dict:
    """The repository, a project whose `course` image is that repository, its registry, and the build."""
    work = tmp_path_factory.mktemp("binder")
    repo = work / "course"
    (repo / "binder").mkdir(parents=True)
    # this session's token in the pip line: the layer really runs, through the mirror, every session
    (repo / "binder" / "Dockerfile").write_text(DOCKERFILE.replace("{token}", secrets.token_hex(8)))
    write_notebook(repo / "notebooks" / "course_check.ipynb", "import jupyterlab, sys\nassert sys.prefix == '/opt/venv'")
    git(repo, "init", "-q", "-b", "fall")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "course")
    registry = f"127.0.0.1:{free_port()}"
    pid = registry_module.up(registry, print, cache_dir(os.environ), storage=work / "registry")
    project = ProjectFactory(work / "project")
    (project.root / "imagebuild.toml").write_text(f'[build]\nrepository = "{REPOSITORY}"\n[publish]\nregistry = "{registry}"\n')
    (project.root / "mirrors").mkdir()
    (project.root / "mirrors" / "local.toml").write_text(PROFILE.format(port=free_port()))
    project.recipe("course", f'source = {{ repo = "{repo.as_uri()}", ref = "fall" }}\n')
    synced = _cli(project.root, "mirror", "sync", "base", "--to", "wheelhouse")  # the local index: base's packages
    assert synced.returncode == 0, synced.stderr[-3000:]
    locked = _cli(project.root, "lock", "course", "--json")
    assert locked.returncode == 0, locked.stderr[-3000:]
    built = _cli(project.root, "build", "course", "--mirror", "local", "--push", "--json")
    assert built.returncode == 0, built.stderr[-3000:]
    (outcome,) = json.loads(built.stdout)
    yield {"root": project.root, "repo": repo, "registry": registry, "outcome": outcome, "lock": json.loads(locked.stdout)[0]}
    if pid:
        os.kill(pid, signal.SIGTERM)


def test_the_lock_pins_the_ref_and_the_image_is_built_on_the_bootstrapped_root(course, engine):
    assert course["lock"]["dev_packages"][0]["commit"] == git(course["repo"], "rev-parse", "fall")
    outcome = course["outcome"]
    assert outcome["action"] == "built"
    labels = engine.client.images.get(outcome["ref"]).labels
    assert labels["io.imagebuild.base"] == "debian:bookworm"  # not docker.io's: the bootstrapped root
    assert labels["io.imagebuild.root-id"] == engine.client.images.get("debian:bookworm").id
    commit = git(course["repo"], "rev-parse", "fall")
    assert json.loads(labels["io.imagebuild.source"]) == {"url": course["repo"].as_uri(), "ref": "fall", "commit": commit}
    manifest = json.loads((course["root"] / "build" / "course" / "manifest.json").read_text())
    assert manifest["source"]["commit"] == commit and manifest["digest"] == outcome["published"]["digest"]


def test_pip_reached_only_the_profiles_index_and_nothing_of_the_mirror_is_in_the_image(course, engine):
    served = (course["root"] / "wheelhouse" / "access.log").read_text()
    assert "/files/jupyterlab-" in served and "/files/nbclient-" in served
    history = json.dumps(engine.client.api.history(course["outcome"]["ref"]))
    assert "/simple" not in history  # the index reached pip through with-build-env, never a layer
    config = engine.client.images.get(course["outcome"]["ref"]).attrs["Config"]
    assert config["Shell"] in (None, ["/bin/sh", "-c"])  # the repository's shell, not imagebuild's wrapper


def test_the_repositorys_notebook_ran_as_smoke_test(course):
    notebooks = course["outcome"]["smoke"]["notebooks"]
    assert [(n["owner"], n["notebook"], n["ok"]) for n in notebooks] == [("course", "course_check.ipynb", True)]


def test_the_image_is_pushed_and_selectable_in_a_hub(course, tmp_path):
    published = course["outcome"]["published"]
    content_tag = f"sha-{course['outcome']['content_hash'][:12]}"
    assert content_tag in {t["tag"] for t in published["tags"]}
    hub = tmp_path / "hub"
    made = _cli(course["root"], "hub", "init", str(hub), "--admin", "teacher", "--registry", course["registry"])
    assert made.returncode == 0, made.stderr
    selected = _cli(course["root"], "hub", "select", f"course:{content_tag}", "--dir", str(hub))
    assert selected.returncode == 0, selected.stderr
    offered = (hub / "images.toml").read_text()
    assert published["digest"] in offered and f"{REPOSITORY}/course" in offered


def test_an_unknown_ref_and_an_unfetchable_repository_give_one_line(course, tmp_path):
    recipe = course["root"] / "images" / "course" / "image.toml"
    original = recipe.read_text()
    try:
        recipe.write_text(f'source = {{ repo = "{course["repo"].as_uri()}", ref = "no-such-term" }}\n')
        unknown = _cli(course["root"], "lock", "course")
        assert unknown.returncode == 8 and "no-such-term" in unknown.stderr and "Traceback" not in unknown.stderr
        recipe.write_text(textwrap.dedent(f'source = {{ repo = "{(tmp_path / "gone").as_uri()}", ref = "fall" }}\n'))
        gone = _cli(course["root"], "lock", "course")
        assert gone.returncode == 8 and "Traceback" not in gone.stderr, gone.stderr
    finally:
        recipe.write_text(original)
