"""Conda environments solved by rattler against a real local channel and written as conda-lock
files that conda-lock parses back; errors name the conflict, or the channel and the mirror."""

from pathlib import Path

import pytest
from conda_lock.lockfile import parse_conda_lock_file

from imagebuild.errors import LockError, RecipeError
from imagebuild.inputs import conda
from imagebuild.inputs.target import DEBIAN_TARGETS
from imagebuild.model.mirror import Mirror, MirrorProfile
from tests.conda_channel import serve_hello_channel

BOOKWORM = DEBIAN_TARGETS["bookworm"]


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    server = serve_hello_channel(tmp_path_factory.mktemp("channel"))
    yield server
    server.close()


def _environment(tmp_path: Path, channels: list[str], specs: list[str]) -> conda.Environment:
    path = tmp_path / "environment.yml"
    path.write_text("channels:\n" + "".join(f"  - {c}\n" for c in channels) + "dependencies:\n" + "".join(f"  - {s}\n" for s in specs))
    return conda.read_environment(path)


def test_lock_is_a_conda_lock_file_with_both_hashes(tmp_path, channel):
    environment = _environment(tmp_path, [channel.url], ["hello-tool"])
    routes = conda.routes(environment, None)
    records = conda.solve(environment, BOOKWORM, routes, None)
    conda.write(conda.lockfile(records, environment, BOOKWORM, routes), tmp_path / conda.LOCK_FILE)
    parsed = parse_conda_lock_file(tmp_path / conda.LOCK_FILE)
    by_name = {p.name: p for p in parsed.package}
    assert set(by_name) == {"hello-tool", "hello-data"}
    assert by_name["hello-data"].version == "2.1"  # the newest that satisfies hello-tool's dependency
    assert by_name["hello-tool"].dependencies == {"hello-data": ">=2"}
    assert by_name["hello-tool"].url == f"{channel.url}/linux-64/hello-tool-1.0-0.tar.bz2"
    assert len(by_name["hello-tool"].hash.sha256 or "") == 64 and len(by_name["hello-tool"].hash.md5 or "") == 32
    assert parsed.metadata.platforms == ["linux-64"]


def test_the_mirror_is_read_and_upstream_urls_are_written(tmp_path, channel):
    upstream = "https://conda.anaconda.org/imagebuild-test"
    environment = _environment(tmp_path, ["imagebuild-test"], ["hello-tool"])
    mirror = Mirror("site", tmp_path / "site.toml", MirrorProfile(conda={"channels": {"imagebuild-test": channel.url}}))
    routes = conda.routes(environment, mirror)
    assert routes[0].used == channel.url
    records = conda.solve(environment, BOOKWORM, routes, mirror)
    lock = conda.lockfile(records, environment, BOOKWORM, routes)
    assert {p.url.rsplit("/", 2)[0] for p in lock.package} == {upstream}


def test_a_spec_that_does_not_solve_names_the_conflict(tmp_path, channel):
    environment = _environment(tmp_path, [channel.url], ["hello-tool", "hello-data <2"])
    with pytest.raises(LockError) as caught:
        conda.solve(environment, BOOKWORM, conda.routes(environment, None), None)
    assert "does not solve" in caught.value.message
    assert "hello-tool" in caught.value.message and "hello-data" in caught.value.message


def test_an_unreachable_channel_names_channel_and_mirror(tmp_path):
    environment = _environment(tmp_path, ["gone"], ["hello-tool"])
    mirror = Mirror("site", tmp_path / "site.toml", MirrorProfile(conda={"channels": {"gone": "http://127.0.0.1:9/gone"}}))
    with pytest.raises(LockError) as caught:
        conda.solve(environment, BOOKWORM, conda.routes(environment, mirror), mirror)
    assert "http://127.0.0.1:9/gone" in caught.value.message and "mirror 'site'" in caught.value.message


def test_pip_sections_and_empty_files_are_refused_with_the_fix(tmp_path):
    path = tmp_path / "environment.yml"
    path.write_text("channels: [conda-forge]\ndependencies:\n  - python\n  - pip:\n    - six\n")
    with pytest.raises(RecipeError, match=r"dependencies\[1\]") as caught:
        conda.read_environment(path)
    assert "requirements.txt" in caught.value.hint
    path.write_text("dependencies: [python]\n")
    with pytest.raises(RecipeError, match="channels"):
        conda.read_environment(path)


@pytest.mark.parametrize("profile", ["tuna", "aliyun"])  # the shipped profiles with a conda mirror
def test_a_conda_lock_file_from_elsewhere_stays_parseable_after_rewriting(tmp_path, profile):
    """conda-lock's own parser reads the mirrored file; only URL prefixes changed, hashes did not."""
    from imagebuild.mirrors.rewrite import FileKind, rewrite_file
    from imagebuild.model.mirror import load_mirror
    from tests.conftest import REPO

    source = REPO / "tests" / "fixtures" / "mirror" / "conda-lock.yml"
    mirror = load_mirror(profile, REPO)
    rewritten = tmp_path / "conda-lock.yml"
    rewritten.write_text(rewrite_file(FileKind.CONDA_LOCK, source.read_text(), mirror.spec, source=source))
    before, after = parse_conda_lock_file(source), parse_conda_lock_file(rewritten)
    assert [p.hash for p in after.package] == [p.hash for p in before.package]
    assert [p.url for p in after.package] != [p.url for p in before.package]
    assert all("conda.anaconda.org" not in p.url for p in after.package if p.manager == "conda")


def test_a_carried_in_package_is_solved_from_a_local_channel(tmp_path, channel):
    """A package no reachable channel has (the openbabel scenario) comes from the asset cache."""
    from tests.conda_channel import make_package

    carried = make_package(tmp_path / "elsewhere", "noarch", "offline-only", "3.0", [], {"share/offline.txt": b"x\n"})
    environment = _environment(tmp_path, [channel.url], ["hello-tool", "offline-only"])
    routes = conda.routes(environment, None)
    local = [conda.LocalPackage(carried.name, carried, "")]
    with_local = [conda.local_channel(local, tmp_path / "local"), *routes]
    records = conda.solve(environment, BOOKWORM, with_local, None)
    lock = conda.lockfile(records, environment, BOOKWORM, routes, local)
    urls = {p.name: p.url for p in lock.package}
    assert urls["offline-only"] == "file:///opt/imagebuild/conda-pkgs/noarch/offline-only-3.0-0.tar.bz2"
    assert urls["hello-tool"].startswith(channel.url)


def _locked(tmp_path, channel, name: str, specs: list[str], parent: Path | None = None):
    folder = tmp_path / name
    folder.mkdir()
    environment = _environment(folder, [channel.url], specs)
    pinned = []
    if parent is not None:
        environment = conda.extended(conda.read_environment(parent / "environment.yml"), environment)
        pinned = conda.locked_records(parent / conda.LOCK_FILE, "linux-64")
    routes = conda.routes(environment, None)
    records = conda.solve(environment, BOOKWORM, routes, None, pinned)
    conda.write(conda.lockfile(records, environment, BOOKWORM, routes), folder / conda.LOCK_FILE)
    return folder, {p.name: p.version for p in parse_conda_lock_file(folder / conda.LOCK_FILE).package}


def test_a_child_extends_its_parents_environment_without_moving_its_pins(tmp_path, channel):
    parent, parent_pins = _locked(tmp_path, channel, "parent", ["hello-data"])
    _child, child_pins = _locked(tmp_path, channel, "child", ["hello-tool"], parent)
    assert child_pins == {**parent_pins, "hello-tool": "1.0"}


def test_a_child_that_would_move_a_parent_pin_does_not_solve(tmp_path, channel):
    parent, parent_pins = _locked(tmp_path, channel, "parent", ["hello-data <2"])
    assert parent_pins == {"hello-data": "1.0"}
    with pytest.raises(LockError, match="does not solve") as caught:
        _locked(tmp_path, channel, "child", ["hello-tool"], parent)
    assert "hello-data" in caught.value.message


def test_the_installer_takes_exactly_the_lock_and_refuses_a_wrong_hash(tmp_path, channel):
    """support/install-conda, as the build runs it, on this host: a tampered sha256 is refused."""
    import subprocess
    import sys

    import yaml

    from tests.conftest import REPO

    folder, _ = _locked(tmp_path, channel, "env", ["hello-tool"])
    installer = REPO / "imagebuild" / "support" / "install-conda"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RATTLER_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, installer, folder / conda.LOCK_FILE, tmp_path / "prefix", "linux-64"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "prefix" / "share" / "hello" / "data.txt").read_text() == "42\n"
    lock = yaml.safe_load((folder / conda.LOCK_FILE).read_text())
    lock["package"][0]["hash"]["sha256"] = "a" * 64
    (folder / "tampered.yml").write_text(yaml.safe_dump(lock))
    refused = subprocess.run([sys.executable, installer, folder / "tampered.yml", tmp_path / "other", "linux-64"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "hash mismatch" in refused.stderr
