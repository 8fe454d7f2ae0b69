"""Serve a folder filled by `imagebuild mirror sync` at a profile's [pypi].index_url.

Builds run on host networking, so an index on the host's loopback is the mirror the build
sees. Every request goes to `access.log` in the folder, one line each, so what a build fetched
(and that it fetched nothing elsewhere) can be read afterwards.
"""

import base64
import datetime
import errno
import functools
import hmac
import http.server
import os
import posixpath
import socket
import threading
import urllib.request
from pathlib import Path
from typing import BinaryIO, Self
from urllib.parse import quote, unquote, urlsplit

from imagebuild.config import Logins
from imagebuild.errors import MirrorError
from imagebuild.model.mirror import Mirror

ACCESS_LOG = "access.log"


class _Server(http.server.ThreadingHTTPServer):
    """Closing waits for the requests in flight, so access.log holds every request served."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: functools.partial["_Handler"], index: "IndexServer") -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.index = index
        super().__init__(address, handler)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves simple/ at the index path and files/ beside it, nothing else; logs every request."""

    server: _Server
    timeout = 60  # an idle keep-alive connection ends, so closing the server never waits long
    _status = 0
    _sent = 0

    def _authorized(self) -> bool:
        expected = self.server.index.authorization
        if expected is None or hmac.compare_digest(self.headers.get("Authorization", "").encode(), expected.encode()):
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="imagebuild mirror"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self) -> None:
        if self._authorized():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._authorized():
            super().do_HEAD()

    def translate_path(self, path: str) -> str:
        route = posixpath.normpath(unquote(urlsplit(path).path))  # '/simple/../x' is '/x': not served
        index, files = self.server.index.index_path, self.server.index.files_path
        if route == index or route.startswith(f"{index}/"):
            route = "/simple" + route[len(index) :]
        elif route.startswith(f"{files}/"):
            route = "/files" + route[len(files) :]
        else:
            route = "/not-served"
        return super().translate_path(quote(route))

    def end_headers(self) -> None:
        """Index pages change with every sync: caches (uv's, kept across builds in a cache mount)
        revalidate them on each use (a 304 when unchanged); package files never change."""
        if urlsplit(self.path).path.startswith(self.server.index.index_path):
            self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def list_directory(self, path: "str | os.PathLike[str]") -> None:
        """A folder without an index.html is not part of the index."""
        self.send_error(404)

    def copyfile(self, source: BinaryIO, outputfile: BinaryIO) -> None:  # type: ignore[override]
        while chunk := source.read(1 << 16):
            outputfile.write(chunk)
            self._sent += len(chunk)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self._status = int(code)

    def log_message(self, format: str, *args: object) -> None:
        """Requests go to access.log; nothing goes to the terminal a build reports on."""

    def handle_one_request(self) -> None:
        self._status, self._sent = 0, 0
        super().handle_one_request()
        if self._status and self.command:
            self.server.index.log(self.client_address[0], self.command, self.path, self._status, self._sent)


class IndexServer:
    """A synced folder served at `index_url` (http, on this host) from __enter__ to __exit__.

    The port is bound when the server is made, so a port in use shows before anything starts.
    With `credentials`, every request must bring them (HTTP basic auth) or gets 401.
    """

    def __init__(self, folder: Path, index_url: str, *, credentials: tuple[str, str] | None = None) -> None:
        parts = urlsplit(index_url)
        if parts.scheme != "http" or not parts.hostname or not parts.path.strip("/"):
            raise MirrorError(
                f"imagebuild serves an index only at an http:// URL with a path, not {index_url}",
                hint='use an address on this host, such as index_url = "http://127.0.0.1:3141/simple"',
            )
        self.folder = folder
        self.index_path = parts.path.rstrip("/")
        self.files_path = posixpath.join(posixpath.dirname(self.index_path), "files")
        self.authorization = None
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            self.authorization = f"Basic {token}"
        handler = functools.partial(_Handler, directory=str(folder))
        self._server = _Server((parts.hostname, 80 if parts.port is None else parts.port), handler, self)
        self._log_lock = threading.Lock()
        self._log: BinaryIO | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The index URL, with the port actually bound (the one asked for, unless it was 0)."""
        bound, port = self._server.server_address[:2]
        host = bound.decode() if isinstance(bound, bytes) else bound
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{self.index_path}"

    def log(self, client: str, method: str, path: str, status: int, sent: int) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._log_lock:
            if self._log is not None:
                self._log.write(f"{now} {client} {method} {path} {status} {sent}\n".encode())
                self._log.flush()

    def __enter__(self) -> Self:
        self._log = (self.folder / ACCESS_LOG).open("ab")
        serve = functools.partial(self._server.serve_forever, poll_interval=0.1)
        self._thread = threading.Thread(target=serve, name="imagebuild-index", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        with self._log_lock:
            if self._log is not None:
                self._log.close()
                self._log = None


def _answers(index_url: str, credentials: tuple[str, str] | None) -> bool:
    """Whether an index answers at `index_url`: an HTML page, not just any server on the port."""
    request = urllib.request.Request(f"{index_url}/")
    if credentials is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(credentials).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200 and "html" in response.headers.get("Content-Type", "")
    except (OSError, ValueError):
        return False


def serve_mirror(mirror: Mirror, logins: Logins) -> IndexServer | None:
    """The server for a profile's `[serve] pypi` folder, to enter for the length of a build; None
    when the profile serves nothing, or when an index already answers there (an admin serves it)."""
    folder = mirror.serve_pypi
    if folder is None or mirror.spec.pypi is None:
        return None
    index_url = mirror.spec.pypi.index_url
    parts = urlsplit(index_url)
    credentials = logins.get(parts.netloc) or logins.get(parts.hostname or "")
    try:
        return IndexServer(folder, index_url, credentials=credentials)
    except OSError as error:
        if error.errno == errno.EADDRINUSE and _answers(index_url, credentials):
            return None
        in_use = error.errno == errno.EADDRINUSE
        taken = "is in use by a server that is no PyPI index" if in_use else f"cannot be served: {error}"
        raise MirrorError(
            f"[serve].pypi: {index_url} {taken}",
            path=mirror.path,
            hint="stop what listens there, or choose a free port in [pypi].index_url",
        ) from None
