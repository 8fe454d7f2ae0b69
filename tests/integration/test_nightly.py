"""End to end, issue 8's nightly check, on loopback with a registry of its own: a first night
publishes every image; a second night right after rebuilds and pushes nothing; a moved dev
package branch rebuilds only its image and that image's child, and the report diffs the new
commit against the previous edge; an image whose smoke notebook fails does not stop the others,
its child is skipped, its edge stays, and the exit code says so; retention deletes the older
same-day image, except the one a hub offers."""

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import tomli_w

from imagebuild.model.hub import SELECTION_FILE, SelectedImage, Selection
from imagebuild.publish import registry as registry_module
from imagebuild.system import cache_dir
from tests.conftest import ProjectFactory, free_port, git, write_notebook

pytestmark = pytest.mark.engine

REPOSITORY = "imagebuild-nightly"
DEV, CHILD, OTHER = "test-nightly-dev", "test-nightly-child", "test-nightly-other"


def _commit(repo: Path, message: str) -> str:
    (repo / "probe_nightly" / "__init__.py").write_text(f'"""A dev package."""\n\n__version__ = "0.1.0"\nMESSAGE = "{message}"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


class Site:
    """The project, its dev package repository, its registry and its hub folder."""

    def __init__(self, root: Path, repo: Path, registry: str, first_commit: str) -> None:
        self.root, self.repo, self.registry, self.first_commit = root, repo, registry, first_commit
        self.api = registry_module.Registry(registry)

    def nightly(self, *args: str) -> tuple[int, dict, float]:
        started = time.monotonic()
        completed = subprocess.run(
            ["imagebuild", "nightly", "--push", "--json", *args], cwd=self.root, capture_output=True, text=True, timeout=1800
        )
        seconds = time.monotonic() - started
        assert completed.stdout, completed.stderr[-3000:]
        report = json.loads(completed.stdout)
        assert report == json.loads((self.root / "build/nightly/report.json").read_text())
        return completed.returncode, report, seconds

    def digest(self, name: str, tag: str) -> str | None:
        image = self.api.image(f"{REPOSITORY}/{name}", tag)
        return image.digest if image else None

    def offer(self, name: str, digest: str | None) -> None:
        """What the hub offers: one image pinned to `digest`, or nothing."""
        images = [SelectedImage(label=name, image=name, tag="edge", ref=f"{self.registry}/{REPOSITORY}/{name}@{digest}", digest=digest)] if digest else []
        (self.root / "hub" / SELECTION_FILE).write_text(tomli_w.dumps(Selection(images=images).model_dump()))


def ours(engine) -> set[str]:
    """The images of this project in the engine."""
    return {image.id for image in engine.client.images.list() if any(t.startswith(REPOSITORY) for t in image.tags)}


def by_name(report: dict) -> dict[str, dict]:
    return {night["name"]: night for night in report["images"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory, engine) -> Site:
    work = tmp_path_factory.mktemp("nightly")
    registry = f"127.0.0.1:{free_port()}"
    pid = registry_module.up(registry, print, cache_dir(os.environ), storage=work / "registry")
    repo = work / "probe-nightly"
    (repo / "probe_nightly").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.9,<4"]\nbuild-backend = "flit_core.buildapi"\n\n'
        '[project]\nname = "probe-nightly"\ndynamic = ["version", "description"]\n'
    )
    git(repo, "init", "-q", "-b", "main")
    first_commit = _commit(repo, "first")
    project = ProjectFactory(work / "project")
    (project.root / "imagebuild.toml").write_text(
        textwrap.dedent(
            f"""\
            [build]
            repository = "{REPOSITORY}"
            [publish]
            registry = "{registry}"
            [nightly]
            upgrade = false  # keep the bundled base's committed pins: only the dev branch moves
            hubs = ["hub"]
            """
        )
    )
    dev = project.recipe(
        DEV, f'parent = "base"\n[[dev_packages]]\nname = "probe-nightly"\nurl = "{repo.as_uri()}"\nref = "main"\n'
    )
    write_notebook(dev / "smoke" / "dev.ipynb", "import probe_nightly\nprint(probe_nightly.MESSAGE)")
    child = project.recipe(CHILD, f'parent = "{DEV}"\n[env]\nPROBE_CHILD = "yes"\n')
    write_notebook(child / "smoke" / "child.ipynb", "import os, probe_nightly\nassert os.environ['PROBE_CHILD'] == 'yes'")
    other = project.recipe(OTHER, 'parent = "base"\n[env]\nPROBE_OTHER = "yes"\n')
    write_notebook(other / "smoke" / "other.ipynb", "import os\nassert os.environ['PROBE_OTHER'] == 'yes'")
    (project.root / "hub").mkdir()
    yield Site(project.root, repo, registry, first_commit)
    if pid:
        os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="module")
def first_night(site) -> dict:
    code, report, seconds = site.nightly()
    assert code == 0, report
    print(f"first night: {report['summary']} ({seconds:.1f} s)")
    return report


def test_first_night_publishes_every_image_with_date_content_tag_and_edge(site, first_night):
    nights = by_name(first_night)
    assert set(nights) == {"base", DEV, CHILD, OTHER}
    for name, night in nights.items():
        assert night["action"] in ("built", "reused"), night
        assert {"edge", f"sha-{night['content_hash'][:12]}"} <= set(night["pushed"])
        assert site.digest(name, "edge") == night["digest"]
        assert site.digest(name, "latest") is None  # latest moves only with --promote
    assert nights[DEV]["dev_commits"] == {"probe-nightly": [None, site.first_commit]}  # the refresh pinned the branch
    assert site.first_commit in (site.root / "images" / DEV / "image.lock").read_text()


def test_second_night_builds_and_pushes_nothing(site, first_night, engine):
    before = ours(engine)
    code, report, seconds = site.nightly()
    print(f"second night: {report['summary']} ({seconds:.1f} s)")
    assert code == 0, report
    assert {night["action"] for night in report["images"]} == {"unchanged"}
    assert all(night["pushed"] == [] for night in report["images"])
    assert "nothing pushed" in report["summary"]
    assert ours(engine) == before
    markdown = (site.root / "build/nightly/report.md").read_text()
    assert f"| {DEV} | unchanged | sha-{by_name(report)[DEV]['content_hash'][:12]} |" in markdown


def test_a_moved_branch_rebuilds_its_image_and_child_and_the_diff_shows_the_commit(site, first_night):
    old = by_name(first_night)
    site.offer(DEV, old[DEV]["digest"])  # a hub offers the first night's image of DEV
    commit = _commit(site.repo, "second")
    code, report, _ = site.nightly()
    assert code == 0, report
    nights = by_name(report)
    assert {name: night["action"] for name, night in nights.items()} == {
        "base": "unchanged", DEV: "built", CHILD: "built", OTHER: "unchanged"
    }
    dev = nights[DEV]
    assert dev["dev_commits"] == {"probe-nightly": [site.first_commit, commit]}
    (change,) = dev["diff"]["dev_packages"]
    assert change["name"] == "probe-nightly" and change["after"] == commit and change["before"] != commit
    assert f"| probe-nightly | changed | {change['before']} | {commit} |" in dev["diff_markdown"]
    assert site.digest(DEV, "edge") == dev["digest"] != old[DEV]["digest"]
    # Retention keeps each day's newest image: CHILD's first image goes, DEV's stays (the hub offers it).
    deleted = {(d["repository"], d["digest"]) for d in report["deleted"]}
    assert deleted == {(f"{REPOSITORY}/{CHILD}", old[CHILD]["digest"])}
    assert site.digest(CHILD, f"sha-{old[CHILD]['content_hash'][:12]}") is None
    assert site.digest(DEV, f"sha-{old[DEV]['content_hash'][:12]}") == old[DEV]["digest"]


def test_a_failing_image_does_not_stop_the_others_and_its_child_is_skipped(site, first_night):
    edge = site.digest(DEV, "edge")
    broken = write_notebook(site.root / "images" / DEV / "smoke" / "broken.ipynb", "raise RuntimeError('broken tonight')")
    touched = write_notebook(site.root / "images" / OTHER / "smoke" / "more.ipynb", "print('other changed too')")
    try:
        code, report, _ = site.nightly()
    finally:
        broken.unlink()
    assert code == 5, report  # a smoke notebook failed
    nights = by_name(report)
    assert nights[DEV]["action"] == "failed" and "broken tonight" in nights[DEV]["error"]
    assert nights[CHILD]["action"] == "skipped" and DEV in nights[CHILD]["error"]
    assert nights[OTHER]["action"] == "built" and "edge" in nights[OTHER]["pushed"]
    assert nights["base"]["action"] == "unchanged"
    assert site.digest(DEV, "edge") == edge  # nothing of the failed image was pushed
    touched.unlink()


def test_retention_deletes_what_no_hub_offers_any_longer(site, first_night):
    old = by_name(first_night)[DEV]["digest"]
    site.offer(DEV, None)
    code, report, _ = site.nightly("--no-prune")
    assert code == 0 and report["deleted"] == []
    assert site.digest(DEV, f"sha-{by_name(first_night)[DEV]['content_hash'][:12]}") == old
    code, report, _ = site.nightly()
    assert code == 0, report
    assert (f"{REPOSITORY}/{DEV}", old) in {(d["repository"], d["digest"]) for d in report["deleted"]}
    assert site.digest(DEV, f"sha-{by_name(first_night)[DEV]['content_hash'][:12]}") is None
    assert site.digest(DEV, "edge") is not None
