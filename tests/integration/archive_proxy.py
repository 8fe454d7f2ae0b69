"""A site's Debian mirror, as the end-to-end tests and the mirror benchmark need one: a caching
reverse proxy on loopback in front of the host's Debian archive, with its own access log.

http://127.0.0.1:PORT/debian/... is fetched once from UPSTREAM/debian/..., kept on disk, and
every request is logged, so a test can show which packages came through it.
"""

import hashlib
import http.server
import shutil
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Request:
    path: str
    status: int
    cached: bool


class ArchiveProxy:
    def __init__(self, upstream: str, cache: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self.cache = cache
        self.cache.mkdir(parents=True, exist_ok=True)
        self.log: list[Request] = []
        self._lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _record(self, path: str, status: int, cached: bool) -> None:
        with self._lock:
            self.log.append(Request(path, status, cached))

    def _fetch(self, path: str) -> tuple[int, Path | None, bool]:
        """Index files (Release, Packages) are always fetched fresh; packages are cached by path."""
        stored = self.cache / hashlib.sha256(path.encode()).hexdigest()
        immutable = path.endswith(".deb") or "/by-hash/" in path
        if immutable and stored.is_file():
            return 200, stored, True
        try:
            with urllib.request.urlopen(self.upstream + path, timeout=60) as response:
                partial = stored.with_suffix(".partial")
                with partial.open("wb") as sink:
                    shutil.copyfileobj(response, sink)
                partial.rename(stored)
                return 200, stored, False
        except urllib.error.HTTPError as exc:
            return exc.code, None, False

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer(body=True)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def _answer(self, *, body: bool) -> None:
                status, stored, cached = proxy._fetch(self.path)
                proxy._record(self.path, status, cached)
                if stored is None:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(stored.stat().st_size))
                self.end_headers()
                if body:
                    with stored.open("rb") as source:
                        shutil.copyfileobj(source, self.wfile)

            def log_message(self, format: str, *args: object) -> None:
                """The proxy keeps its own log in `ArchiveProxy.log`."""

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
