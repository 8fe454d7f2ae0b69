"""What a build's commands receive from the host and never through the image: the CA bundle,
the mirror's settings and its credentials, and the package caches that survive a build.

With BuildKit they reach each RUN as a secret mount (/run/secrets/imagebuild, a shell script
support/with-build-env sources): absent from layers, config and `docker history`. The classic
builder has no secrets: there imagebuild serves the same documents on loopback for one run and
with-build-env fetches them per command; the image sees only the server's address (a build
argument). Either way the layer cache does not depend on which mirror, CA or password was used.

Package caches are BuildKit cache mounts under /var/cache/imagebuild, one per tool and user, the
same for every image (two images sharing a package share its download); with-build-env points
uv, pip, rattler and apt at them when they are there. The classic builder cannot mount them:
`without_mounts` takes imagebuild's mount flags out of a Dockerfile for it, so the rendered
Dockerfile, and with it the content hash, is the same whichever builder builds it.
"""

import base64
import http.server
import re
import shlex
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imagebuild.system import port_is_free

BUILD_ARG = "IMAGEBUILD_BUILD_ENV"
SECRET_ID = "imagebuild"
SECRET_MOUNT = f"--mount=type=secret,id={SECRET_ID},mode=0444"
"""Readable by the RUN's user (builds run commands as the image user too); in a tmpfs, never a layer."""
CACHE_ROOT = "/var/cache/imagebuild"
CACHED_TOOLS = ("uv", "pip", "rattler")
_OUR_MOUNT = re.compile(rf"[ \t]--mount=type=(?:secret,id={SECRET_ID}|cache,id={SECRET_ID}-[\w.-]+)\S*")


def run_mounts(uid: int = 0, gid: int = 0) -> str:
    """The mount flags of a RUN line that runs as `uid`: the build environment secret, the package
    caches of that user, and for root apt's archive cache (locked: apt takes one user at a time)."""
    caches = [f"--mount=type=cache,id={SECRET_ID}-{tool}-{uid},target={CACHE_ROOT}/{tool},uid={uid},gid={gid}" for tool in CACHED_TOOLS]
    if uid == 0:
        caches.append(f"--mount=type=cache,id={SECRET_ID}-apt,target={CACHE_ROOT}/apt,sharing=locked")
    return " ".join([SECRET_MOUNT, *caches])


def without_mounts(dockerfile: str) -> str:
    """The Dockerfile the classic builder gets: imagebuild's own mount flags taken out of RUN lines
    (a Dockerfile's own mounts stay, and the classic builder says it cannot build them)."""
    return _OUR_MOUNT.sub("", dockerfile)


@dataclass(frozen=True)
class BuildEnvironment:
    ca_bundle: bytes | None = None
    variables: tuple[tuple[str, str], ...] = ()
    apt_sed: str = ""
    condarc: str = ""
    """The mirror's channel settings, for conda and micromamba commands a build runs itself
    (repo2docker's build packs): channel names resolve through the mirror."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Credential values in `variables`/`apt_sed`, so tests and logs can check they never leak."""

    def documents(self) -> dict[str, bytes]:
        """Path -> body, as with-build-env asks for them."""
        flags = [("IMAGEBUILD_HAS_CA", "1")] if self.ca_bundle else []
        flags += [("IMAGEBUILD_HAS_APT", "1")] if self.apt_sed else []
        flags += [("IMAGEBUILD_HAS_CONDARC", "1")] if self.condarc else []
        script = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in (*self.variables, *flags))
        served = {"/env": script.encode()}
        if self.ca_bundle:
            served["/ca.pem"] = self.ca_bundle
        if self.apt_sed:
            served["/apt.sed"] = self.apt_sed.encode()
        if self.condarc:
            served["/condarc"] = self.condarc.encode()
        return served

    def secret_script(self) -> bytes:
        """The documents as one shell script for with-build-env to source: the variables, then each
        file written into its scratch folder (base64, so no byte of a bundle needs quoting)."""
        documents = self.documents()
        script = documents.pop("/env").decode()
        for path, body in sorted(documents.items()):
            script += f"printf %s {base64.b64encode(body).decode()} | base64 -d > \"$scratch{path}\"\n"
        return script.encode()

    def __bool__(self) -> bool:
        return bool(self.ca_bundle or self.variables or self.apt_sed or self.condarc)


class BuildEnvServer:
    """Gives a BuildEnvironment to the builds of one run: as a secret file for BuildKit
    (`secret_file`), or served at http://127.0.0.1:PORT/ for the classic builder (`url`).

    It starts on first use only, so a run that reuses every image starts nothing (and
    `on_start`, e.g. checking that the mirror answers, runs only when something is built). The
    port is fixed by default so that the build argument, and so the layer cache, stays the same
    from build to build; a busy port falls back to a free one.
    """

    def __init__(
        self, environment: BuildEnvironment, preferred_port: int, on_start: Callable[[], None] | None = None
    ) -> None:
        self.environment = environment
        self.preferred_port = preferred_port
        self.on_start = on_start
        self.server: http.server.ThreadingHTTPServer | None = None
        self.scratch: tempfile.TemporaryDirectory[str] | None = None
        self.lock = threading.Lock()
        """Parallel builds ask at the same time; the services start once."""
        self.started = False

    def _first_use(self) -> None:
        if not self.started:
            self.started = True
            if self.on_start is not None:
                self.on_start()

    def url(self) -> str:
        """The value of the IMAGEBUILD_BUILD_ENV build argument; empty when there is nothing to serve."""
        if not self.environment:
            return ""
        with self.lock:
            self._first_use()
            if self.server is None:
                self.server = self._start(self.environment.documents())
            return f"http://127.0.0.1:{self.server.server_address[1]}"

    def secret_file(self) -> Path | None:
        """The file BuildKit mounts as the `imagebuild` secret (private to this run, gone after
        it); None when there is nothing to give."""
        if not self.environment:
            return None
        with self.lock:
            self._first_use()
            if self.scratch is None:
                self.scratch = tempfile.TemporaryDirectory(prefix="imagebuild-secret-")
                secret = Path(self.scratch.name) / SECRET_ID
                secret.touch(mode=0o600)
                secret.write_bytes(self.environment.secret_script())
            return Path(self.scratch.name) / SECRET_ID

    def _start(self, documents: dict[str, bytes]) -> http.server.ThreadingHTTPServer:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = documents.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Builds print their own progress; stay quiet."""

        port = self.preferred_port if port_is_free(self.preferred_port) else 0
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    def __enter__(self) -> "BuildEnvServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.scratch is not None:
            self.scratch.cleanup()
