"""The grammars of free-form strings that end up in generated files (model/names.py)."""

import pytest

from imagebuild.model import names


@pytest.mark.parametrize(
    "value",
    ["ghp_" + "a1B2" * 9, "github_pat_11ABC", "glpat-xxxxxxxxxxxxxxxxxxxx", "sk-abc", "AKIAIOSFODNN7EXAMPLE", "q8Lw2Nx5Rv7Tb1Kc4Hd6Jf9M"],
)
def test_a_secret_is_refused_where_a_name_belongs_without_being_repeated(value):
    with pytest.raises(ValueError, match="looks like a secret") as caught:
        names.env_name(value)
    assert value not in str(caught.value)


@pytest.mark.parametrize("value", ["JUPYTER_PORT", "http_proxy", "LD_LIBRARY_PATH", "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS", "_X1"])
def test_ordinary_variable_names_pass(value):
    assert names.env_name(value) == value


@pytest.mark.parametrize("value", ["debian:bookworm", "quay.io/jupyter/base-notebook:2024-01-01", "127.0.0.1:5000/imagebuild/hub:latest",
                                   "localhost/a_b__c/d-e:1", "debian@sha256:" + "a" * 64])
def test_image_references_docker_accepts(value):
    assert names.image_reference(value) == value


@pytest.mark.parametrize("value", ["Debian:bookworm", "debian bookworm", "https://docker.io/debian", "debian:", "a//b", "-a:1", "debian:tag with space"])
def test_image_references_docker_refuses(value):
    with pytest.raises(ValueError):
        names.image_reference(value)


@pytest.mark.parametrize("value", ["curl", "libc6:amd64", "python3=3.11.2-1+b1", "caddy/bookworm-backports", "g++", "libstdc++6"])
def test_apt_package_forms(value):
    assert names.apt_package(value) == value


@pytest.mark.parametrize("value", ["curl wget", "curl;", "--allow-unauthenticated", "Curl", "$(id)"])
def test_apt_lines_that_are_not_one_package(value):
    with pytest.raises(ValueError, match="Debian package"):
        names.apt_package(value)


@pytest.mark.parametrize("value", ["/", "//", "relative", "/opt/../etc", "/opt/my dir", "/opt/a\nRUN x"])
def test_paths_in_the_image_are_absolute_below_root_and_plain(value):
    with pytest.raises(ValueError):
        names.path_in_image(value)


@pytest.mark.parametrize(("mode", "ok"), [("0644", True), ("755", True), ("4755", True), ("77777", False), ("0o755", False), ("", False), ("0999", False)])
def test_file_modes(mode, ok):
    if ok:
        assert names.file_mode(mode) == mode
    else:
        with pytest.raises(ValueError, match="octal"):
            names.file_mode(mode)


def test_git_urls_in_pips_form_get_their_own_hint():
    with pytest.raises(ValueError, match="pip's VCS form"):
        names.git_url("git+https://github.com/org/repo.git@main")
    assert names.git_url("https://github.com/org/repo.git") == "https://github.com/org/repo.git"
