"""The mirror-rewrite step and the build environment a mirror gives build commands."""

import textwrap

import pytest
import yaml

from imagebuild.errors import RecipeError
from imagebuild.mirrors.build import build_environment
from imagebuild.mirrors.hostenv import with_credentials
from imagebuild.model.mirror import load_mirror
from imagebuild.model.project import load_project
from imagebuild.pipeline import prepare
from imagebuild.plan import plan
from tests.conftest import offline_fetcher, run_config

ARCHIVE = "http://archive.example.org/debian"
PROFILE = """
compose = "https://files.example.org/compose"
[pypi]
index_url = "http://127.0.0.1:3141/simple"
extra_index_urls = ["https://extra.example.org/simple"]
trusted_hosts = ["127.0.0.1"]
[apt]
debian = "http://127.0.0.1:3142/debian"
[git]
"https://github.com" = "https://git.example.org/github.com"
[[credentials]]
host = "127.0.0.1:3141"
username_env = "TEST_MIRROR_USER"
password_env = "TEST_MIRROR_TOKEN"
"""
POST_BUILD = "#!/bin/bash\ncurl -L https://github.com/docker/compose/releases/download/v2.29.0/docker-compose-linux-x86_64 -o /tmp/x\n"


@pytest.fixture
def site(make_project, monkeypatch):
    monkeypatch.setenv("TEST_MIRROR_USER", "alice")
    monkeypatch.setenv("TEST_MIRROR_TOKEN", "s3cr:t/")
    (make_project.root / "mirrors").mkdir()
    for name, runtime in (("site", "false"), ("site-runtime", "true")):
        (make_project.root / "mirrors" / f"{name}.toml").write_text(f"runtime = {runtime}\n" + textwrap.dedent(PROFILE))
    make_project.recipe("child", 'parent = "base"\npost_build = "postBuild"\n', {"postBuild": POST_BUILD})
    return make_project.root


def _prepared(root, mirror_name):
    project = load_project(root)
    mirror = load_mirror(mirror_name, root) if mirror_name else None
    return {c.rendered.plan.name: c for c in prepare(offline_fetcher(project, mirror=mirror), plan(project, ["child"]))}


def test_credentials_go_into_the_urls_of_their_host_only():
    credentials = {"127.0.0.1:3141": ("alice", "s3cr:t/")}
    assert with_credentials("http://127.0.0.1:3141/simple", credentials) == "http://alice:s3cr%3At%2F@127.0.0.1:3141/simple"
    assert with_credentials("http://127.0.0.1:3142/debian", credentials) == "http://127.0.0.1:3142/debian"


def test_build_environment_carries_indexes_git_apt_and_credentials(site):
    config = run_config(load_project(site), None, load_mirror("site", site))
    environment = build_environment(config.mirror, config.logins(), b"PEM", ARCHIVE)
    variables = dict(environment.variables)
    assert variables["PIP_INDEX_URL"] == variables["UV_DEFAULT_INDEX"] == "http://alice:s3cr%3At%2F@127.0.0.1:3141/simple"
    assert variables["UV_INDEX"] == variables["PIP_EXTRA_INDEX_URL"] == "https://extra.example.org/simple"
    assert variables["PIP_TRUSTED_HOST"] == variables["UV_INSECURE_HOST"] == "127.0.0.1"
    assert variables["GIT_CONFIG_KEY_0"] == "url.https://git.example.org/github.com/.insteadOf"
    assert variables["GIT_CONFIG_VALUE_0"] == "https://github.com/"
    assert "archive\\.example\\.org" in environment.apt_sed  # the host's archive counts as Debian upstream
    assert environment.ca_bundle == b"PEM"
    assert set(environment.secrets) == {"alice", "s3cr:t/"}


def test_missing_credential_variable_names_file_field_and_fix(site, monkeypatch):
    monkeypatch.delenv("TEST_MIRROR_TOKEN")
    config = run_config(load_project(site), None, load_mirror("site", site))
    with pytest.raises(RecipeError) as caught:
        config.logins()
    message = caught.value.render()
    assert str(site / "mirrors" / "site.toml") in message
    assert "[[credentials]][0].password_env" in message
    assert "export TEST_MIRROR_TOKEN=" in message


def test_build_time_mirror_keeps_the_content_hash_and_rewrites_downloads(site):
    upstream = _prepared(site, None)
    mirrored = _prepared(site, "site")
    assert upstream["base"].content_hash == mirrored["base"].content_hash
    assert upstream["base"].rendered.dockerfile == mirrored["base"].rendered.dockerfile
    post_build = {f.arcname: f.data for f in mirrored["child"].rendered.files}["recipe/postBuild"].decode()
    assert "https://files.example.org/compose/v2.29.0/docker-compose-linux-x86_64" in post_build
    assert mirrored["child"].content_hash != upstream["child"].content_hash  # a different download is a different input


def test_runtime_mirror_adds_its_configuration_to_the_root_image_without_credentials(site):
    upstream = _prepared(site, None)
    runtime = _prepared(site, "site-runtime")
    base = runtime["base"]
    assert base.content_hash != upstream["base"].content_hash
    dockerfile = base.rendered.dockerfile
    assert dockerfile.startswith(upstream["base"].rendered.dockerfile)  # earlier layers stay cached
    for line in (
        "COPY imagebuild/mirror/pip.conf /etc/pip.conf",
        "COPY imagebuild/mirror/uv.toml /etc/uv/uv.toml",
        "COPY imagebuild/mirror/gitconfig /etc/gitconfig",
        "COPY imagebuild/mirror/apt.sed /usr/local/share/imagebuild/mirror/apt.sed",
    ):
        assert line in dockerfile
    assert dockerfile.rstrip().endswith("USER 1000")
    files = {f.arcname: f.data.decode() for f in base.rendered.files}
    assert "index-url = http://127.0.0.1:3141/simple" in files["imagebuild/mirror/pip.conf"]
    assert 'url = "http://127.0.0.1:3141/simple"\ndefault = true' in files["imagebuild/mirror/uv.toml"]
    assert "insteadOf = https://github.com/" in files["imagebuild/mirror/gitconfig"]
    assert all("alice" not in text and "s3cr" not in text for text in files.values())
    assert "imagebuild/mirror/pip.conf" not in {f.arcname for f in runtime["child"].rendered.files}


def test_runtime_conda_configuration_names_each_mirrored_channel():
    from imagebuild.mirrors.build import runtime_files
    from imagebuild.model.mirror import load_mirror
    from tests.conftest import REPO

    files = {destination: item.data.decode() for item, destination in runtime_files(load_mirror("tuna", REPO), "http://deb.debian.org/debian")}
    condarc = yaml.safe_load(files["/etc/conda/.condarc"])
    assert condarc["custom_channels"]["conda-forge"] == "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud"
    assert condarc["default_channels"] == [
        "https://mirrors.tuna.tsinghua.edu.cn/anaconda/pkgs/main",
        "https://mirrors.tuna.tsinghua.edu.cn/anaconda/pkgs/r",
    ]
