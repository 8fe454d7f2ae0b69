"""BuildKit and the classic fallback, images side by side, package caches that survive a build,
and a CI matrix on two engines that hand parents over through one registry.

Every build here is a real `imagebuild` run on the real engine; base is the session's (BuildKit's
layer cache makes another project's copy of it cheap)."""

import json
import secrets
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagebuild.build.builders import find_builder
from tests.integration.engines import side_engine
from tests.integration.mirrored import MirroredSite

pytestmark = pytest.mark.engine

STAMPED = """\
#!/bin/sh
# {nonce}: a script of its own, so no layer cache has its step
set -e
date +%s.%N > "$HOME/started"
sleep {seconds}
date +%s.%N > "$HOME/ended"
"""


def _recipe(project, name: str, *, seconds: int = 0, parent: str = "base", extra: str = "") -> None:
    """A small child: an env value of its own (so its content is its own) and a postBuild that
    records when it ran."""
    project.recipe(
        name,
        f'parent = "{parent}"\npost_build = "postBuild"\n{extra}[env]\nWHO = "{name}-{secrets.token_hex(4)}"\n',
        {"postBuild": STAMPED.format(seconds=seconds, nonce=secrets.token_hex(8))},
    )
    (project.root / "images" / name / "postBuild").chmod(0o755)


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["imagebuild", *args], cwd=root, env=env, capture_output=True, text=True, timeout=1800)


def _outcomes(done: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    assert done.returncode == 0, done.stderr[-3000:]
    return {outcome["name"]: outcome for outcome in json.loads(done.stdout)}


def _stamps(engine, ref: str) -> tuple[float, float]:
    shown = engine.client.containers.run(ref, ["bash", "-c", "cat $HOME/started $HOME/ended"], remove=True).decode().split()
    return float(shown[0]), float(shown[1])


def test_the_classic_builder_still_builds_and_smoke_tests_the_same_content(engine, base_build, make_project):
    """Without BuildKit (--builder classic, as on an engine whose CLIs all refuse it) the same
    recipe builds, passes its smoke notebooks, and has the same content hash and tag."""
    _recipe(make_project, "classic-child", extra='[python]\nrequirements = "requirements.txt"\n')
    (make_project.root / "images" / "classic-child" / "requirements.txt").write_text("colorama==0.4.6\n")
    planned = json.loads(_cli(make_project.root, "plan", "classic-child", "--json").stdout)[-1]
    built = _cli(make_project.root, "build", "classic-child", "--builder", "classic", "--json")
    assert "building with Docker's classic builder" in built.stderr
    outcome = _outcomes(built)["classic-child"]
    assert outcome["action"] == "built" and outcome["smoke"]["notebooks"]  # the ancestors' notebooks ran, and passed
    assert (outcome["content_hash"], outcome["ref"]) == (planned["content_hash"], planned["ref"])
    entries, below = engine.client.api.history(outcome["ref"]), engine.client.api.history(base_build.ref)
    own = json.dumps(entries[: len(entries) - len(below)])  # the child's steps (base was built by BuildKit)
    assert "buildkit.dockerfile.v0" not in own and "--mount=" not in own and "with-build-env" in own
    shown = engine.client.containers.run(outcome["ref"], ["python", "-c", "import colorama; print('ok')"], remove=True)
    assert shown.decode().strip() == "ok"


def test_children_build_side_by_side_and_a_no_change_build_never_waits(engine, base_build, make_project):
    _recipe(make_project, "left", seconds=8)
    _recipe(make_project, "right", seconds=8)
    together = _outcomes(_cli(make_project.root, "build", "left", "right", "--jobs", "2", "--no-smoke", "--json"))
    left, right = (_stamps(engine, together[name]["ref"]) for name in ("left", "right"))
    assert left[0] < right[1] and right[0] < left[1], (left, right)  # their postBuild steps overlapped
    # a build of other content runs; a no-change build of `left` meanwhile neither waits nor builds
    _recipe(make_project, "slow", seconds=40)
    log = make_project.root / "build" / "slow" / "build.log"
    slow = subprocess.Popen(
        ["imagebuild", "build", "slow", "--no-smoke"], cwd=make_project.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 600
        while not (log.is_file() and "postBuild" in log.read_text()) and slow.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert slow.poll() is None, slow.stderr.read() if slow.stderr else ""
        again = _cli(make_project.root, "build", "left", "--no-smoke", "--json")
        assert slow.poll() is None  # `slow` still builds: `left` did not wait for it
        assert _outcomes(again)["left"]["action"] == "reused" and "waiting for another imagebuild" not in again.stderr
    finally:
        slow.wait(timeout=900)
    assert slow.returncode == 0


def test_a_one_package_lock_change_downloads_that_package_only(site: MirroredSite):
    """uv's downloads live in a cache mount that outlives the build: after one pin changes, the
    mirror's access log shows one new package file, the others come from the cache."""
    folder = site.root / "images" / "cached"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "image.toml").write_text('parent = "base"\n[python]\nrequirements = "requirements.txt"\n')
    requirements = folder / "requirements.txt"
    nonce = f"# {secrets.token_hex(8)}: a file of its own, so no layer cache has its install step\n"
    log = site.wheelhouse / "access.log"

    def build(pins: str) -> list[str]:
        requirements.write_text(nonce + pins)
        synced = _cli(site.root, "mirror", "sync", "cached", "--to", "wheelhouse", env=site.env)
        assert synced.returncode == 0, synced.stderr[-2000:]
        before = len(log.read_text().splitlines()) if log.is_file() else 0
        _outcomes(_cli(site.root, "build", "cached", "--mirror", "e2e", "--no-smoke", "--json", env=site.env))
        lines = log.read_text().splitlines()[before:]
        return sorted({urllib.parse.unquote(line.split("/files/", 1)[1].split()[0]) for line in lines if "/files/" in line})

    # packages no other image installs; the index's address (a port of this session) keys uv's cache
    first = build("cowsay==6.0\nart==6.4\ntermcolor==2.4.0\n")
    assert {name.split("-")[0] for name in first} == {"cowsay", "art", "termcolor"}, first
    second = build("cowsay==6.1\nart==6.4\ntermcolor==2.4.0\n")
    assert second == ["cowsay-6.1-py3-none-any.whl"], second


@pytest.fixture
def second_engine() -> Iterator[dict[str, str]]:
    with side_engine() as env:
        yield env


def test_the_matrix_runs_on_two_engines_and_hands_parents_over_by_digest(engine, base_build, make_project, registry, second_engine):
    """`plan --all --json` run as a CI matrix: level by level, the jobs of a level at the same time
    on two engines sharing one registry; a child job pulls its parent by content tag and builds
    nothing twice, and a parent whose digest is not the one its job pushed is refused."""
    (make_project.root / "imagebuild.toml").write_text(f'[build]\nrepository = "matrix-{secrets.token_hex(4)}"\n')
    _recipe(make_project, "left")
    _recipe(make_project, "right")
    assert find_builder("auto", second_engine).uses_buildkit
    jobs = json.loads(_cli(make_project.root, "plan", "--all", "--json").stdout)
    levels = {job["image"]: job["level"] for job in jobs}
    assert levels == {"base": 0, "left": 1, "right": 1}
    assert {job["image"]: job["needs"] for job in jobs}["right"] == ["base"]
    command = {job["image"]: job["command"][1:] for job in jobs}  # without the leading "imagebuild"
    at = ["--registry", registry]
    base = _outcomes(_cli(make_project.root, *command["base"], *at))["base"]
    digest = base["published"]["digest"]
    pinned = [f"--parent-digest=base={digest}"]
    left = subprocess.Popen(["imagebuild", *command["left"], *at, *pinned], cwd=make_project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    right = subprocess.Popen(
        ["imagebuild", *command["right"], *at, *pinned], cwd=make_project.root, env=second_engine,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    done = {}
    for name, process in (("left", left), ("right", right)):
        stdout, stderr = process.communicate(timeout=1800)
        done[name] = (_outcomes(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)), stderr)
    for name in ("left", "right"):
        outcomes, _ = done[name]
        assert outcomes["base"]["action"] == "reused" and outcomes[name]["action"] == "built"
        assert outcomes[name]["published"]["digest"].startswith("sha256:")
    assert f"pulling base from {registry}/" in done["right"][1]  # the second engine never built base
    bases = subprocess.run(["/usr/bin/docker", "images", "-q", "--filter", "label=io.imagebuild.image=base"], env=second_engine,
                           capture_output=True, text=True, check=True).stdout.split()
    assert len(set(bases)) == 1
    # a parent whose registry digest is not the one its job reported is refused before any build
    wrong = "sha256:" + "0" * 64
    refused = _cli(make_project.root, *command["right"], *at, f"--parent-digest=base={wrong}", env=second_engine)
    assert refused.returncode == 9, refused.stderr[-2000:]
    assert f"but its job pushed {wrong}; refusing to build on it" in refused.stderr
    assert "building right" not in refused.stderr
