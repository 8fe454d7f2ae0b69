"""End to end, issue 4's check: aiidalab built in --offline mode with a dev package pinned to a
branch of a real git repository (file URL) and a generated pseudopotential library carried in
with `assets add`. The image's labels name the commit; a container lists the pseudopotential
family on first start; a moved branch is built only after `lock`; a corrupt cached asset is
refused."""

import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.conftest import PSEUDO_ELEMENTS, REPO, git, write_pseudo_archive

pytestmark = pytest.mark.engine

FAMILY = "SSSP-test"
ASSET = """
[[assets]]
name = "pseudopotentials"
urls = ["https://archive.materialscloud.example/pseudos.tar.gz"]
sha256 = "{sha256}"
dest = "/opt/pseudopotentials/test"
unpack = true
install = 'aiida-pseudo install family "$ASSET_PATH" {family} -P pseudo.upf'
install_at = "start"

[[assets]]
name = "carried-tool"
filename = "{wheel_name}"
sha256 = "{wheel_sha256}"
wheel = true

[[dev_packages]]
name = "probe-widgets"
url = "{url}"
ref = "feature"
"""


@dataclass(frozen=True)
class Site:
    root: Path
    repo: Path
    archive: Path
    sha256: str
    wheel: Path
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["imagebuild", *args], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=1800
        )

    def build(self) -> dict:
        built = self.cli("build", "aiidalab", "--offline", "--no-smoke", "--json")
        assert built.returncode == 0, built.stderr[-3000:]
        return json.loads(built.stdout)[-1]


def _commit_version(repo: Path, message: str) -> None:
    (repo / "probe_widgets" / "__init__.py").write_text(
        f'"""A dev package for imagebuild\'s tests."""\n\n__version__ = "0.1.0"\nCOMMIT_MESSAGE = "{message}"\n'
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def site(tmp_path_factory, engine) -> Site:
    work = tmp_path_factory.mktemp("inputs")
    root = work / "project"
    for name in ("base", "aiidalab"):
        shutil.copytree(REPO / "images" / name, root / "images" / name)
    repo = work / "probe-widgets"
    (repo / "probe_widgets").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = ["flit_core>=3.9,<4"]
            build-backend = "flit_core.buildapi"

            [project]
            name = "probe-widgets"
            dynamic = ["version", "description"]
            dependencies = ["tomli-w>=1.0"]
            """
        )
    )
    git(repo, "init", "-q", "-b", "main")
    _commit_version(repo, "first")
    git(repo, "checkout", "-q", "-b", "feature")
    archive = work / "carried-in" / "pseudos.tar.gz"
    archive.parent.mkdir(exist_ok=True)
    sha256 = write_pseudo_archive(archive)
    recipe = root / "images" / "aiidalab" / "image.toml"
    text = recipe.read_text()
    text = text[: text.index("\n# The SSSP 1.3")] + "\n"  # the real SSSP asset is replaced by the generated one
    wheel = _carried_wheel(work)
    recipe.write_text(
        text
        + ASSET.format(
            sha256=sha256,
            family=FAMILY,
            url=repo.as_uri(),
            wheel_name=wheel.name,
            wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        )
    )
    env = {**os.environ, "IMAGEBUILD_CACHE": str(work / "cache")}
    added = subprocess.run(["imagebuild", "assets", "add", str(wheel)], cwd=root, env=env, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    return Site(root, repo, archive, sha256, wheel, env)


def _carried_wheel(work: Path) -> Path:
    """A wheel built elsewhere and carried in by hand (no index has it)."""
    source = work / "carried-tool"
    (source / "carried_tool").mkdir(parents=True)
    (source / "carried_tool" / "__init__.py").write_text('"""Carried in by hand."""\n\n__version__ = "2.0.0"\n')
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.9,<4"]\nbuild-backend = "flit_core.buildapi"\n\n'
        '[project]\nname = "carried-tool"\ndynamic = ["version", "description"]\n'
    )
    subprocess.run([find_uv_bin(), "build", "--wheel", "--out-dir", str(work / "carried-in"), str(source)], check=True)
    (wheel,) = (work / "carried-in").glob("carried_tool-*.whl")
    return wheel


@pytest.fixture(scope="module")
def first_build(site) -> dict:
    locked = site.cli("lock", "aiidalab", "--json")
    assert locked.returncode == 0, locked.stderr
    (outcome,) = [o for o in json.loads(locked.stdout) if o["name"] == "aiidalab"]
    assert outcome["dev_packages"][0]["commit"] == git(site.repo, "rev-parse", "feature")

    missing = site.cli("build", "aiidalab", "--offline", "--no-smoke")
    assert missing.returncode == 7, missing.stderr
    assert "asset 'pseudopotentials' (pseudos.tar.gz) is not in the asset cache" in missing.stderr
    assert "imagebuild assets add pseudos.tar.gz" in missing.stderr
    assert "carried-tool" not in missing.stderr  # added before: only what is missing is named
    assert "building" not in missing.stderr  # it failed before any build started

    added = site.cli("assets", "add", str(site.archive))
    assert added.returncode == 0, added.stderr
    return site.build()


def _labels(engine, ref: str) -> dict[str, str]:
    return engine.client.images.get(ref).labels


def _run_started(engine, ref: str, command: str) -> str:
    """`command` after start.sh ran the start hooks, as a first start on a hub would (AiiDA's
    services too, which a command that is no Jupyter server gets only when it asks for them)."""
    return engine.client.containers.run(
        ref, ["bash", "-c", command], remove=True, network_mode="none", stderr=True, environment={"AIIDA_SERVICES": "always"}
    ).decode()


def test_labels_name_the_dev_package_commit_and_the_asset(engine, site, first_build):
    labels = _labels(engine, first_build["ref"])
    dev = json.loads(labels["io.imagebuild.dev-package.probe-widgets"])
    assert dev == {"url": site.repo.as_uri(), "ref": "feature", "commit": git(site.repo, "rev-parse", "feature")}
    assert labels["io.imagebuild.asset.pseudopotentials"] == site.sha256
    listed = json.loads(site.cli("images", "--json").stdout)
    row = next(r for r in listed if r["content_hash"] == first_build["content_hash"])
    assert row["dev_packages"]["probe-widgets"]["commit"] == dev["commit"]
    assert row["assets"]["pseudopotentials"] == site.sha256 and "carried-tool" in row["assets"]


def test_first_start_lists_the_pseudopotential_family(engine, first_build):
    # the family is installed in the background once the profile (also made in the background) exists
    waiting = f"for i in $(seq 240); do aiida-pseudo list --raw 2>/dev/null | grep -q '^{FAMILY}' && break; sleep 1; done"
    output = _run_started(
        engine,
        first_build["ref"],
        f"{waiting}; aiida-pseudo list --raw; python -c 'import carried_tool, probe_widgets, tomli_w; print(probe_widgets.COMMIT_MESSAGE)'",
    )
    family = [line.split() for line in output.splitlines() if line.startswith(FAMILY)]
    assert family and family[0][-1] == str(len(PSEUDO_ELEMENTS)), output
    # the dev package at the locked commit, with its dependency; the carried-in wheel, installed offline
    assert output.strip().endswith("first"), output


def test_a_moved_branch_is_built_only_after_lock(engine, site, first_build):
    _commit_version(site.repo, "second")
    again = site.build()
    assert again["action"] == "reused" and again["content_hash"] == first_build["content_hash"]

    locked = site.cli("lock", "aiidalab", "--json")
    assert locked.returncode == 0, locked.stderr
    (outcome,) = [o for o in json.loads(locked.stdout) if o["name"] == "aiidalab"]
    (package,) = outcome["dev_packages"]
    assert package["commit"] == git(site.repo, "rev-parse", "feature") != package["previous_commit"]

    moved = site.build()
    assert moved["action"] == "built" and moved["content_hash"] != first_build["content_hash"]
    dev = json.loads(_labels(engine, moved["ref"])["io.imagebuild.dev-package.probe-widgets"])
    assert dev["commit"] == package["commit"]
    output = engine.client.containers.run(
        moved["ref"], ["python", "-c", "import probe_widgets; print(probe_widgets.COMMIT_MESSAGE)"], remove=True
    ).decode()
    assert output.strip() == "second"


def test_a_corrupt_cached_asset_is_refused(site, first_build):
    cached = Path(site.env["IMAGEBUILD_CACHE"]) / "assets" / "sha256" / site.sha256
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    refused = site.cli("build", "aiidalab", "--offline", "--no-smoke")
    assert refused.returncode == 7, refused.stderr
    assert "the cached file is corrupt" in refused.stderr and "it was removed from the cache" in refused.stderr
    assert not cached.exists()
    assert site.cli("assets", "add", str(site.archive)).returncode == 0  # carried in again, it builds again
