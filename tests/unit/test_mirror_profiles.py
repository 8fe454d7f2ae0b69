"""The shipped profiles in mirrors/, and the errors a malformed profile gives."""

import re
import textwrap
from pathlib import Path

import pytest

from imagebuild.errors import RecipeError
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import MirrorProfile, load_mirror, profile_paths
from imagebuild.model.routes import rewrite_image_ref
from tests.conftest import REPO

PUBLIC_DOCS = {
    "tuna": "https://mirrors.tuna.tsinghua.edu.cn/help/",
    "ustc": "https://mirrors.ustc.edu.cn/help/",
    "aliyun": "https://developer.aliyun.com/mirror/",
    "daocloud": "https://github.com/DaoCloud/",
}
SHIPPED = [*PUBLIC_DOCS, "local"]
COMPOSE_FILE = "v2.29.7/docker-compose-linux-x86_64"
EXAMPLE_LINE = re.compile(r'^# (\[\[?[a-z_.]+\]\]?|"?[A-Za-z_][\w./:-]*"? = .+)$')
"""A commented-out TOML line of local.toml ('# key = value', '# [table]'), not prose."""


def test_every_shipped_profile_loads():
    assert set(profile_paths(REPO)) >= set(SHIPPED)
    for name in SHIPPED:
        mirror = load_mirror(name, REPO)
        assert mirror.name == name and mirror.spec.description


@pytest.mark.parametrize("name", list(PUBLIC_DOCS))
def test_public_profiles_name_their_documentation(name):
    comments = [line for line in (REPO / "mirrors" / f"{name}.toml").read_text().splitlines() if line.startswith("#")]
    assert any(f" {PUBLIC_DOCS[name]}" in line for line in comments), f"{name}.toml names no page of its mirror's help"


@pytest.mark.parametrize("name", SHIPPED)
def test_no_credential_values_anywhere(name):
    text = (REPO / "mirrors" / f"{name}.toml").read_text()
    assert not re.search(r"://[^/\s\"']*@", text), "a URL with a user or password"
    assert not re.search(r"^[#\s]*\"?(user(name)?|password|token|secret|auth)\"?\s*=", text, re.IGNORECASE | re.MULTILINE)
    for credential in load_mirror(name, REPO).spec.credentials:
        assert credential.username_env.isupper() and credential.password_env.isupper()


def test_profiles_use_https_except_for_apt_and_loopback():
    """apt verifies signatures and a fresh image has no CA certificates; everything else needs TLS."""
    for name in PUBLIC_DOCS:
        spec = load_mirror(name, REPO).spec
        rules = url_rules(spec).rules
        assert all(rule.mirror.startswith("https://") for rule in rules if not rule.purpose.startswith("apt:"))
        assert all(rule.mirror.startswith("http://") for rule in rules if rule.purpose.startswith("apt:"))


@pytest.mark.parametrize(
    ("name", "upstream", "mirrored"),
    [
        ("tuna", "https://pypi.org/simple", "https://pypi.tuna.tsinghua.edu.cn/simple"),
        ("tuna", "http://deb.debian.org/debian", "http://mirrors.tuna.tsinghua.edu.cn/debian"),
        ("tuna", "https://conda.anaconda.org/bioconda", "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/bioconda"),
        ("ustc", "http://security.ubuntu.com/ubuntu", "http://mirrors.ustc.edu.cn/ubuntu"),
        ("ustc", "https://conda.anaconda.org/conda-forge", "https://conda.anaconda.org/conda-forge"),
        ("aliyun", "http://security.debian.org/debian-security", "http://mirrors.aliyun.com/debian-security"),
        ("aliyun", "https://repo.anaconda.com/pkgs/main", "https://mirrors.aliyun.com/anaconda/pkgs/main"),
        (
            "daocloud",
            f"https://github.com/docker/compose/releases/download/{COMPOSE_FILE}",
            f"https://files.m.daocloud.io/github.com/docker/compose/releases/download/{COMPOSE_FILE}",
        ),
        ("local", "http://deb.debian.org/debian", "http://127.0.0.1:3142/deb.debian.org/debian"),
    ],
)
def test_shipped_profiles_rewrite_upstream_urls(name, upstream, mirrored):
    assert url_rules(load_mirror(name, REPO).spec).apply(f"URL {upstream} end\n") == f"URL {mirrored} end\n"


@pytest.mark.parametrize(
    ("ref", "mirrored"),
    [
        ("jupyter/minimal-notebook:2024-10-07", "docker.m.daocloud.io/jupyter/minimal-notebook:2024-10-07"),
        ("postgres:16", "docker.m.daocloud.io/library/postgres:16"),
        ("quay.io/jupyterhub/jupyterhub:5", "quay.m.daocloud.io/jupyterhub/jupyterhub:5"),
        ("registry.k8s.io/pause:3.9", "k8s.m.daocloud.io/pause:3.9"),
        ("mcr.microsoft.com/devcontainers/base", "mcr.microsoft.com/devcontainers/base"),
    ],
)
def test_daocloud_registry_prefixes(ref, mirrored):
    assert rewrite_image_ref(ref, load_mirror("daocloud", REPO).spec.registry) == mirrored


def test_local_template_loads_as_shipped_and_its_examples_cover_every_key(tmp_path):
    shipped = load_mirror("local", REPO)
    assert shipped.ca_cert is None
    assert shipped.serve_pypi == REPO / "mirrors" / ".." / "wheelhouse"  # need not exist before the first sync
    lines = (REPO / "mirrors" / "local.toml").read_text().splitlines()
    uncommented = "\n".join(line[2:] if EXAMPLE_LINE.match(line) else line for line in lines)
    root = tmp_path / "project"
    (root / "mirrors").mkdir(parents=True)
    (root / "wheelhouse").mkdir()
    (root / "mirrors" / "site-ca.pem").write_text("PEM")
    (root / "mirrors" / "site.toml").write_text(uncommented)
    examples = load_mirror("site", root)
    assert set(examples.spec.model_dump(exclude_unset=True)) == set(MirrorProfile.model_fields)
    assert examples.serve_pypi == root / "mirrors" / ".." / "wheelhouse"


def test_readme_example_is_a_valid_profile_showing_every_key(tmp_path):
    readme = (REPO / "mirrors" / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    root = tmp_path / "project"
    (root / "mirrors").mkdir(parents=True)
    (root / "wheelhouse").mkdir()
    (root / "mirrors" / "site-ca.pem").write_text("PEM")
    (root / "mirrors" / "example.toml").write_text(example)
    spec = load_mirror("example", root).spec
    assert set(spec.model_dump(exclude_unset=True)) == set(MirrorProfile.model_fields)


def _load(tmp_path: Path, toml: str) -> tuple[Path, str]:
    """Load mirrors/x.toml in a throwaway project; the RecipeError's text."""
    path = tmp_path / "project" / "mirrors" / "x.toml"
    path.parent.mkdir(parents=True)
    path.write_text(textwrap.dedent(toml))
    with pytest.raises(RecipeError) as caught:
        load_mirror("x", tmp_path / "project")
    return path, caught.value.render()


CREDENTIAL = '[[credentials]]\nhost = "{host}"\nusername_env = "{user}"\npassword_env = "MIRROR_PASSWORD"\n'


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[pypi]\nindex_url = "https://pypi.example.org/simple"\ntrusted_host = ["pypi.example.org"]\n',
            "[pypi].trusted_host: unknown key\n  hint: did you mean 'trusted_hosts'?",
        ),
        ('[regsitry]\n"docker.io" = "docker.example.org"\n', "regsitry: unknown key\n  hint: did you mean 'registry'?"),
        ('[apt]\ndebain = "http://deb.example.org/debian"\n', "[apt].debain: unknown key\n  hint: did you mean"),
        ('[apt]\ndebian = "mirrors.example.org/debian"\n', "[apt].debian: must be an http:// or https://"),
        ('compose = "ftp://files.example.org/compose"\n', "compose: must be an http:// or https:// URL"),
        ('[registry]\n"docker.io" = "https://docker.example.org"\n', "[registry].docker.io: must be a"),
        ('[registry]\n"docker.io" = "mirror/dockerhub"\n', "[registry].docker.io: must be a registry host"),
        (
            '[registry]\n"docker.io" = "quay.io/hub"\n"quay.io" = "quay.example.org"\n',
            "(top level): [registry]: the mirror of docker.io (quay.io/hub) is itself a registry",
        ),
        (
            '[git]\n"https://github.com" = "https://proxy.example.org/?u=https://github.com"\n',
            "(top level): the mirror for git (https://proxy.example.org/?u=https://github.com) would itself",
        ),
        (
            CREDENTIAL.format(host="pypi.example.org", user="MIRROR-USER"),
            "[credentials][0].username_env: must be the NAME of an environment variable",
        ),
        (
            CREDENTIAL.format(host="https://pypi.example.org", user="MIRROR_USER"),
            "[credentials][0].host: must be a host name",
        ),
    ],
)
def test_bad_profiles_name_file_and_field(tmp_path, toml, expected):
    path, message = _load(tmp_path, toml)
    assert message.startswith(f"{path}: {expected}"), message


@pytest.mark.parametrize(
    "toml",
    [
        '[pypi]\nindex_url = "https://builder:hunter2@pypi.example.org/simple"\n',
        '[conda.channels]\n"conda-forge" = "https://builder:hunter2@conda.example.org/conda-forge"\n',
    ],
)
def test_a_url_with_user_and_password_is_refused_without_echoing_it(tmp_path, toml):
    path, message = _load(tmp_path, toml)
    assert message.startswith(f"{path}: ")
    assert "must not contain a user or password" in message and "[[credentials]]" in message
    assert "hunter2" not in message


def test_an_unknown_profile_name_suggests_a_shipped_one():
    with pytest.raises(RecipeError, match="no mirror profile named 'tunaa'") as caught:
        load_mirror("tunaa", REPO)
    assert caught.value.hint == "did you mean 'tuna'?"
