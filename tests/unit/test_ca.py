import socket
import urllib.request

import pytest

from imagebuild.ca import CaServer, find_ca_bundle
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_served_bundle_and_nothing_else():
    port = _free_port()
    with CaServer(b"PEM", port) as server:
        assert server.server is None  # nothing listens until a build asks
        url = server.url()
        assert url == f"http://127.0.0.1:{port}/ca.pem"
        assert urllib.request.urlopen(url).read() == b"PEM"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url.replace("ca.pem", "other"))


def test_busy_port_falls_back_to_a_free_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with CaServer(b"PEM", taken) as server:
            url = server.url()
            assert f":{taken}/" not in url
            assert urllib.request.urlopen(url).read() == b"PEM"


def test_no_bundle_means_no_server_and_an_empty_url():
    with CaServer(None, _free_port()) as server:
        assert server.url() == ""
        assert server.server is None
