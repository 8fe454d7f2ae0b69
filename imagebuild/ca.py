"""The build's CA bundle: found on the host, served on loopback for one build, never
copied into an image unless the recipe keeps it."""

import http.server
import os
import socket
import threading
from pathlib import Path

from imagebuild.errors import RecipeError

CA_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")


def find_ca_bundle(explicit: Path | None = None) -> Path | None:
    """`--ca-cert`, else the first of SSL_CERT_FILE, PIP_CERT, REQUESTS_CA_BUNDLE that is set."""
    if explicit is not None:
        if not explicit.is_file():
            raise RecipeError("CA bundle not found", path=explicit, hint="pass an existing PEM file to --ca-cert")
        return explicit
    for variable in CA_VARIABLES:
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    return None


def read_ca_bundle(explicit: Path | None = None) -> bytes | None:
    """The bytes of the bundle `find_ca_bundle` picks, or None when there is none."""
    bundle = find_ca_bundle(explicit)
    return bundle.read_bytes() if bundle else None


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class CaServer:
    """Serves a CA bundle at http://127.0.0.1:PORT/ca.pem to the builds of one run.

    It starts on the first `url()` only, so a run that reuses every image starts nothing.
    The port is fixed by default so that the build argument, and so the layer cache, stays
    the same from build to build; a busy port falls back to a free one.
    """

    def __init__(self, bundle: bytes | None, preferred_port: int) -> None:
        self.bundle = bundle
        self.preferred_port = preferred_port
        self.server: http.server.ThreadingHTTPServer | None = None

    def url(self) -> str:
        """The bundle's URL for the build argument; empty when there is no bundle."""
        if self.bundle is None:
            return ""
        if self.server is None:
            self.server = self._start(self.bundle)
        return f"http://127.0.0.1:{self.server.server_address[1]}/ca.pem"

    def _start(self, bundle: bytes) -> http.server.ThreadingHTTPServer:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path != "/ca.pem":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(bundle)))
                self.end_headers()
                self.wfile.write(bundle)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Builds print their own progress; stay quiet."""

        port = self.preferred_port if _free(self.preferred_port) else 0
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    def __enter__(self) -> "CaServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
