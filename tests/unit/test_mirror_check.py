"""Probing a profile's endpoints against real HTTP servers on loopback, closed ports and a
port that accepts connections but never answers."""

import base64
import contextlib
import http.server
import os
import socket
import ssl
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imagebuild.config import RunOptions, configure, merged_trust
from imagebuild.errors import MirrorError, RecipeError
from imagebuild.mirrors.check import check, preflight
from imagebuild.model.mirror import Mirror, load_mirror
from imagebuild.model.project import Project, ProjectConfig
from tests.unit.tls import Tls, make_tls


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None
    range: str | None


@dataclass
class Server:
    """A loopback HTTP(S) server answering `routes` (path -> status; anything else 404)."""

    routes: dict[str, int]
    redirects: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    httpd: http.server.ThreadingHTTPServer | None = None
    scheme: str = "http"

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def paths(self, method: str | None = None) -> list[str]:
        return [s.path for s in self.seen if method is None or s.method == method]


def _handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            server.seen.append(
                Seen(self.command, self.path, self.headers.get("Authorization"), self.headers.get("Range"))
            )
            if self.path in server.redirects:
                self.send_response(302)
                self.send_header("Location", server.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"x" * 100_000  # more than a probe should ever read
            self.send_response(server.routes.get(self.path, 404))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                with contextlib.suppress(OSError):  # the probe hung up after the headers, as it should
                    self.wfile.write(body)

        do_GET = do_HEAD = _answer

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    return Handler


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Probes honour the proxy variables, as pip and curl do; loopback servers need none."""
    for variable in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(
        routes: dict[str, int], redirects: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
    ) -> Server:
        server = Server(routes, redirects or {})
        server.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
        if tls is not None:
            server.httpd.socket = tls.wrap_socket(server.httpd.socket, server_side=True)
            server.scheme = "https"
        threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.httpd is not None
        server.httpd.shutdown()
        server.httpd.server_close()


def closed_port() -> int:
    """A port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does it) but never answers a request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def run_of(mirror: Mirror, trust: bytes | None = None) -> dict[str, Any]:
    """What a run gives the probes: its one CA bundle (exactly `trust`) and the mirror's credentials."""
    project = Project(root=mirror.path.parent.parent, config=ProjectConfig(), recipes={})
    config = configure(project, mirror, RunOptions(), os.environ, trust)
    return {"ca_file": config.ca_file, "logins": config.logins()}


def profile(tmp_path: Path, toml: str, name: str = "x") -> Mirror:
    root = tmp_path / "project"
    (root / "mirrors").mkdir(parents=True, exist_ok=True)
    (root / "mirrors" / f"{name}.toml").write_text(textwrap.dedent(toml))
    return load_mirror(name, root)


def test_every_kind_of_endpoint_is_probed_with_a_small_request(tmp_path, serve):
    server = serve(
        {
            "/simple/": 200,
            "/extra/": 200,
            "/debian/dists/bookworm/Release": 200,
            "/debian-security/dists/bookworm-security/Release": 200,
            "/ubuntu/dists/noble/Release": 200,
            "/ubuntu/dists/noble-security/Release": 200,
            "/conda-forge/noarch/repodata.json": 206,
            "/alias/conda-forge/noarch/repodata.json": 206,
            "/v2/": 401,
        }
    )
    url = server.url
    mirror = profile(
        tmp_path,
        f"""
        compose = "{url}/compose"
        [pypi]
        index_url = "{url}/simple"
        extra_index_urls = ["{url}/extra"]
        [apt]
        debian = "{url}/debian"
        debian_security = "{url}/debian-security"
        ubuntu = "{url}/ubuntu"
        ubuntu_security = "{url}/ubuntu"
        [conda]
        channel_alias = "{url}/alias"
        channels = {{ "conda-forge" = "{url}/conda-forge" }}
        [registry]
        "docker.io" = "127.0.0.1:{server.port}/hub"
        [downloads]
        "https://get.helm.sh" = "{url}/helm"
        [git]
        "https://github.com" = "{url}/gh"
        """,
    )
    probes = check(mirror, **run_of(mirror), timeout=5)
    assert [(p.purpose, p.reachable, p.detail) for p in probes] == [
        ("pypi index (pip, uv)", True, "HTTP 200"),
        ("extra pypi index (pip, uv)", True, "HTTP 200"),
        ("Debian archive (bootstrap, apt-get)", True, "HTTP 200"),
        ("Debian security archive (apt-get)", True, "HTTP 200"),
        ("Ubuntu archive (apt-get)", True, "HTTP 200"),
        ("Ubuntu security archive (apt-get)", True, "HTTP 200"),
        ("conda channel conda-forge", True, "HTTP 206"),
        ("conda channel_alias (probed with conda-forge)", True, "HTTP 206"),
        ("registry mirror for docker.io", True, "HTTP 401"),  # asks for a token: up
        ("docker-compose download", True, "HTTP 404"),  # a proxy's bare prefix: up
        ("downloads from https://get.helm.sh/", True, "HTTP 404"),
        ("git proxy for https://github.com/", True, "HTTP 404"),
    ]
    assert all(p.latency_ms is not None and p.latency_ms > 0 for p in probes)
    assert probes[0].endpoint == f"{url}/simple" and probes[0].url == f"{url}/simple/"
    assert probes[8].endpoint == f"127.0.0.1:{server.port}/hub" and probes[8].url == f"{url}/v2/"
    assert sorted(server.paths("GET")) == sorted(
        [
            "/simple/",
            "/extra/",
            "/debian/dists/bookworm/Release",
            "/debian-security/dists/bookworm-security/Release",
            "/ubuntu/dists/noble/Release",
            "/ubuntu/dists/noble-security/Release",
            "/conda-forge/noarch/repodata.json",
            "/alias/conda-forge/noarch/repodata.json",
            "/v2/",
        ]
    )
    assert sorted(server.paths("HEAD")) == ["/compose", "/gh", "/helm"]
    assert {s.range for s in server.seen if "repodata" in s.path} == {"bytes=0-0"}


def test_failures_are_reported_with_their_reason(tmp_path, serve):
    server = serve({"/debian/dists/bookworm/Release": 500, "/v2/": 404})
    dead = closed_port()
    mirror = profile(
        tmp_path,
        f"""
        [pypi]
        index_url = "http://127.0.0.1:{dead}/simple"
        extra_index_urls = ["{server.url}/missing"]
        [apt]
        debian = "{server.url}/debian"
        [registry]
        "quay.io" = "127.0.0.1:{server.port}"
        """,
    )
    probes = check(mirror, **run_of(mirror), timeout=5)
    assert [(p.reachable, p.detail) for p in probes] == [
        (False, "connection refused"),
        (False, "HTTP 404"),  # an index must answer 200
        (False, "HTTP 500"),
        (False, "HTTP 404"),  # not a registry
    ]
    assert probes[0].latency_ms is None
    assert probes[1].latency_ms is not None  # the server did answer, just not usefully


def test_credentials_go_as_basic_auth_to_their_host_only(tmp_path, serve, monkeypatch):
    mirror_host, other = serve({"/simple/": 200}), serve({"/extra/": 200})
    monkeypatch.setenv("MIRROR_USER", "builder")
    monkeypatch.setenv("MIRROR_PASSWORD", "s3cret-value")
    mirror = profile(
        tmp_path,
        f"""
        [pypi]
        index_url = "{mirror_host.url}/simple"
        extra_index_urls = ["{other.url}/extra"]
        [[credentials]]
        host = "127.0.0.1:{mirror_host.port}"
        username_env = "MIRROR_USER"
        password_env = "MIRROR_PASSWORD"
        """,
    )
    probes = check(mirror, **run_of(mirror), timeout=5)
    assert all(p.reachable for p in probes)
    expected = "Basic " + base64.b64encode(b"builder:s3cret-value").decode()
    assert [s.authorization for s in mirror_host.seen] == [expected]
    assert [s.authorization for s in other.seen] == [None]
    assert "s3cret-value" not in repr(probes)


def test_credentials_do_not_follow_a_redirect_to_another_host(tmp_path, serve, monkeypatch):
    elsewhere = serve({"/simple/": 200})
    mirror_host = serve({}, redirects={"/simple/": f"{elsewhere.url}/simple/"})
    monkeypatch.setenv("MIRROR_USER", "builder")
    monkeypatch.setenv("MIRROR_PASSWORD", "s3cret-value")
    mirror = profile(
        tmp_path,
        f"""
        [pypi]
        index_url = "{mirror_host.url}/simple"
        [[credentials]]
        host = "127.0.0.1:{mirror_host.port}"
        username_env = "MIRROR_USER"
        password_env = "MIRROR_PASSWORD"
        """,
    )
    (probe,) = check(mirror, **run_of(mirror), timeout=5)
    assert probe.reachable and probe.detail == f"HTTP 200 (redirected to 127.0.0.1:{elsewhere.port})"
    assert mirror_host.seen[0].authorization is not None
    assert [s.authorization for s in elsewhere.seen] == [None]


def test_a_credential_variable_that_is_not_set_is_named(tmp_path, serve, monkeypatch):
    server = serve({"/simple/": 200})
    monkeypatch.delenv("MIRROR_USER", raising=False)
    mirror = profile(
        tmp_path,
        f"""
        [pypi]
        index_url = "{server.url}/simple"
        [[credentials]]
        host = "127.0.0.1"
        username_env = "MIRROR_USER"
        password_env = "MIRROR_PASSWORD"
        """,
    )
    with pytest.raises(RecipeError, match=r"\[\[credentials\]\]\[0\]\.username_env: environment variable MIRROR_USER"):
        check(mirror, **run_of(mirror), timeout=5)


def test_preflight_raises_naming_the_mirror_and_the_url(tmp_path, serve):
    server = serve({"/debian/dists/bookworm/Release": 200})
    dead = closed_port()
    mirror = profile(
        tmp_path,
        f"""
        [pypi]
        index_url = "http://127.0.0.1:{dead}/simple"
        [apt]
        debian = "{server.url}/debian"
        """,
        name="site",
    )
    with pytest.raises(MirrorError) as caught:
        preflight(mirror, **run_of(mirror))
    message = caught.value.render()
    assert str(mirror.path) in message
    assert "mirror 'site'" in message
    assert f"http://127.0.0.1:{dead}/simple/" in message
    assert "connection refused" in message
    assert "imagebuild mirror check site" in caught.value.hint and "--mirror none" in caught.value.hint
    assert caught.value.exit_code == 6


def test_preflight_fails_fast_on_a_dead_port_next_to_a_black_hole(tmp_path, silent_port):
    dead = closed_port()
    mirror = profile(
        tmp_path,
        f"""
        [pypi]
        index_url = "http://127.0.0.1:{dead}/simple"
        [apt]
        debian = "http://127.0.0.1:{silent_port}/debian"
        """,
    )
    started = time.monotonic()
    with pytest.raises(MirrorError, match="connection refused"):
        preflight(mirror, **run_of(mirror), timeout=5)
    assert time.monotonic() - started < 2  # did not wait for the silent endpoint


def test_preflight_gives_up_on_a_black_hole_within_the_timeout(tmp_path, silent_port):
    mirror = profile(tmp_path, f'[pypi]\nindex_url = "http://127.0.0.1:{silent_port}/simple"\n')
    started = time.monotonic()
    with pytest.raises(MirrorError, match=r"pypi index \(pip, uv\) does not answer .*: no answer within 0\.5 s"):
        preflight(mirror, **run_of(mirror), timeout=0.5)
    assert time.monotonic() - started < 1.9


def test_preflight_probes_only_what_a_build_uses(tmp_path, serve):
    server = serve({"/simple/": 200, "/debian/dists/bookworm/Release": 200})
    dead = closed_port()
    mirror = profile(
        tmp_path,
        f"""
        compose = "http://127.0.0.1:{dead}/compose"
        [pypi]
        index_url = "{server.url}/simple"
        [apt]
        debian = "{server.url}/debian"
        [conda]
        channels = {{ "conda-forge" = "http://127.0.0.1:{dead}/conda-forge" }}
        [registry]
        "docker.io" = "127.0.0.1:{dead}"
        """,
    )
    probes = preflight(mirror, **run_of(mirror))
    assert sorted(p.purpose for p in probes) == ["Debian archive (bootstrap, apt-get)", "pypi index (pip, uv)"]
    with pytest.raises(MirrorError, match="conda channel conda-forge"):
        preflight(mirror, ("conda",), **run_of(mirror))


def test_a_served_index_that_is_down_is_explained(tmp_path):
    dead = closed_port()
    root = tmp_path / "project"
    (root / "mirrors" / "wheelhouse").mkdir(parents=True)
    mirror = profile(tmp_path, f'[pypi]\nindex_url = "http://127.0.0.1:{dead}/simple"\n[serve]\npypi = "wheelhouse"\n')
    (probe,) = check(mirror, **run_of(mirror), timeout=5)
    assert probe.detail.startswith("connection refused (imagebuild serves [serve].pypi only while it builds")


def test_an_empty_profile_has_nothing_to_probe(tmp_path):
    mirror = profile(tmp_path, 'description = "nothing yet"\n')
    assert check(mirror, **run_of(mirror)) == []
    assert preflight(mirror, **run_of(mirror)) == []


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Tls:
    """A throwaway CA and a certificate it signed for 127.0.0.1."""
    return make_tls(tmp_path_factory.mktemp("tls"), "imagebuild mirror-check test CA")


def test_https_endpoints_trust_the_given_ca_bundle(tmp_path, serve, tls):
    server = serve({"/simple/": 200}, tls=tls.server)
    mirror = profile(tmp_path, f'[pypi]\nindex_url = "{server.url}/simple"\n')
    (untrusted,) = check(mirror, **run_of(mirror), timeout=5)
    assert not untrusted.reachable and untrusted.detail.startswith("TLS certificate not trusted")
    assert check(mirror, **run_of(mirror, tls.ca_pem), timeout=5)[0].reachable
    with pytest.raises(MirrorError) as caught:
        preflight(mirror, **run_of(mirror))
    assert "--ca-cert" in caught.value.hint


def test_https_endpoints_trust_the_profiles_own_ca_cert(tmp_path, serve, tls):
    server = serve({"/simple/": 200}, tls=tls.server)
    (tmp_path / "project" / "mirrors").mkdir(parents=True)
    (tmp_path / "project" / "mirrors" / "site-ca.pem").write_bytes(tls.ca_pem)
    mirror = profile(tmp_path, f'ca_cert = "site-ca.pem"\n[pypi]\nindex_url = "{server.url}/simple"\n')
    assert check(mirror, **run_of(mirror, merged_trust({}, None, mirror)), timeout=5)[0].reachable


def test_a_ca_bundle_that_is_not_pem_is_a_recipe_error(tmp_path, serve):
    server = serve({"/simple/": 200})
    (tmp_path / "project" / "mirrors").mkdir(parents=True)
    (tmp_path / "project" / "mirrors" / "site-ca.pem").write_text("not a certificate")
    mirror = profile(tmp_path, f'ca_cert = "site-ca.pem"\n[pypi]\nindex_url = "{server.url}/simple"\n')
    with pytest.raises(RecipeError, match="holds no PEM certificate") as caught:
        merged_trust({}, None, mirror)
    assert caught.value.path == mirror.ca_cert
    assert str(mirror.path) in caught.value.message
    not_pem = tmp_path / "bundle.pem"
    not_pem.write_text("not a certificate either")
    with pytest.raises(RecipeError, match=r"--ca-cert: .* holds no PEM certificate"):
        merged_trust({}, not_pem, None)
