"""AiiDAlab as its users know it (issue 23), all real and all on loopback: GitHub's repositories
(the home app, the QE app and its two git-only plugins) come from ../shared/git over git's dumb
HTTP, routed there by a mirror profile's [git] rewrite. The bundled aiidalab-qe recipe is locked
and built through it and passes its smoke notebooks; bad refs and a conflict with the parent fail
the lock and change nothing. Then a test copy of the recipe carrying a small pseudopotential
family (the distribution's UPF files, under the twelve labels the QE app asks for) is published
and offered by the bundled hub with a site app registry of its own, and in Chromium a user lands
on the AiiDAlab start page, finds the site's app in the App Store, installs it, keeps it across a
restart and opens the QE app's first step.

Each browser step leaves a screenshot in build/test-artifacts/aiidalab-qe/ (kept on failure)."""

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagebuild import pipeline
from imagebuild.errors import LockError
from imagebuild.inputs.fetch import Fetcher
from imagebuild.inputs.lockfile import read_lock
from imagebuild.model.mirror import Mirror, MirrorProfile
from imagebuild.model.project import load_project
from imagebuild.model.recipe import load_recipe
from imagebuild.runs import ImageOutcome
from tests.conftest import REPO, free_port, git, host_trust, run_config
from tests.hub_browser import HubPerson
from tests.integration.conftest import QUIET, imagebuild_cli, remove_hub_data, smoke_of
from tests.integration.mirrored import GitServer

pytestmark = pytest.mark.engine

QE = "aiidalab-qe"
SHARED_GIT = REPO.parent / "shared" / "git"
ARTIFACTS = REPO / "build" / "test-artifacts" / "aiidalab-qe"
PASSWORD = "a long aiidalab password"
STEP_TIMEOUT = 600_000  # ms: a first start (profile, families) on a slow, busy host
APP_FAMILIES = [
    *(f"SSSP/1.3/{functional}/{accuracy}" for functional in ("PBE", "PBEsol") for accuracy in ("efficiency", "precision")),
    *(
        f"PseudoDojo/0.4/{functional}/{relativistic}/{accuracy}/upf"
        for functional in ("PBE", "PBEsol")
        for relativistic in ("SR", "FR")
        for accuracy in ("standard", "stringent")
    ),
]
"""The families the QE app's first step waits for (aiidalab_qe.setup.pseudos)."""


@pytest.fixture(scope="module")
def github() -> Iterator[GitServer]:
    server = GitServer(SHARED_GIT)
    yield server
    server.close()


def github_mirror(github: GitServer, folder: Path) -> Mirror:
    return Mirror("github", folder / "github.toml", MirrorProfile(git={"https://github.com": github.url}))


def project_copy(root: Path, github: GitServer, repository: str) -> Path:
    """base, aiidalab and aiidalab-qe copied into a project of their own, with a mirror profile
    'github' that routes github.com to the test's git server."""
    for name in ("base", "aiidalab", QE):
        shutil.copytree(REPO / "images" / name, root / "images" / name)
    (root / "imagebuild.toml").write_text(f'[build]\nrepository = "{repository}"\n')
    (root / "mirrors").mkdir()
    (root / "mirrors" / "github.toml").write_text(f'[git]\n"https://github.com" = "{github.url}"\n')
    return root


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return imagebuild_cli(*args, cwd=root)


# ---------------------------------------------------------------- the bundled recipe


@pytest.fixture(scope="module")
def qe_build(engine, repo_project, base_build, github, tmp_path_factory) -> ImageOutcome:
    mirror = github_mirror(github, tmp_path_factory.mktemp("github"))
    return pipeline.build(run_config(repo_project, host_trust(), mirror, offline=False), [QE], reporter=QUIET)[-1]


def test_aiidalab_qe_builds_from_its_locked_commits_and_passes_its_smoke_notebooks(engine, repo_project, qe_build):
    notebooks = {(n.owner, n.notebook): n for n in smoke_of(repo_project, engine, qe_build).notebooks}
    assert notebooks[(QE, "aiidalab_parity.ipynb")].ok and not notebooks[(QE, "aiidalab_parity.ipynb")].skipped
    assert all(n.ok for n in notebooks.values()), notebooks
    labels = engine.image(qe_build.ref).labels
    lock = read_lock(load_recipe(REPO / "images" / QE / "image.toml"))
    assert lock is not None and {p.name for p in lock.dev_packages} == {
        "aiidalab-home", "aiidalab-qe", "aiida-wannier90-workflows", "aiida-wannier90"
    }  # fmt: skip
    for package in lock.dev_packages:  # the image says which commit of each repository it carries
        assert package.commit in labels[f"io.imagebuild.dev-package.{package.name}"], labels


def test_locking_through_the_git_mirror_gives_the_committed_lock(tmp_path, github):
    root = project_copy(tmp_path / "project", github, "imagebuild-qe-lock")
    locked = cli(root, "lock", QE, "--mirror", "github")
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert f"{QE}: unchanged" in locked.stdout, locked.stdout
    # the parent pins this image moves are said, each with both versions
    assert "moves a parent's pin: aiida-quantumespresso 5.1.0 -> 4.12." in locked.stdout, locked.stdout
    assert "moves a parent's pin: ipywidgets 7.7.4 -> 8." in locked.stdout, locked.stdout
    checked = cli(root, "lock", "--check", QE)
    assert checked.returncode == 0 and f"{QE}: fresh" in checked.stdout, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('ref = "v26.06.0"', 'ref = "v0.0.0-gone"', "dev package 'aiidalab-home': no branch or tag 'v0.0.0-gone'"),
        ('parent_pins = "move"', 'parent_pins = "hold"', "cannot be resolved (with its ancestors' pins held fixed)"),
    ],
)
def test_a_missing_ref_or_a_conflict_with_the_parent_fails_the_lock_and_changes_nothing(tmp_path, github, old, new, message):
    root = project_copy(tmp_path / "project", github, "imagebuild-qe-lock")
    recipe = root / "images" / QE / "image.toml"
    recipe.write_text(recipe.read_text().replace(old, new))
    before = (root / "images" / QE / "image.lock").read_bytes()
    failed = cli(root, "lock", QE, "--mirror", "github")
    assert failed.returncode == LockError.exit_code, failed.stdout + failed.stderr
    assert message in failed.stderr and "hint:" in failed.stderr, failed.stderr
    assert (root / "images" / QE / "image.lock").read_bytes() == before


# ---------------------------------------------------------------- through the hub, in a browser


def _test_family(distribution_pseudo_archive: Path, folder: Path, variant: str) -> tuple[Path, Path]:
    """The distribution's UPF files as a test family: the archive and its cutoffs table, in SSSP's
    published form (md5 of each file, cutoffs in Ry). Variant 'b' ends each file with one more
    newline: the app finds a pseudopotential's family by its md5, so the families it computes with
    (PBEsol) must hold files no family of another functional holds."""
    archive_path, cutoffs = folder / f"test-family-{variant}.tar.gz", {}
    # the same bytes every session (no gzip time stamp), so the image's content hash is too
    with (
        tarfile.open(distribution_pseudo_archive) as source,
        archive_path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w") as target,
    ):
        for member in source.getmembers():
            data = source.extractfile(member).read() + (b"\n" if variant == "b" else b"")  # type: ignore[union-attr]
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
            element = member.name.split(".")[0]
            cutoffs[element] = {"filename": member.name, "md5": hashlib.md5(data).hexdigest(), "cutoff_wfc": 30.0, "cutoff_rho": 240.0}
    table = folder / f"test-family-{variant}-cutoffs.json"
    table.write_text(json.dumps(cutoffs, indent=1, sort_keys=True))
    return archive_path, table


TEST_FAMILY = """
[[assets]]
name = "test-family-{variant}-cutoffs"
filename = "test-family-{variant}-cutoffs.json"
sha256 = "{cutoffs_sha256}"
dest = "/opt/pseudopotentials"

[[assets]]
name = "test-family-{variant}"
filename = "test-family-{variant}.tar.gz"
sha256 = "{archive_sha256}"
dest = "/opt/pseudopotentials"
install = 'install-pseudo-family "$ASSET_PATH" /opt/pseudopotentials/test-family-{variant}-cutoffs.json {labels}'
install_at = "start"
"""
COMPUTED_WITH = ["SSSP/1.3/PBEsol/efficiency", "SSSP/1.3/PBEsol/precision"]
"""The families of the fast and the stringent protocols with the app's default functional."""


@pytest.fixture(scope="module")
def qe_with_test_family(engine, base_build, github, tmp_path_factory, distribution_pseudo_archive, registry):
    """A copy of the bundled recipe with the test family declared as the asset the app needs,
    built through the git mirror and published to the session's registry."""
    work = tmp_path_factory.mktemp("qe-family")
    root = project_copy(work / "project", github, "imagebuild-qe-e2e")
    recipe = root / "images" / QE / "image.toml"
    sums = {}
    for variant, labels in (("a", COMPUTED_WITH), ("b", [label for label in APP_FAMILIES if label not in COMPUTED_WITH])):
        archive, cutoffs = _test_family(distribution_pseudo_archive, work, variant)
        sums |= {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in (archive, cutoffs)}
        declared = TEST_FAMILY.format(variant=variant, cutoffs_sha256=sums[cutoffs], archive_sha256=sums[archive], labels=" ".join(labels))
        recipe.write_text(recipe.read_text() + declared)
    project = load_project(root)
    config = run_config(project, host_trust(), github_mirror(github, work), offline=False)
    for path, sha256 in sums.items():
        Fetcher(config, print).cache.add(path, sha256)
    outcome = pipeline.build(config, [QE], reporter=QUIET, push_to=registry)[-1]
    assert outcome.published is not None
    return root, outcome


APP = "hello-site"
APP_TITLE = "Hello from the site registry"
LOGO = "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' width='8' height='8'/>"
"""The App Store and the start page show every app's logo (a URL), and refuse an app without one."""


SITE_GIT = "https://github.com/imagebuild-site/"
"""Where the registry says the app's repository is; the users' git is routed to the site's mirror."""


def _app_registry(folder: Path) -> None:
    """A site app registry as a static folder in the published layout (api/v1/apps_index.json,
    api/v1/apps/<id>.json), with one app on GitHub (SITE_GIT) whose mirror is git/ beside it."""
    metadata = {
        "title": APP_TITLE, "description": "A site's own app", "authors": "imagebuild", "categories": ["utilities"],
        "state": "stable", "logo": LOGO,
    }  # fmt: skip
    source = folder / "source"
    source.mkdir(parents=True)
    (source / "metadata.json").write_text(json.dumps(metadata))
    (source / "start.md").write_text(f"[{APP_TITLE}](./hello.ipynb)\n")
    (source / "hello.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    git(folder, "init", "--quiet", "--initial-branch", "main", str(source))
    git(source, "add", "-A")
    git(source, "commit", "--quiet", "-m", "v1.0.0")
    commit = git(source, "rev-parse", "HEAD")
    git(folder, "clone", "--quiet", "--bare", str(source), str(folder / "git" / f"{APP}.git"))
    git(folder / "git" / f"{APP}.git", "update-server-info")
    api = folder / "api" / "v1"
    (api / "apps").mkdir(parents=True)
    (api / "apps_index.json").write_text(
        json.dumps({"apps": {APP: {"name": APP, "categories": ["utilities"]}}, "categories": {"utilities": {"title": "Utilities", "description": ""}}})
    )
    release = {"url": f"git+{SITE_GIT}{APP}.git@{commit}", "environment": {"python_requirements": []}, "metadata": metadata}
    (api / "apps" / f"{APP}.json").write_text(json.dumps({"name": APP, "metadata": metadata, "releases": {"v1.0.0": release}}))


@pytest.fixture(scope="module")
def qe_hub(tmp_path_factory, engine, registry, base_build, qe_with_test_family) -> Iterator[str]:
    """The bundled hub offering the test copy, its users' AIIDALAB_REGISTRY a static app
    registry on the hub's network; the hub's URL."""
    root, outcome = qe_with_test_family
    name = "aiidalabqe"
    remove_hub_data(engine, name)
    folder = tmp_path_factory.mktemp("hubs") / name
    registry_host = f"{name}-apps"
    apps = tmp_path_factory.mktemp("app-registry")
    _app_registry(apps)
    port = free_port()
    assert cli(REPO, "hub", "init", str(folder), "--admin", "boss", "--registry", registry, "--port", str(port)).returncode == 0
    settings = folder / "hub.toml"
    environment = {  # the registry, and git's route from GitHub to the site's mirror (git's own variables)
        "AIIDALAB_REGISTRY": f"http://{registry_host}:8000/api/v1",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.http://{registry_host}:8000/git/.insteadOf",
        "GIT_CONFIG_VALUE_0": SITE_GIT,
    }
    lines = "".join(f'{key} = "{value}"\n' for key, value in environment.items())
    settings.write_text(settings.read_text().replace("[environment]\n", f"[environment]\n{lines}"))
    tag = outcome.published.tags[0].tag
    selected = cli(root, "hub", "select", f"{QE}:{tag}", "--dir", str(folder))
    assert selected.returncode == 0, selected.stdout + selected.stderr
    started = cli(REPO, "hub", "up", str(folder), "--json")
    assert started.returncode == 0, started.stdout + started.stderr[-4000:]
    try:
        engine.client.containers.run(
            base_build.ref, ["-m", "http.server", "8000", "--directory", "/srv"], entrypoint=["python"], name=registry_host,
            detach=True, user="root", network=f"{name}-jupyterhub", volumes={str(apps): {"bind": "/srv", "mode": "ro"}},
            labels={"io.imagebuild.hub": name},
        )  # fmt: skip
        yield json.loads(started.stdout)["url"], f"{QE} {tag}", folder
    finally:
        print(cli(REPO, "hub", "logs", "hub", "--dir", str(folder), "--tail", "150").stdout)
        cli(REPO, "hub", "down", str(folder))
        remove_hub_data(engine, name)


def test_a_user_lands_on_the_aiidalab_start_page_installs_a_site_app_and_opens_the_qe_app(qe_hub, browser, journeys, engine):
    url, label, _folder = qe_hub
    admin = HubPerson(browser, url, "admin", password=PASSWORD, timeout_ms=STEP_TIMEOUT, shots=ARTIFACTS)
    user = HubPerson(browser, url, "ada", password=PASSWORD, timeout_ms=STEP_TIMEOUT, shots=ARTIFACTS)
    journeys += [admin, user]
    admin.signup("boss")
    assert admin.login("boss")
    user.signup("ada")
    admin.approve("ada")
    assert user.login("ada")

    seconds = user.start(label, ready="text=App Store")
    assert "/apps/apps/home/start.ipynb" in user.page.url, user.page.url
    user.page.wait_for_selector("text=Quantum ESPRESSO", timeout=STEP_TIMEOUT)
    print(f"ada: {label} spawn -> AiiDAlab start page in {seconds:.1f} s")

    # the App Store lists the site registry's app (AIIDALAB_REGISTRY from hub.toml)
    base = user.page.url.split("/apps/")[0]
    user.open(f"{base}/apps/apps/home/appstore.ipynb", f"text={APP_TITLE}")
    container = engine.client.containers.get("aiidalabqe-user-ada")
    code, output = container.exec_run(["aiidalab", "install", "--yes", APP], user="jovyan")
    assert code == 0, output.decode(errors="replace")
    code, output = container.exec_run(["aiidalab", "info"], user="jovyan")
    assert b"aiidalabqe-apps:8000/api/v1" in output, output.decode(errors="replace")

    # a second start (a new container on the same home volume) keeps the app the user installed
    user.stop()
    user.start(label, ready="text=App Store")
    user.page.wait_for_selector(f"text={APP_TITLE}", timeout=STEP_TIMEOUT)

    # the QE app: silicon, the fast protocol with the test family, pw.x in the daemon, results
    began = time.monotonic()
    user.open(f"{base}/apps/apps/quantum-espresso/qe.ipynb", "text=Step 1: Select structure")
    print(f"ada: QE app first step shown in {time.monotonic() - began:.1f} s")
    run_silicon_in_the_qe_app(user)
    container = engine.client.containers.get("aiidalabqe-user-ada")  # the second start's
    code, output = container.exec_run(["verdi", "process", "list", "-a", "-p", "1"], user="jovyan")
    assert b"PwCalculation" in output and b"Finished [0]" in output, output.decode(errors="replace")


def _confirm(page) -> None:
    """The visible step's Confirm, once the app enables it (it checks the step's inputs first)."""
    button = page.locator("button:has-text('Confirm'):visible").first
    deadline = time.monotonic() + 120
    while not button.is_enabled():
        assert time.monotonic() < deadline, "the step's Confirm stayed disabled"
        time.sleep(0.5)
    button.click()


def _choose(page, text: str) -> None:
    """Press the visible toggle button `text` until the app shows it chosen (a step resets its
    choices once more while it loads the structure)."""
    button = page.locator(f"button:has-text('{text}'):visible").first
    deadline = time.monotonic() + 120
    while "mod-active" not in (button.get_attribute("class") or ""):
        assert time.monotonic() < deadline, f"{text!r} was not chosen"
        button.click()
        time.sleep(1)


def run_silicon_in_the_qe_app(user: HubPerson) -> None:
    """As a user does in the QE app: the example silicon, an SCF with the fast protocol, the app's
    pw code; the workchain runs in the daemon and the app shows it finished, with its results."""
    page = user.page
    page.click("text=Step 1: Select structure")
    page.click("text=From examples")
    page.locator("select:visible").first.select_option(label="Bulk silicon")
    _confirm(page)
    page.wait_for_selector("text=Step 2.2: Customize calculation parameters")
    _choose(page, "Structure as is")
    page.click("text=Step 2.2: Customize calculation parameters")
    _choose(page, "Insulator")
    _choose(page, "Fast")
    user.shot("qe-configured")
    _confirm(page)
    page.wait_for_selector("text=Step 3: Choose computational resources")
    page.locator("select:visible").first.select_option(label="pw-7.4@localhost")
    user.shot("qe-resources")
    page.click("button:has-text('Submit'):visible")
    assert _shown(page, r"Workflow status: (\w+)", user.timeout_ms) == "Finished", page.inner_text("body")[-3000:]
    page.click("button:has-text('Results'):visible")
    assert _shown(page, r"Spacegroup: (\S+)", user.timeout_ms) == "Fd-3m"
    user.shot("qe-results")


def _shown(page, pattern: str, timeout_ms: int) -> str:
    """The first group of `pattern` in the page's text once it is there and no longer says a
    process runs (the app redraws its status as the workchain goes on)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        found = re.search(pattern, page.inner_text("body"))
        if found and found.group(1) not in ("Created", "Waiting", "Running"):
            return found.group(1)
        assert time.monotonic() < deadline, f"{pattern!r} not shown; the page shows: {page.inner_text('body')[-2000:]}"
        time.sleep(2)
