"""The URL rules of a mirror profile: prefix rewrites that Python and `sed -E` apply alike."""

import os
import subprocess
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from imagebuild.mirrors.rules import RuleSet, url_rules
from imagebuild.model.mirror import MirrorProfile
from imagebuild.model.routes import rewrite_image_ref, split_image_ref

EMPTY = MirrorProfile()
SITE = MirrorProfile.model_validate(
    {
        "pypi": {
            "index_url": "http://pypi.site.example:3141/simple",
            "extra_index_urls": ["https://torch.site.example/whl/cpu"],
            "trusted_hosts": ["pypi.site.example"],
        },
        "conda": {
            "channel_alias": "https://conda.site.example",
            "channels": {
                "conda-forge": "https://conda.site.example/mirror/conda-forge",
                "pkgs/main": "https://conda.site.example/pkgs/main",
            },
        },
        "apt": {
            "debian": "http://apt.site.example/debian",
            "debian_security": "http://apt.site.example/debian-security",
            "ubuntu": "http://apt.site.example/ubuntu",
        },
        "registry": {
            "docker.io": "registry.site.example/dockerhub",
            "quay.io": "registry.site.example/quay",
            "ghcr.io": "registry.site.example/ghcr",
        },
        "compose": "https://files.site.example/compose",
        "downloads": {"https://get.helm.sh": "https://files.site.example/helm"},
        "git": {"https://github.com": "https://git.site.example/github.com"},
    }
)
"""A site's own mirror of everything, with a plain-http PyPI that needs a trusted host."""

PROXY = MirrorProfile.model_validate(
    {
        "pypi": {"index_url": "https://mirrors.uni.example/pypi/simple"},
        "conda": {
            "channels": {
                "conda-forge": "https://mirrors.uni.example/anaconda/cloud/conda-forge",
                "bioconda": "https://mirrors.uni.example/anaconda/cloud/bioconda",
                "pkgs/r": "https://mirrors.uni.example/anaconda/pkgs/r",
            }
        },
        "apt": {"debian_security": "http://mirrors.uni.example/debian-security"},
        "registry": {"docker.io": "docker.mirror.example"},
        "compose": "https://ghproxy.example/https://github.com/docker/compose/releases/download",
        "git": {"https://github.com": "https://ghproxy.example/https://github.com"},
    }
)
"""A university mirror without channel_alias, and a proxy whose URLs embed the upstream ones."""

PROFILES = {"site": SITE, "proxy": PROXY}


def sed(rules: RuleSet, text: str) -> str:
    """`text` through `sed -E -f` of the rules' script, as with-build-env runs it in a build."""
    with tempfile.NamedTemporaryFile("w", suffix=".sed") as script:
        script.write(rules.sed_script())
        script.flush()
        done = subprocess.run(
            ["sed", "-E", "-f", script.name],
            input=text.encode(),
            capture_output=True,
            check=True,
            env={**os.environ, "LC_ALL": "C"},
        )
    return done.stdout.decode()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("pip install -i https://pypi.org/simple x", "pip install -i http://pypi.site.example:3141/simple x"),
        ("index-url=https://pypi.org/simple/", "index-url=http://pypi.site.example:3141/simple/"),
        ("'https://pypi.python.org/simple'", "'http://pypi.site.example:3141/simple'"),
        ("https://pypi.org/simplex", "https://pypi.org/simplex"),
        ("xhttps://pypi.org/simple", "xhttps://pypi.org/simple"),
        ("https://proxy.example/https://pypi.org/simple", "https://proxy.example/https://pypi.org/simple"),
        ("git+https://github.com/a/b@v1", "git+https://git.site.example/github.com/a/b@v1"),
        ("https://github.com.evil.example/a", "https://github.com.evil.example/a"),
        (
            "https://github.com/docker/compose/releases/download/v2.27.0/docker-compose-linux-x86_64",
            "https://files.site.example/compose/v2.27.0/docker-compose-linux-x86_64",
        ),
        ("curl https://get.helm.sh/helm-v3.tar.gz", "curl https://files.site.example/helm/helm-v3.tar.gz"),
        (
            "https://conda.anaconda.org/conda-forge/noarch/pip-24.0.conda#1a2b",
            "https://conda.site.example/mirror/conda-forge/noarch/pip-24.0.conda#1a2b",
        ),
        ("https://conda.anaconda.org/bioconda/x.conda", "https://conda.site.example/bioconda/x.conda"),
        ("https://conda.anaconda.org/conda-forge-x/a", "https://conda.site.example/conda-forge-x/a"),
        ("https://repo.anaconda.com/pkgs/main/linux-64/a", "https://conda.site.example/pkgs/main/linux-64/a"),
        ("https://repo.anaconda.com/pkgs/r/linux-64/a", "https://repo.anaconda.com/pkgs/r/linux-64/a"),
        ("deb http://deb.debian.org/debian bookworm main", "deb http://apt.site.example/debian bookworm main"),
        (
            "deb http://deb.debian.org/debian-security bookworm-security main",
            "deb http://apt.site.example/debian-security bookworm-security main",
        ),
        ("http://security.ubuntu.com/ubuntu noble-security", "http://security.ubuntu.com/ubuntu noble-security"),
        (
            "a https://pypi.org/simple b https://pypi.org/simple",
            "a http://pypi.site.example:3141/simple b http://pypi.site.example:3141/simple",
        ),
    ],
)
def test_site_rules_rewrite_prefixes_at_url_boundaries_only(line, expected):
    rules = url_rules(SITE)
    assert rules.apply_line(line) == expected
    assert sed(rules, line + "\n") == expected + "\n"


def test_a_proxy_that_embeds_its_upstream_is_not_rewritten_twice():
    rules = url_rules(PROXY)
    once = rules.apply(
        "RUN pip install git+https://github.com/a/b"
        " && curl -LO https://github.com/docker/compose/releases/download/v2/x\n"
    )
    assert once == (
        "RUN pip install git+https://ghproxy.example/https://github.com/a/b"
        " && curl -LO https://ghproxy.example/https://github.com/docker/compose/releases/download/v2/x\n"
    )
    assert rules.apply(once) == once


def test_rules_are_ordered_specific_channels_before_the_alias_and_tagged_by_purpose():
    purposes = [rule.purpose for rule in url_rules(SITE).rules]
    assert purposes.index("conda:conda-forge") < purposes.index("conda:channel_alias")
    assert purposes.index("conda:pkgs/main") < purposes.index("conda:channel_alias")
    assert [rule.purpose for rule in url_rules(SITE).only("apt").rules] == [
        "apt:debian_security",
        "apt:debian",
        "apt:ubuntu",
    ]
    assert not url_rules(EMPTY)
    assert url_rules(EMPTY).sed_script() == ""


def test_extra_debian_upstreams_count_as_debian():
    rules = url_rules(SITE, extra_debian_upstreams=("http://ftp.de.debian.org/debian/",)).only("apt")
    assert rules.apply("deb http://ftp.de.debian.org/debian bookworm main\n") == (
        "deb http://apt.site.example/debian bookworm main\n"
    )


def test_a_mirror_that_an_upstream_rule_would_rewrite_again_is_rejected():
    with pytest.raises(ValidationError, match="would itself be rewritten"):
        MirrorProfile.model_validate(
            {
                "pypi": {"index_url": "https://proxy.example/?u=https://github.com/simple"},
                "git": {"https://github.com": "https://g.example"},
            }
        )


def test_rewriting_keeps_line_endings():
    rules = url_rules(SITE)
    text = "a https://pypi.org/simple\r\nb\r\n\nhttps://pypi.org/simple"
    assert rules.apply(text) == (
        "a http://pypi.site.example:3141/simple\r\nb\r\n\nhttp://pypi.site.example:3141/simple"
    )


@pytest.mark.parametrize(
    ("ref", "registry_and_path"),
    [
        ("postgres", ("docker.io", "library/postgres")),
        ("postgres:16", ("docker.io", "library/postgres:16")),
        ("jupyter/minimal-notebook:2023-10-20", ("docker.io", "jupyter/minimal-notebook:2023-10-20")),
        ("quay.io/jupyterhub/jupyterhub:5", ("quay.io", "jupyterhub/jupyterhub:5")),
        ("localhost/a", ("localhost", "a")),
        ("localhost:5000/a/b", ("localhost:5000", "a/b")),
        ("python@sha256:abc", ("docker.io", "library/python@sha256:abc")),
    ],
)
def test_split_image_ref_follows_dockers_rule(ref, registry_and_path):
    assert split_image_ref(ref) == registry_and_path


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("postgres:16", "registry.site.example/dockerhub/library/postgres:16"),
        ("jupyterhub/jupyterhub", "registry.site.example/dockerhub/jupyterhub/jupyterhub"),
        ("docker.io/library/debian:bookworm", "registry.site.example/dockerhub/library/debian:bookworm"),
        ("index.docker.io/library/debian", "registry.site.example/dockerhub/library/debian"),
        ("quay.io/jupyterhub/jupyterhub:5", "registry.site.example/quay/jupyterhub/jupyterhub:5"),
        ("ghcr.io/astral-sh/uv:0.4", "registry.site.example/ghcr/astral-sh/uv:0.4"),
        ("gcr.io/distroless/base", "gcr.io/distroless/base"),
        ("scratch", "scratch"),
        ("${BASE}", "${BASE}"),
        ("jupyter/base-notebook:$TAG", "registry.site.example/dockerhub/jupyter/base-notebook:$TAG"),
        ("registry.site.example/dockerhub/library/postgres:16", "registry.site.example/dockerhub/library/postgres:16"),
    ],
)
def test_rewrite_image_ref(ref, expected):
    assert rewrite_image_ref(ref, SITE.registry) == expected
    assert rewrite_image_ref(expected, SITE.registry) == expected
    assert rewrite_image_ref(ref, {}) == ref


# --- properties over generated text -------------------------------------------------------------


def _upstreams(rules: RuleSet) -> list[str]:
    return [upstream for rule in rules.rules for upstream in rule.upstreams]


def _fragments() -> list[str]:
    upstreams = [url for profile in PROFILES.values() for url in _upstreams(url_rules(profile))]
    mirrors = [rule.mirror for profile in PROFILES.values() for rule in url_rules(profile).rules]
    return [
        *upstreams,
        *(f"{url}/x" for url in upstreams),
        *mirrors,
        "https://pypi.org/simplex",
        "https://proxy.example/https://github.com/a",
        "git+",
        "# ",
        " ",
        "\t",
        '"',
        "'",
        "=",
        "&",
        "\\",
        "-i ",
        "deb ",
    ]


JUNK = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"), max_size=8)
LINE = st.lists(st.one_of(st.sampled_from(_fragments()), JUNK), max_size=6).map("".join)
TEXT = st.lists(LINE, max_size=8).map("\n".join)
RULES = st.sampled_from([url_rules(profile) for profile in PROFILES.values()])


@settings(max_examples=60, deadline=None)
@given(rules=RULES, text=TEXT)
def test_python_and_sed_rewrite_alike(rules, text):
    assert rules.apply(text) == sed(rules, text)


@settings(max_examples=60, deadline=None)
@given(rules=RULES, text=TEXT)
def test_rules_are_idempotent_and_leave_lines_without_upstream_urls_alone(rules, text):
    rewritten = rules.apply(text)
    assert rules.apply(rewritten) == rewritten
    assert RuleSet().apply(text) == text
    for before, after in zip(text.split("\n"), rewritten.split("\n"), strict=True):
        if not any(upstream in before for upstream in _upstreams(rules)):
            assert after == before
