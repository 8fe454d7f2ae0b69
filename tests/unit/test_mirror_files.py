"""`imagebuild mirror rewrite`: standalone files admins have, pointed at a mirror profile."""

import configparser
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from imagebuild.errors import RecipeError
from imagebuild.mirrors.rewrite import FileKind, detect_kind, rewrite_file, unrouted_entries
from imagebuild.mirrors.rewrite.buildtime import BEGIN, END, SECRET_FLAG
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import MirrorProfile, load_mirror, profile_paths
from imagebuild.model.routes import rewrite_image_ref
from tests.conftest import REPO
from tests.unit.test_mirror_rules import EMPTY, PROFILES, PROXY, SITE

FIXTURES = REPO / "tests" / "fixtures" / "mirror"
REGISTRY_ONLY = MirrorProfile.model_validate({"registry": {"docker.io": "docker.mirror.example"}})


def rewrite(kind: FileKind, text: str, profile: MirrorProfile) -> str:
    return rewrite_file(kind, text, profile, source=Path("the-file"))


def without_run_prefixes(text: str) -> str:
    """A rewritten Dockerfile without the build-time settings put before its RUN commands (and
    the secret's mount flag of the BuildKit form)."""
    return re.sub(f"{re.escape(BEGIN)}.*?{re.escape(END)} ", "", text).replace(f" {SECRET_FLAG}", "")


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith(("#", ";"))]


def digests(text: str) -> list[str]:
    return re.findall(r"\b[0-9a-f]{32,64}\b", text)


def uncommented_lines_with(text: str, fragment: str) -> list[str]:
    return [line for line in text.splitlines() if fragment in line and not line.lstrip().startswith("#")]


# --- table-driven, per kind -----------------------------------------------------------------------

CASES = [
    # Dockerfile
    (
        "from-hub-and-stage",
        FileKind.DOCKERFILE,
        "FROM python:3.11 AS build\nFROM build\nFROM quay.io/jupyter/base-notebook:2024-01-01\nFROM scratch\n",
        SITE,
        ("FROM registry.site.example/dockerhub/library/python:3.11 AS build\nFROM build\n"
        "FROM registry.site.example/quay/jupyter/base-notebook:2024-01-01\nFROM scratch\n"),
    ),
    (
        "from-arg-default",
        FileKind.DOCKERFILE,
        ('ARG BASE="jupyter/minimal-notebook:2023-10-20"\nARG TAG=5\nFROM ${BASE}\nFROM $BASE AS again\n'
        "FROM jupyterhub/jupyterhub:$TAG\n"),
        REGISTRY_ONLY,
        ('ARG BASE="docker.mirror.example/jupyter/minimal-notebook:2023-10-20"\nARG TAG=5\nFROM ${BASE}\n'
        "FROM $BASE AS again\nFROM docker.mirror.example/jupyterhub/jupyterhub:$TAG\n"),
    ),
    (
        "stage-arg-is-not-global",
        FileKind.DOCKERFILE,
        "FROM debian\nARG BASE=python\nFROM ${BASE}\n",
        REGISTRY_ONLY,
        "FROM docker.mirror.example/library/debian\nARG BASE=python\nFROM ${BASE}\n",
    ),
    (
        "from-over-continuation-and-platform",
        FileKind.DOCKERFILE,
        ("FROM --platform=$BUILDPLATFORM \\\n    golang:1.22 \\\n    AS tools\nCOPY --from=tools /go/bin/x /x\n"
        "COPY --from=0 /a /a\n"),
        REGISTRY_ONLY,
        ("FROM --platform=$BUILDPLATFORM \\\n    docker.mirror.example/library/golang:1.22 \\\n    AS tools\n"
        "COPY --from=tools /go/bin/x /x\nCOPY --from=0 /a /a\n"),
    ),
    (
        "urls-in-run-not-in-comments",
        FileKind.DOCKERFILE,
        ("FROM debian\n# pip install -i https://pypi.org/simple x\nRUN pip install -i https://pypi.org/simple \\\n"
        "    # a comment inside the continuation: https://pypi.org/simple\n    git+https://github.com/a/b\n"),
        SITE,
        ("FROM registry.site.example/dockerhub/library/debian\n# pip install -i https://pypi.org/simple x\n"
        "RUN pip install -i http://pypi.site.example:3141/simple \\\n"
        "    # a comment inside the continuation: https://pypi.org/simple\n"
        "    git+https://git.site.example/github.com/a/b\n"),
    ),
    (
        "heredoc-body-is-content",
        FileKind.DOCKERFILE,
        "FROM debian\nRUN <<EOF\nfrom pathlib import Path\ncurl https://get.helm.sh/helm.tgz\nEOF\nFROM python\n",
        SITE,
        ("FROM registry.site.example/dockerhub/library/debian\nRUN <<EOF\nfrom pathlib import Path\n"
        "curl https://files.site.example/helm/helm.tgz\nEOF\nFROM registry.site.example/dockerhub/library/python\n"),
    ),
    (
        "escape-directive",
        FileKind.DOCKERFILE,
        ("# escape=`\nFROM `\n  mcr.microsoft.com/windows/servercore\nRUN curl https://get.helm.sh/a `\n"
        "  https://get.helm.sh/b\n"),
        SITE,
        ("# escape=`\nFROM `\n  mcr.microsoft.com/windows/servercore\n"
        "RUN curl https://files.site.example/helm/a `\n  https://files.site.example/helm/b\n"),
    ),
    # compose
    (
        "compose-images-only",
        FileKind.COMPOSE,
        ("x-base: &base\n  image: postgres:16\nservices:\n  db:\n    <<: *base\n  hub:\n"
        '    image: "quay.io/jupyterhub/jupyterhub:5"  # hub\n'
        "    environment:\n      image: not-an-image-reference\n  web: {image: 'nginx', ports: ['80:80']}\n"),
        SITE,
        ("x-base: &base\n  image: registry.site.example/dockerhub/library/postgres:16\nservices:\n  db:\n    <<: *base\n"
        '  hub:\n    image: "registry.site.example/quay/jupyterhub/jupyterhub:5"  # hub\n'
        "    environment:\n      image: not-an-image-reference\n"
        "  web: {image: 'registry.site.example/dockerhub/library/nginx', ports: ['80:80']}\n"),
    ),
    (
        "compose-variables-untouched",
        FileKind.COMPOSE,
        "services:\n  hub:\n    image: ${HUB_IMAGE:-jupyterhub/jupyterhub}\n",
        SITE,
        "services:\n  hub:\n    image: ${HUB_IMAGE:-jupyterhub/jupyterhub}\n",
    ),
    # environment.yml
    (
        "environment-names-alias-and-defaults",
        FileKind.ENVIRONMENT,
        ("channels:\n  - conda-forge/label/dev\n  - 'bioconda'\n  - defaults  # anaconda\n  - nodefaults\n"
        "  - ./local-channel\n"
        "  - https://conda.anaconda.org/conda-forge\ndependencies:\n  - numpy\n  - pip:\n"
        "    - -i https://pypi.org/simple\n"),
        SITE,
        ("channels:\n  - https://conda.site.example/mirror/conda-forge/label/dev\n"
        "  - 'https://conda.site.example/bioconda'\n"
        "  - https://conda.site.example/pkgs/main\n  - https://repo.anaconda.com/pkgs/r  # anaconda\n  - nodefaults\n"
        "  - ./local-channel\n  - https://conda.site.example/mirror/conda-forge\ndependencies:\n  - numpy\n  - pip:\n"
        "    - -i http://pypi.site.example:3141/simple\n"),
    ),
    (
        "environment-flow-channels",
        FileKind.ENVIRONMENT,
        "channels: [conda-forge, defaults, pytorch]\ndependencies: [python=3.11]\n",
        PROXY,
        ("channels: [https://mirrors.uni.example/anaconda/cloud/conda-forge, https://repo.anaconda.com/pkgs/main, "
        "https://mirrors.uni.example/anaconda/pkgs/r, pytorch]\ndependencies: [python=3.11]\n"),
    ),
    (
        "environment-without-pkgs-mirror-keeps-defaults",
        FileKind.ENVIRONMENT,
        "channels:\n  - defaults\n  - conda-forge\n",
        MirrorProfile.model_validate({"conda": {"channel_alias": "https://c.example"}}),
        "channels:\n  - defaults\n  - https://c.example/conda-forge\n",
    ),
    # conda-lock
    (
        "conda-lock-yaml",
        FileKind.CONDA_LOCK,
        ("version: 1\nmetadata:\n  channels:\n  - url: conda-forge\n    used_env_vars: []\n  - url: defaults\n"
        "    used_env_vars: []\n"
        "package:\n- name: pip\n  url: https://conda.anaconda.org/conda-forge/noarch/pip-24.0.conda\n  hash:\n"
        "    md5: 0123abcd\n"),
        SITE,
        ("version: 1\nmetadata:\n  channels:\n  - url: https://conda.site.example/mirror/conda-forge\n"
        "    used_env_vars: []\n"
        "  - url: defaults\n    used_env_vars: []\npackage:\n- name: pip\n"
        "  url: https://conda.site.example/mirror/conda-forge/noarch/pip-24.0.conda\n  hash:\n    md5: 0123abcd\n"),
    ),
    (
        "conda-lock-explicit",
        FileKind.CONDA_LOCK,
        ("# platform: linux-64\n# https://conda.anaconda.org/conda-forge\n@EXPLICIT\n"
        "https://conda.anaconda.org/conda-forge/linux-64/a-1.conda#d41d8cd98f00b204e9800998ecf8427e\n"),
        SITE,
        ("# platform: linux-64\n# https://conda.anaconda.org/conda-forge\n@EXPLICIT\n"
        "https://conda.site.example/mirror/conda-forge/linux-64/a-1.conda#d41d8cd98f00b204e9800998ecf8427e\n"),
    ),
    # requirements
    (
        "requirements-get-the-index-first",
        FileKind.REQUIREMENTS,
        "# pins\nnumpy==1.26.4\ngit+https://github.com/a/b@v1#egg=b  # from https://github.com/a/b\n",
        SITE,
        ("--index-url http://pypi.site.example:3141/simple\n--extra-index-url https://torch.site.example/whl/cpu\n"
        "--trusted-host pypi.site.example\n# pins\nnumpy==1.26.4\n"
        "git+https://git.site.example/github.com/a/b@v1#egg=b  # from https://github.com/a/b\n"),
    ),
    (
        "requirements-upstream-index-replaced",
        FileKind.REQUIREMENTS,
        "-i https://pypi.org/simple\n--trusted-host pypi.site.example\nnumpy\n",
        SITE,
        ("--extra-index-url https://torch.site.example/whl/cpu\n-i http://pypi.site.example:3141/simple\n"
        "--trusted-host pypi.site.example\nnumpy\n"),
    ),
    (
        "requirements-own-index-kept",
        FileKind.REQUIREMENTS,
        "--index-url=https://pypi.corp.example/simple\nnumpy\n",
        SITE,
        "--index-url=https://pypi.corp.example/simple\nnumpy\n",
    ),
    (
        "requirements-no-index-kept",
        FileKind.REQUIREMENTS,
        "--no-index\n--find-links /wheels\nnumpy\n",
        SITE,
        "--no-index\n--find-links /wheels\nnumpy\n",
    ),
    # pip.conf
    (
        "pip-conf-new-global",
        FileKind.PIP_CONF,
        "[install]\nno-warn-script-location = true\n",
        SITE,
        ("[global]\nindex-url = http://pypi.site.example:3141/simple\n"
        "extra-index-url = https://torch.site.example/whl/cpu\n"
        "trusted-host = pypi.site.example\n\n[install]\nno-warn-script-location = true\n"),
    ),
    (
        "pip-conf-upstream-values-and-lists",
        FileKind.PIP_CONF,
        ("[global]\n# upstream\nindex_url = https://pypi.org/simple\ntrusted-host =\n    files.example\ntimeout = 60\n\n"
        "[download]\nindex-url = https://pypi.corp.example/simple\n"),
        SITE,
        ("[global]\nextra-index-url = https://torch.site.example/whl/cpu\n# upstream\n"
        "index_url = http://pypi.site.example:3141/simple\ntrusted-host =\n    files.example pypi.site.example\n"
        "timeout = 60\n\n"
        "[download]\nindex-url = https://pypi.corp.example/simple\n"),
    ),
    (
        "pip-conf-from-nothing",
        FileKind.PIP_CONF,
        "",
        PROXY,
        "[global]\nindex-url = https://mirrors.uni.example/pypi/simple\n",
    ),
    # .condarc
    (
        "condarc-adds-alias-and-default-channels",
        FileKind.CONDARC,
        ("channels:\n  - conda-forge\n  - defaults\ncustom_channels:\n  bioconda: https://conda.anaconda.org\n"
        "ssl_verify: true"),
        SITE,
        ("channels:\n  - https://conda.site.example/mirror/conda-forge\n  - defaults\ncustom_channels:\n"
        "  bioconda: https://conda.site.example\nssl_verify: true\nchannel_alias: https://conda.site.example\n"
        "default_channels:\n  - https://conda.site.example/pkgs/main\n  - https://repo.anaconda.com/pkgs/r\n"),
    ),
    (
        "condarc-existing-settings-rewritten",
        FileKind.CONDARC,
        "channel_alias: https://conda.anaconda.org\ndefault_channels:\n  - https://repo.anaconda.com/pkgs/main\n",
        SITE,
        "channel_alias: https://conda.site.example\ndefault_channels:\n  - https://conda.site.example/pkgs/main\n",
    ),
    (
        "condarc-empty",
        FileKind.CONDARC,
        "",
        PROXY,
        "default_channels:\n  - https://repo.anaconda.com/pkgs/main\n  - https://mirrors.uni.example/anaconda/pkgs/r\n",
    ),
    # apt
    (
        "apt-one-line",
        FileKind.APT_SOURCES,
        ("deb [arch=amd64] http://deb.debian.org/debian bookworm main # https://deb.debian.org/debian\n"
        "#deb http://deb.debian.org/debian bookworm-backports main\ndeb https://pypi.org/simple x\n"),
        SITE,
        ("deb [arch=amd64] http://apt.site.example/debian bookworm main # https://deb.debian.org/debian\n"
        "#deb http://deb.debian.org/debian bookworm-backports main\ndeb https://pypi.org/simple x\n"),
    ),
    (
        "apt-deb822",
        FileKind.APT_SOURCES,
        ("Types: deb\nURIs: http://deb.debian.org/debian https://deb.debian.org/debian\nSuites: bookworm\n"
        "X-Repolib-Name: http://deb.debian.org/debian\n\nTypes: deb\nuris:\n"
        " http://security.debian.org/debian-security\n"
        "Suites: bookworm-security\n"),
        SITE,
        ("Types: deb\nURIs: http://apt.site.example/debian http://apt.site.example/debian\nSuites: bookworm\n"
        "X-Repolib-Name: http://deb.debian.org/debian\n\nTypes: deb\nuris:\n http://apt.site.example/debian-security\n"
        "Suites: bookworm-security\n"),
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "profile", "expected"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_rewrite(kind, text, profile, expected):
    out = rewrite(kind, text, profile)
    assert without_run_prefixes(out) == expected
    assert rewrite(kind, out, profile) == out
    assert rewrite(kind, text, EMPTY) == text


# --- the real-world fixtures, with every profile ------------------------------------------------


SHIPPED = {f"shipped-{name}": load_mirror(name, REPO).spec for name in profile_paths(REPO)}
"""Every profile in mirrors/ when the tests are collected (none is needed: the in-test ones cover each kind)."""
FIXTURE_PROFILES = {**PROFILES, "registry-only": REGISTRY_ONLY, **SHIPPED}


def check_dockerfile(profile: MirrorProfile, text: str, out: str) -> None:
    docker_hub, ghcr = profile.registry.get("docker.io"), profile.registry.get("ghcr.io")
    notebook = f"{docker_hub}/jupyter/minimal-notebook" if docker_hub else "jupyter/minimal-notebook"
    python = f"{docker_hub}/library/python" if docker_hub else "python"
    assert f"\nFROM {notebook}:2023-10-20\n" in out
    assert f"FROM --platform=linux/amd64 {python}:3.11-slim AS wheels\n" in out
    uv = f"{ghcr}/astral-sh/uv" if ghcr else "ghcr.io/astral-sh/uv"
    assert f"COPY --from={uv}:0.4.20 " in out
    assert "COPY --from=wheels /wheels /tmp/wheels\n" in out
    if profile.compose:
        assert f'"{profile.compose}/${{COMPOSE_VERSION}}/docker-compose-linux-x86_64"' in out
    if profile.pypi:
        assert f"--index-url {profile.pypi.index_url} \\\n" in out
    if "https://github.com" in profile.git:
        assert f"git+{profile.git['https://github.com']}/aiidalab/aiidalab-widgets-base@v2.2.0\n" in out


def check_compose(profile: MirrorProfile, text: str, out: str) -> None:
    quay, docker_hub = profile.registry.get("quay.io"), profile.registry.get("docker.io")
    hub = f"{quay}/jupyterhub/jupyterhub:5" if quay else "quay.io/jupyterhub/jupyterhub:5"
    assert f"    image: {hub}  # the hub itself\n" in out
    postgres = f"{docker_hub}/library/postgres" if docker_hub else "postgres"
    assert f'    image: "{postgres}:16"\n' in out
    legacy = f"{docker_hub}/jupyterhub/jupyterhub" if docker_hub else "jupyterhub/jupyterhub"
    assert f"    image: '{legacy}'\n" in out
    assert "      DOCKER_NOTEBOOK_IMAGE: quay.io/jupyter/base-notebook:latest\n" in out
    assert "    build: ./culler\n" in out


def _channel_url(profile: MirrorProfile, name: str) -> str | None:
    conda = profile.conda
    if conda is None:
        return None
    if name in conda.channels:
        return conda.channels[name]
    return f"{conda.channel_alias}/{name}" if conda.channel_alias else None


def _package_mirror(profile: MirrorProfile, name: str) -> str | None:
    """Where package URLs of a channel go: pkgs/* only to their own mirror, never the alias."""
    if name.startswith("pkgs/"):
        return profile.conda.channels.get(name) if profile.conda else None
    return _channel_url(profile, name)


def check_environment(profile: MirrorProfile, text: str, out: str) -> None:
    assert f"  - {_channel_url(profile, 'conda-forge') or 'conda-forge'}  # most packages\n" in out
    assert f"  - {_channel_url(profile, 'bioconda') or 'bioconda'}\n" in out
    pkgs_mirrored = profile.conda is not None and any(name.startswith("pkgs/") for name in profile.conda.channels)
    assert ("  - defaults\n" in out) is not pkgs_mirrored
    github = profile.git.get("https://github.com", "https://github.com")
    assert f"      - git+{github}/aiidalab/aiidalab-qe@3c5b1d9#egg=aiidalab-qe\n" in out
    assert yaml.safe_load(out)["dependencies"][:4] == yaml.safe_load(text)["dependencies"][:4]


def check_conda_lock(profile: MirrorProfile, text: str, out: str) -> None:
    for name, fragment in (
        ("conda-forge", "https://conda.anaconda.org/conda-forge/"),
        ("bioconda", "https://conda.anaconda.org/bioconda/"),
        ("pkgs/main", "https://repo.anaconda.com/pkgs/main/"),
    ):
        mirror = _package_mirror(profile, name)
        assert bool(uncommented_lines_with(out, fragment)) is (mirror is None)
        if mirror:
            assert f"{mirror}/" in out
    if "@EXPLICIT" not in text:
        assert "https://files.pythonhosted.org/packages/" in out
        assert "  - url: defaults\n" in out
        assert f"  - url: {_channel_url(profile, 'conda-forge') or 'conda-forge'}\n" in out


def check_requirements(profile: MirrorProfile, text: str, out: str) -> None:
    if profile.pypi:
        assert out.startswith(f"--index-url {profile.pypi.index_url}\n")
        for host in profile.pypi.trusted_hosts:
            assert f"\n--trusted-host {host}\n" in out
    else:
        assert out.startswith("# Pinned Python packages")
    assert out.endswith(
        text[text.index("aiida-core") :].replace(
            "https://github.com", profile.git.get("https://github.com", "https://github.com")
        )
    )


def check_pip_conf(profile: MirrorProfile, text: str, out: str) -> None:
    index = profile.pypi.index_url if profile.pypi else "https://pypi.org/simple"
    assert f"\nindex-url = {index}\n" in out
    assert out.endswith("[install]\nno-warn-script-location = true\n")
    parsed = configparser.RawConfigParser()
    parsed.read_string(out)
    assert parsed.get("global", "timeout") == "60"
    if profile.pypi and profile.pypi.trusted_hosts:
        assert parsed.get("global", "trusted-host").split() == profile.pypi.trusted_hosts


def check_condarc(profile: MirrorProfile, text: str, out: str) -> None:
    loaded = yaml.safe_load(out)
    assert loaded["channels"] == [_channel_url(profile, "conda-forge") or "conda-forge", "defaults"]
    alias = profile.conda.channel_alias if profile.conda else None
    assert loaded.get("channel_alias") == alias
    assert loaded["custom_channels"] == {"bioconda": alias or "https://conda.anaconda.org"}
    pkgs_mirrored = profile.conda is not None and any(name.startswith("pkgs/") for name in profile.conda.channels)
    assert ("default_channels" in loaded) is pkgs_mirrored
    assert loaded["channel_priority"] == "strict"


def check_apt(profile: MirrorProfile, text: str, out: str) -> None:
    apt = profile.apt
    for field, upstream in (
        ("debian", r"http://deb\.debian\.org/debian(?![\w-])"),
        ("debian_security", r"http://security\.debian\.org/debian-security"),
    ):
        mirror = getattr(apt, field) if apt else None
        left = [line for line in text.splitlines() if re.search(upstream, line)]
        remaining = [line for line in out.splitlines() if re.search(upstream, line)]
        assert remaining == (comment_lines("\n".join(left)) if mirror else left)
    if "download.docker.com" in text:
        assert "deb https://download.docker.com/linux/debian bookworm stable\n" in out
    if "Signed-By" in text:
        assert out.count("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n") == 2


FIXTURE_CHECKS: dict[str, tuple[FileKind, Callable[[MirrorProfile, str, str], None]]] = {
    "Dockerfile": (FileKind.DOCKERFILE, check_dockerfile),
    "docker-compose.yml": (FileKind.COMPOSE, check_compose),
    "environment.yml": (FileKind.ENVIRONMENT, check_environment),
    "conda-lock.yml": (FileKind.CONDA_LOCK, check_conda_lock),
    "conda-linux-64.lock": (FileKind.CONDA_LOCK, check_conda_lock),
    "requirements.txt": (FileKind.REQUIREMENTS, check_requirements),
    "pip.conf": (FileKind.PIP_CONF, check_pip_conf),
    ".condarc": (FileKind.CONDARC, check_condarc),
    "sources.list": (FileKind.APT_SOURCES, check_apt),
    "debian.sources": (FileKind.APT_SOURCES, check_apt),
}


@pytest.mark.parametrize("fixture", FIXTURE_CHECKS)
def test_fixture_kind_shows_in_name_and_content(fixture):
    path = FIXTURES / fixture
    assert detect_kind(path, path.read_text()) == FIXTURE_CHECKS[fixture][0]
    assert detect_kind(Path("unnamed"), path.read_text()) == FIXTURE_CHECKS[fixture][0]


@pytest.mark.parametrize("profile_name", FIXTURE_PROFILES)
@pytest.mark.parametrize("fixture", FIXTURE_CHECKS)
def test_fixture_with_every_profile(fixture, profile_name):
    profile = FIXTURE_PROFILES[profile_name]
    kind, check = FIXTURE_CHECKS[fixture]
    text = (FIXTURES / fixture).read_text()
    out = rewrite(kind, text, profile)
    check(profile, text, out)
    assert rewrite(kind, out, profile) == out
    assert comment_lines(out) == comment_lines(text)
    assert digests(out) == digests(text)


@pytest.mark.parametrize("fixture", FIXTURE_CHECKS)
def test_fixture_identity_and_line_endings(fixture):
    kind = FIXTURE_CHECKS[fixture][0]
    text = (FIXTURES / fixture).read_text()
    assert rewrite(kind, text, EMPTY) == text
    crlf = text.replace("\n", "\r\n")
    assert rewrite(kind, crlf, SITE) == rewrite(kind, text, SITE).replace("\n", "\r\n")
    assert rewrite(kind, "\ufeff" + text, SITE) == "\ufeff" + rewrite(kind, text, SITE)


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("Containerfile", "", FileKind.DOCKERFILE),
        ("hub.Dockerfile", "", FileKind.DOCKERFILE),
        ("compose.override.yaml", "", FileKind.COMPOSE),
        ("environment-dev.yaml", "", FileKind.ENVIRONMENT),
        ("linux.conda-lock.yml", "", FileKind.CONDA_LOCK),
        ("constraints-py311.txt", "", FileKind.REQUIREMENTS),
        ("requirements.in", "", FileKind.REQUIREMENTS),
        ("pip.ini", "", FileKind.PIP_CONF),
        ("site.condarc", "", FileKind.CONDARC),
        ("docker.list", "", FileKind.APT_SOURCES),
        (
            "spec.txt",
            "# This file may be used to create an environment\n@EXPLICIT\nhttps://x/a.conda\n",
            FileKind.CONDA_LOCK,
        ),
        ("build-me", "# hello\nARG BASE=debian\nFROM ${BASE}\n", FileKind.DOCKERFILE),
        ("hub.yaml", "services:\n  hub:\n    image: jupyterhub/jupyterhub\n", FileKind.COMPOSE),
        ("env.yaml", "name: x\ndependencies: [numpy]\n", FileKind.ENVIRONMENT),
        ("lock.yaml", "version: 1\nmetadata: {}\npackage: []\n", FileKind.CONDA_LOCK),
        ("conda.yaml", "channels: [conda-forge]\n", FileKind.CONDARC),
        ("mirror", "deb http://deb.debian.org/debian bookworm main\n", FileKind.APT_SOURCES),
        ("settings.ini", "[global]\ntimeout = 60\n", FileKind.PIP_CONF),
        (
            "base.txt",
            "# pins\nnumpy==1.26.4\nrequests[socks]>=2 ; python_version>'3'\n-r other.txt\n",
            FileKind.REQUIREMENTS,
        ),
    ],
)
def test_detect_kind(name, text, kind):
    assert detect_kind(Path(name), text) == kind


def test_unknown_kind_names_the_file_and_the_option():
    with pytest.raises(RecipeError) as caught:
        detect_kind(Path("notes.md"), "Some prose, with words.\n")
    with pytest.raises(RecipeError):
        detect_kind(Path("names"), "alice\nbob\n")
    assert caught.value.path == Path("notes.md")
    assert (
        "--kind <dockerfile|compose|environment|conda-lock|requirements|pip-conf|condarc|apt-sources>"
        in caught.value.hint
    )


# --- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "line", "problem"),
    [
        (FileKind.COMPOSE, "services:\n  hub:\n    image: [a\n", 4, "not valid YAML"),
        (FileKind.ENVIRONMENT, "name: x\nchannels:\n  - a\n b: c\n", 4, "not valid YAML"),
        (FileKind.CONDA_LOCK, "version: 1\npackage:\n- url: a\n\tname: b\n", 4, "not valid YAML"),
        (FileKind.CONDARC, "channels: [a\n", 2, "not valid YAML"),
        (FileKind.CONDARC, "a: 1\n---\nb: 2\n", 2, "expected a single document"),
        (FileKind.CONDARC, "x: \x07\n", 1, "not valid YAML"),
        (FileKind.ENVIRONMENT, "name: x\nchannels:\n  conda-forge: yes\n", 3, "channels must be a list"),
        (FileKind.ENVIRONMENT, "- numpy\n", 1, "an environment file must be a mapping"),
        (FileKind.COMPOSE, "services:\n  - hub\n", 2, "services must be a mapping"),
        (FileKind.CONDA_LOCK, "package:\n- https://x\n", 2, "each item of package must be a mapping"),
        (FileKind.PIP_CONF, "index-url = https://x\n", 1, "a setting before any [section] header"),
        (FileKind.PIP_CONF, "[global]\ntimeout = 60\nnot a setting\n", 3, "neither a [section] header"),
        (FileKind.PIP_CONF, "[global]\na = 1\n[global]\n", 3, "section [global] given twice"),
        (FileKind.PIP_CONF, "[global]\na = 1\nA = 2\n", 3, "option 'a' [global] given twice"),
        (FileKind.DOCKERFILE, "# base\nFROM\n", 2, "FROM without an image"),
        (FileKind.DOCKERFILE, "FROM debian\nRUN x\nFROM --platform=linux/amd64 \\\n\n", 3, "FROM without an image"),
    ],
)
def test_malformed_input_names_file_and_line(kind, text, line, problem):
    with pytest.raises(RecipeError) as caught:
        rewrite_file(kind, text, SITE, source=Path("/srv/hub/the-file"))
    assert caught.value.message.startswith(f"line {line}: ")
    assert problem in caught.value.message
    assert caught.value.path == Path("/srv/hub/the-file")
    assert caught.value.hint


# --- properties over generated files --------------------------------------------------------------

ALL_RULES = [url_rules(profile) for profile in PROFILES.values()]
UPSTREAMS = sorted({upstream for rules in ALL_RULES for rule in rules.rules for upstream in rule.upstreams})
MIRRORS = sorted({rule.mirror for rules in ALL_RULES for rule in rules.rules})
PROFILE = st.sampled_from([SITE, PROXY, REGISTRY_ONLY])
JUNK = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=6)
URL = st.one_of(st.sampled_from(UPSTREAMS), st.sampled_from(MIRRORS)).flatmap(
    lambda url: st.sampled_from([url, f"{url}/", f"{url}/pkg-1.0.tar.gz", f"git+{url}/a/b@v1"])
)


def words(*extra: str) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(URL, JUNK, st.sampled_from([" ", "#", "'", '"', "=", "\t", *extra])), max_size=6).map(
        "".join
    )


def has_upstream(line: str) -> bool:
    return any(upstream in line for upstream in UPSTREAMS)


def assert_rewrite_properties(kind: FileKind, text: str, profile: MirrorProfile) -> str:
    out = rewrite(kind, text, profile)
    assert rewrite(kind, out, profile) == out
    assert rewrite(kind, text, EMPTY) == text
    assert comment_lines(out) == comment_lines(text)
    return out


def assert_unrelated_lines_kept(text: str, out: str, *, skip_first: int = 0) -> None:
    """Each input line without an upstream URL comes back as it was (after any inserted head)."""
    before, after = text.split("\n"), out.split("\n")
    for old, new in zip(before[skip_first:], after[len(after) - len(before) + skip_first :], strict=True):
        if not has_upstream(old):
            assert new == old


@settings(max_examples=60, deadline=None)
@given(
    profile=PROFILE,
    lines=st.lists(
        st.one_of(words("-i ", "--extra-index-url ", "numpy==1.0"), st.just("# " + UPSTREAMS[0])), max_size=8
    ),
)
def test_requirements_properties(profile, lines):
    text = "\n".join(lines)
    out = assert_rewrite_properties(FileKind.REQUIREMENTS, text, profile)
    assert_unrelated_lines_kept(text, out)


@settings(max_examples=60, deadline=None)
@given(profile=PROFILE, lines=st.lists(words("deb ", "deb-src ", "URIs: ", " ", "[arch=amd64] "), max_size=8))
def test_apt_sources_properties(profile, lines):
    text = "\n".join(lines)
    out = assert_rewrite_properties(FileKind.APT_SOURCES, text, profile)
    assert_unrelated_lines_kept(text, out)


@settings(max_examples=60, deadline=None)
@given(
    profile=PROFILE,
    base=st.sampled_from(
        ["debian:bookworm", "quay.io/jupyter/base-notebook", "scratch", "registry.site.example/dockerhub/x"]
    ),
    lines=st.lists(
        st.tuples(st.sampled_from(["RUN ", "ENV ", "ADD ", "# ", "  "]), words("\\", "&&")).map("".join), max_size=8
    ),
)
def test_dockerfile_properties(profile, base, lines):
    text = "\n".join([f"FROM {base}", *lines])
    out = without_run_prefixes(assert_rewrite_properties(FileKind.DOCKERFILE, text, profile))
    assert out.split("\n")[0] == f"FROM {rewrite_image_ref(base, profile.registry)}"
    assert_unrelated_lines_kept(text, out, skip_first=1)


@settings(max_examples=60, deadline=None)
@given(profile=PROFILE, lines=st.lists(st.one_of(URL.map(lambda url: f"{url}#0123abcd"), words()), max_size=8))
def test_explicit_lock_properties(profile, lines):
    text = "\n".join(["# platform: linux-64", "@EXPLICIT", *lines])
    out = assert_rewrite_properties(FileKind.CONDA_LOCK, text, profile)
    assert_unrelated_lines_kept(text, out)
    assert digests(out) == digests(text)


CHANNEL = st.one_of(
    st.sampled_from(
        ["conda-forge", "bioconda", "defaults", "nodefaults", "pkgs/main", "pytorch", "conda-forge/label/dev"]
    ),
    URL.filter(lambda url: not url.startswith("git+")),
)
QUOTE = st.sampled_from(["", "'", '"'])


def yaml_item(value: str, quote: str) -> str:
    return f"{quote}{value}{quote}" if quote != "'" else "'" + value.replace("'", "''") + "'"


@settings(max_examples=60, deadline=None)
@given(
    profile=PROFILE,
    kind=st.sampled_from([FileKind.ENVIRONMENT, FileKind.CONDARC]),
    channels=st.lists(st.tuples(CHANNEL, QUOTE, st.sampled_from(["", "  # why"])), max_size=5),
    flow=st.booleans(),
    comment=st.sampled_from(["", "# channels of https://conda.anaconda.org/conda-forge\n"]),
)
def test_channel_list_properties(profile, kind, channels, flow, comment):
    if flow:
        listing = "channels: [" + ", ".join(yaml_item(value, quote) for value, quote, _ in channels) + "]\n"
    else:
        listing = "channels:\n" + "".join(
            f"  - {yaml_item(value, quote)}{trailing}\n" for value, quote, trailing in channels
        )
    pip = "  - pip:\n    - git+https://github.com/a/b\n"
    text = f"{comment}name: generated\n{listing}dependencies:\n  - python=3.11\n{pip}"
    out = assert_rewrite_properties(kind, text, profile)
    before, after = yaml.safe_load(text), yaml.safe_load(out)
    assert after["name"] == before["name"]
    assert after["dependencies"][0] == "python=3.11"
    rules = url_rules(profile)
    for value in after["channels"] or []:
        assert not any(rule.matches(value) for rule in rules.rules)


@settings(max_examples=60, deadline=None)
@given(
    profile=PROFILE,
    images=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "postgres:16",
                    "jupyterhub/jupyterhub",
                    "quay.io/jupyterhub/jupyterhub:5",
                    "ghcr.io/a/b",
                    "gcr.io/x",
                    "${IMG}",
                ]
            ),
            QUOTE,
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_compose_properties(profile, images):
    services = "".join(
        f"  s{index}:  # service {index}\n    image: {yaml_item(image, quote)}\n    restart: always\n"
        for index, (image, quote) in enumerate(images)
    )
    text = f"services:\n{services}volumes:\n  db: {{}}\n"
    out = assert_rewrite_properties(FileKind.COMPOSE, text, profile)
    loaded = yaml.safe_load(out)
    for index, (image, _) in enumerate(images):
        assert loaded["services"][f"s{index}"] == {
            "image": rewrite_image_ref(image, profile.registry),
            "restart": "always",
        }


PIP_VALUE = st.one_of(
    URL.filter(lambda url: not url.startswith("git+")), st.sampled_from(["60", "true", "pypi.site.example"])
)


@settings(max_examples=60, deadline=None)
@given(
    profile=PROFILE,
    sections=st.dictionaries(
        st.sampled_from(["global", "install", "download", "freeze"]),
        st.dictionaries(
            st.sampled_from(["index-url", "extra-index-url", "trusted-host", "timeout"]), PIP_VALUE, max_size=3
        ),
        max_size=3,
    ),
)
def test_pip_conf_properties(profile, sections):
    text = "# generated\n" + "".join(
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in options.items())
        for name, options in sections.items()
    )
    out = assert_rewrite_properties(FileKind.PIP_CONF, text, profile)
    parsed = configparser.RawConfigParser()
    parsed.read_string(out)
    if profile.pypi is None:
        return
    original = sections.get("global", {}).get("index-url")
    if original is None or url_rules(profile).apply_line(original) == profile.pypi.index_url:
        assert parsed.get("global", "index-url") == profile.pypi.index_url


def test_entries_a_rewrite_cannot_route_are_named_by_line() -> None:
    """`mirror rewrite` warns about what stays upstream instead of leaving it silently."""
    site = MirrorProfile.model_validate(
        {"pypi": {"index_url": "http://pypi.site/simple"}, "apt": {"debian": "http://apt.site/debian"},
         "git": {"https://github.com": "http://git.site/github.com"}}
    )
    requirements = (
        "numpy==1.26\n"
        "foo @ https://files.example.org/foo-1.0.whl\n"
        "bar @ host.example/bar.whl  # no scheme\n"
        "aiidalab @ git+https://github.com/aiidalab/aiidalab@v1\n"
        "baz @ http://pypi.site/packages/baz.whl\n"
    )
    assert unrouted_entries(FileKind.REQUIREMENTS, requirements, site) == [
        "line 2: https://files.example.org/foo-1.0.whl is covered by no rule of the profile: it is downloaded from there",
        "line 3: 'host.example/bar.whl' has no URL scheme: pip reads it as a local path, not routed",
    ]
    sources = (
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb [arch=amd64] http://ppa.launchpad.net/x/ubuntu jammy main\n"
        "deb cdrom:[Debian]/ bookworm main\n\n"
        "Types: deb\nURIs: http://apt.site/debian\n  http://other.example/debian\nSuites: bookworm\n"
    )
    assert unrouted_entries(FileKind.APT_SOURCES, sources, site) == [
        "line 2: http://ppa.launchpad.net/x/ubuntu is covered by no apt rule of the profile: apt downloads from there",
        "line 3: 'cdrom:[Debian]/' has no URL scheme (http://, https://): apt reads it as it is, not routed",
        "line 7: http://other.example/debian is covered by no apt rule of the profile: apt downloads from there",
    ]
    assert unrouted_entries(FileKind.PIP_CONF, "[global]\nindex-url = https://x.example/simple\n", site) == []
