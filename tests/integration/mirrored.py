"""A site's mirrors on loopback, shared by the end-to-end mirror tests (the `site` fixture of
conftest.py): a project with base and a wheelhouse `mirror sync` filled, served with credentials,
and a caching proxy of the Debian archive, each with its own access log."""

import functools
import http.server
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagebuild.model.project import load_project
from tests.conftest import REPO, free_port, run_config
from tests.integration.archive_proxy import ArchiveProxy

USER_VARIABLE, TOKEN_VARIABLE = "E2E_MIRROR_USER", "E2E_MIRROR_TOKEN"
BUNDLED_WITH_VENV = {"pip", "setuptools"}
"""Distributions `python3 -m venv` puts in every environment: nothing downloads them."""


@dataclass(frozen=True)
class MirroredSite:
    root: Path
    wheelhouse: Path
    proxy: ArchiveProxy
    index_url: str
    env: dict[str, str]
    user: str
    token: str


PROFILE = """\
description = "this test's own mirrors on loopback"
runtime = {runtime}

[pypi]
index_url = "{index_url}"

[apt]
debian = "{proxy}/debian"
debian_security = "{proxy}/debian-security"

[serve]
pypi = "../wheelhouse"

[[credentials]]
host = "127.0.0.1:{port}"
username_env = "{user_variable}"
password_env = "{token_variable}"
"""


def make_site(tmp_path_factory, engine) -> Iterator[MirroredSite]:
    """A project (base only, its own repository name) with a synced wheelhouse and a profile
    (session-wide: test_dockerfile_recipe.py's mirrors serve the same wheelhouse and archive proxy)."""
    root = tmp_path_factory.mktemp("mirrored") / "project"
    (root / "images").mkdir(parents=True)
    shutil.copytree(REPO / "images" / "base", root / "images" / "base")
    (root / "imagebuild.toml").write_text('[build]\nrepository = "test-mirror"\n')
    proxy = ArchiveProxy(upstream=run_config(load_project(REPO)).debian_archive.rsplit("/debian", 1)[0], cache=root / "apt-cache")
    port = free_port()
    index_url = f"http://127.0.0.1:{port}/simple"
    (root / "mirrors").mkdir()
    for name, runtime in (("e2e", "false"), ("e2e-runtime", "true")):
        (root / "mirrors" / f"{name}.toml").write_text(
            PROFILE.format(
                runtime=runtime,
                index_url=index_url,
                proxy=proxy.url,
                port=port,
                user_variable=USER_VARIABLE,
                token_variable=TOKEN_VARIABLE,
            )
        )
    user, token = f"user{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    env = {**os.environ, USER_VARIABLE: user, TOKEN_VARIABLE: token}
    synced = subprocess.run(
        ["imagebuild", "mirror", "sync", "base", "--to", "wheelhouse"], cwd=root, env=env, capture_output=True, text=True
    )
    assert synced.returncode == 0, synced.stderr
    yield MirroredSite(root, root / "wheelhouse", proxy, index_url, env, user, token)
    proxy.close()
    for image in engine.client.images.list(name="test-mirror/base"):
        engine.client.images.remove(image.id, force=True)


class GitServer:
    """Bare repositories over git's dumb HTTP protocol (static files), with an access log."""

    def __init__(self, folder: Path) -> None:
        self.log: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                server.log.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
