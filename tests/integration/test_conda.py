"""End to end, on loopback: an image's conda environment is locked with rattler against a real
local channel reached through a mirror profile, installed by the build (rattler, hashes checked,
no binary from a fixed URL), and used by a smoke notebook: a binary on PATH and a data file."""

import json
import os
import subprocess

import pytest
from conda_lock.lockfile import parse_conda_lock_file

from tests.conda_channel import serve_hello_channel
from tests.conftest import write_notebook

pytestmark = pytest.mark.engine

ENVIRONMENT = "channels:\n  - imagebuild-test\ndependencies:\n  - hello-tool\n"
SMOKE = (
    "import pathlib, shutil, subprocess\n"
    "tool = shutil.which('hello-tool')\n"
    "assert tool == '/opt/conda/bin/hello-tool', tool\n"
    "assert subprocess.run([tool], capture_output=True, text=True, check=True).stdout == 'hello from conda\\n'\n"
    "assert pathlib.Path('/opt/conda/share/hello/data.txt').read_text() == '42\\n'"
)


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    server = serve_hello_channel(tmp_path_factory.mktemp("channel"))
    yield server
    server.close()  # again: the test stops it half way


def test_conda_environment_is_locked_installed_and_used(engine, base_build, make_project, channel):
    folder = make_project.recipe(
        "test-conda",
        'parent = "base"\n[conda]\nenvironment = "environment.yml"\n',
        {"environment.yml": ENVIRONMENT},
    )
    write_notebook(folder / "smoke" / "conda.ipynb", SMOKE)
    (make_project.root / "mirrors").mkdir()
    (make_project.root / "mirrors" / "site.toml").write_text(f'[conda.channels]\n"imagebuild-test" = "{channel.url}"\n')
    env = {**os.environ}
    run = lambda *args: subprocess.run(["imagebuild", *args], cwd=make_project.root, env=env, capture_output=True, text=True, timeout=1800)  # noqa: E731

    locked = run("lock", "test-conda", "--mirror", "site")
    assert locked.returncode == 0, locked.stderr
    lock = parse_conda_lock_file(folder / "conda-lock.yml")
    urls = {package.url for package in lock.package}
    assert urls == {
        "https://conda.anaconda.org/imagebuild-test/linux-64/hello-tool-1.0-0.tar.bz2",
        "https://conda.anaconda.org/imagebuild-test/noarch/hello-data-2.1-0.tar.bz2",
    }  # upstream URLs in the lock; the mirror served the solve
    assert all(len(package.hash.sha256 or "") == 64 for package in lock.package)

    built = run("build", "test-conda", "--mirror", "site", "--json")
    assert built.returncode == 0, built.stderr[-4000:]
    outcome = json.loads(built.stdout)[-1]
    assert [(n["owner"], n["ok"]) for n in outcome["smoke"]["notebooks"]] == [("base", True), ("test-conda", True)]
    history = json.dumps(engine.client.images.get(outcome["ref"]).history())
    assert channel.url not in history  # the mirror reached the build through its environment, not the Dockerfile

    # a child extends the environment; the parent's packages stay as they are
    child = make_project.recipe(
        "test-conda-child",
        'parent = "test-conda"\n[conda]\nenvironment = "environment.yml"\n',
        {"environment.yml": "channels:\n  - imagebuild-test\ndependencies:\n  - hello-extra\n"},
    )
    write_notebook(child / "smoke" / "extra.ipynb", "import pathlib\nassert pathlib.Path('/opt/conda/share/hello/extra.txt').read_text() == 'extra\\n'")
    parent_lock = (folder / "conda-lock.yml").read_bytes()
    assert run("lock", "test-conda-child", "--mirror", "site").returncode == 0
    assert (folder / "conda-lock.yml").read_bytes() == parent_lock
    extended = run("build", "test-conda-child", "--mirror", "site", "--json")
    assert extended.returncode == 0, extended.stderr[-4000:]
    smoked = json.loads(extended.stdout)[-1]["smoke"]["notebooks"]
    assert [(n["owner"], n["ok"]) for n in smoked] == [("base", True), ("test-conda", True), ("test-conda-child", True)]

    # the openbabel scenario: packages carried in by hand, the channel gone
    recipe = folder / "image.toml"
    for package in lock.package:
        archive = channel.folder / package.url.split("/imagebuild-test/", 1)[1]
        recipe.write_text(
            recipe.read_text()
            + f'\n[[assets]]\nname = "{package.name}"\nurls = ["{package.url}"]\nsha256 = "{package.hash.sha256}"\nconda = true\n'
        )
        assert run("assets", "add", str(archive)).returncode == 0
    channel.close()
    offline = run("build", "test-conda", "--mirror", "site", "--offline", "--json")
    assert offline.returncode == 0, offline.stderr[-4000:]
    carried = json.loads(offline.stdout)[-1]
    assert carried["action"] == "built" and carried["smoke"]["notebooks"][-1]["ok"]

    check = run("lock", "--check", "test-conda")
    assert check.returncode == 0, check.stdout
    (folder / "environment.yml").write_text(ENVIRONMENT + "  - hello-data\n")
    assert run("lock", "--check", "test-conda").returncode == 8
