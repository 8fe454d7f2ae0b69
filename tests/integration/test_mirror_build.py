"""End to end, on loopback: base is built (from scratch, no layer cache) through a local PyPI
index that imagebuild synced and serves (with credentials), and a local Debian archive proxy.
The mirrors' own access logs show that every package came through them, the credentials are
in no part of the image, and the image keeps its upstream configuration unless the profile
says `runtime = true`. A dead mirror fails the build at once, naming the mirror."""

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from imagebuild.build.rootfs import _rootfs_tarball
from imagebuild.model.project import load_project
from tests.conftest import REPO, free_port, run_config
from tests.integration.conftest import saved_image_blobs
from tests.integration.mirrored import BUNDLED_WITH_VENV, MirroredSite

pytestmark = pytest.mark.engine

def _build(site: MirroredSite, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["imagebuild", "build", "base", "--json", *args], cwd=site.root, env=site.env, capture_output=True, text=True,
        timeout=1800,
    )


@pytest.fixture(scope="module")
def mirrored(site) -> dict:
    """base built from scratch (--no-cache) through the mirrors, smoke notebook included."""
    built = _build(site, "--mirror", "e2e", "--no-cache")
    assert built.returncode == 0, built.stderr[-3000:]
    (outcome,) = json.loads(built.stdout)
    assert outcome["action"] == "built"
    return outcome


def _run(engine, ref: str, script: str) -> str:
    return engine.client.containers.run(ref, ["bash", "-c", script], remove=True, network_mode="none").decode()


def _index_log(site: MirroredSite) -> list[dict]:
    """The served index's access log: one JSON object or one text line per request."""
    lines = (site.wheelhouse / "access.log").read_text().splitlines()
    return [json.loads(line) if line.startswith("{") else {"line": line} for line in lines]


def test_every_python_package_came_through_the_local_index(engine, site, mirrored):
    installed = json.loads(_run(engine, mirrored["ref"], "/opt/venv/bin/python -m pip list --format json 2>/dev/null"))
    log_text = (site.wheelhouse / "access.log").read_text()
    served = {urllib.parse.unquote(part.split("/files/", 1)[1].split()[0]) for part in log_text.split() if "/files/" in part}
    served_names = {name.split("-")[0].lower().replace("_", "-") + "==" + name.split("-")[1] for name in served}
    wanted = {
        f"{d['name'].lower().replace('_', '-')}=={d['version']}" for d in installed if d["name"].lower() not in BUNDLED_WITH_VENV
    }
    assert len(wanted) > 50
    assert wanted <= served_names, sorted(wanted - served_names)
    # the served index answers 401 without the profile's credentials (test_mirror_sync proves it),
    # so every 200 above means the build sent them
    assert " 401 " not in log_text


def test_every_debian_package_came_through_the_archive_proxy(engine, site, mirrored):
    listing = "dpkg-query -W -f '${Package} ${Version} ${Architecture}\\n'"
    root_packages = set(_run(engine, "debian:bookworm", listing).splitlines())
    image_packages = set(_run(engine, mirrored["ref"], listing).splitlines())
    added = image_packages - root_packages
    assert len(added) > 20  # python3, tini, git, ... and their dependencies
    fetched = {urllib.parse.unquote(request.path).rsplit("/", 1)[-1] for request in site.proxy.log if request.status == 200}
    expected = {f"{name}_{version.split(':', 1)[-1]}_{arch}.deb" for name, version, arch in (p.split() for p in added)}
    assert expected <= fetched, sorted(expected - fetched)


def test_credentials_and_mirror_stay_out_of_the_image(engine, site, mirrored):
    """With BuildKit the build environment is a secret mount: neither the credentials nor the
    mirrors' addresses are in a layer, the config or `docker history` (the classic builder's
    history names its loopback build-environment server; test_classic_builder covers it)."""
    addresses = [site.index_url.split("/simple")[0].removeprefix("http://"), site.proxy.url.removeprefix("http://")]
    blobs = saved_image_blobs(engine, mirrored["ref"])
    for secret in (site.token, site.user, *addresses):
        assert not any(secret.encode() in blob for blob in blobs), f"{secret} is in the image"
    history = json.dumps(engine.client.api.history(mirrored["ref"]))
    assert "buildkit.dockerfile.v0" in history  # built by BuildKit
    assert not any(text in history for text in (site.token, site.user, *addresses, "127.0.0.1"))
    config = json.dumps(engine.client.images.get(mirrored["ref"]).attrs["Config"])
    assert not any(text in config for text in (site.token, site.user, *addresses))


def test_image_keeps_its_upstream_configuration(engine, site, mirrored):
    shown = _run(engine, mirrored["ref"], "cat /etc/apt/sources.list; ls /etc/pip.conf /etc/uv/uv.toml 2>&1 || true")
    assert run_config(load_project(REPO)).debian_archive in shown
    assert "127.0.0.1" not in shown
    assert "No such file" in shown


def test_same_recipe_through_a_mirror_has_the_same_content_hash(site, mirrored):
    planned = subprocess.run(
        ["imagebuild", "plan", "base", "--json", "--mirror", "none"], cwd=site.root, capture_output=True, text=True
    )
    assert json.loads(planned.stdout)[0]["content_hash"] == mirrored["content_hash"]


def test_runtime_profile_configures_the_mirror_inside_the_image(engine, site, mirrored):
    built = _build(site, "--mirror", "e2e-runtime", "--no-smoke")
    assert built.returncode == 0, built.stderr[-3000:]
    (outcome,) = json.loads(built.stdout)
    assert outcome["content_hash"] != mirrored["content_hash"]  # the image differs: it carries the mirror
    shown = _run(engine, outcome["ref"], "cat /etc/pip.conf /etc/uv/uv.toml /etc/apt/sources.list")
    assert site.index_url in shown
    assert f"{site.proxy.url}/debian" in shown
    blobs = saved_image_blobs(engine, outcome["ref"])
    assert not any(site.token.encode() in blob for blob in blobs)


def test_dead_mirror_fails_at_once_naming_the_mirror(site):
    dead = site.root / "mirrors" / "dead.toml"
    dead.write_text(f'[pypi]\nindex_url = "http://127.0.0.1:{free_port()}/simple"\n')
    failed = _build(site, "--mirror", "dead", "--no-cache")
    assert failed.returncode == 6, failed.stderr
    assert "mirror 'dead'" in failed.stderr
    assert str(dead) in failed.stderr
    assert "connection refused" in failed.stderr.lower()


def test_root_image_bootstraps_through_the_apt_mirror(tmp_path, monkeypatch, site):
    """debootstrap downloads from the mirror; the root file system's sources name upstream."""
    monkeypatch.setenv("IMAGEBUILD_CACHE", str(tmp_path))
    archive = run_config(load_project(REPO)).debian_archive
    before = len(site.proxy.log)
    tarball = _rootfs_tarball("bookworm", archive, f"{site.proxy.url}/debian", tmp_path / "rootfs", print)
    fetched = {request.path.rsplit("/", 1)[-1].split("_")[0] for request in site.proxy.log[before:]}
    assert {"base-files", "dpkg", "apt", "libc6"} <= fetched
    listed = subprocess.run(["tar", "-xOf", str(tarball), "./etc/apt/sources.list"], capture_output=True, text=True)
    assert archive in listed.stdout and "127.0.0.1" not in listed.stdout
