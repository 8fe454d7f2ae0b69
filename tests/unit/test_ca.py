import pytest

from imagebuild.ca import find_ca_bundle
from imagebuild.errors import RecipeError


@pytest.fixture
def no_ca_env(monkeypatch):
    for variable in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_explicit_bundle_wins(no_ca_env, tmp_path):
    explicit, env = tmp_path / "explicit.pem", tmp_path / "env.pem"
    explicit.write_text("a")
    env.write_text("b")
    no_ca_env.setenv("SSL_CERT_FILE", str(env))
    assert find_ca_bundle(explicit) == explicit
    assert find_ca_bundle(None) == env


def test_environment_order_and_missing_files(no_ca_env, tmp_path):
    pip = tmp_path / "pip.pem"
    pip.write_text("x")
    no_ca_env.setenv("SSL_CERT_FILE", str(tmp_path / "gone.pem"))
    no_ca_env.setenv("PIP_CERT", str(pip))
    assert find_ca_bundle(None) == pip


def test_no_bundle_anywhere(no_ca_env):
    assert find_ca_bundle(None) is None


def test_missing_explicit_bundle_is_an_error(no_ca_env, tmp_path):
    with pytest.raises(RecipeError, match="CA bundle not found"):
        find_ca_bundle(tmp_path / "nope.pem")
