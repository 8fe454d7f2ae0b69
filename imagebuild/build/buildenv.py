"""What a build's commands receive from the host and never through the image: the CA bundle,
the mirror's settings and its credentials.

imagebuild serves them on loopback for one run; support/with-build-env fetches them for each
command into a temp folder that is gone before the layer is committed. The image sees only the
server's address (a build argument), so the layer cache does not depend on which mirror, CA or
password was used.
"""

import http.server
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from imagebuild.system import port_is_free

BUILD_ARG = "IMAGEBUILD_BUILD_ENV"


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

    def __bool__(self) -> bool:
        return bool(self.ca_bundle or self.variables or self.apt_sed or self.condarc)


class BuildEnvServer:
    """Serves a BuildEnvironment at http://127.0.0.1:PORT/ to the builds of one run.

    It starts on the first `url()` only, so a run that reuses every image starts nothing (and
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

    def url(self) -> str:
        """The value of the IMAGEBUILD_BUILD_ENV build argument; empty when there is nothing to serve."""
        if not self.environment:
            return ""
        if self.server is None:
            if self.on_start is not None:
                self.on_start()
            self.server = self._start(self.environment.documents())
        return f"http://127.0.0.1:{self.server.server_address[1]}"

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
