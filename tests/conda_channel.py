"""A real conda channel for tests (conda-forge is out of reach here): genuine .tar.bz2 packages
(info/index.json, info/paths.json, payload), indexed by rattler, served over HTTP on loopback."""

import asyncio
import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import rattler


def make_package(channel: Path, subdir: str, name: str, version: str, depends: list[str], files: dict[str, bytes]) -> Path:
    index = {
        "name": name, "version": version, "build": "0", "build_number": 0, "depends": depends,
        "subdir": subdir, "license": "MIT", "timestamp": 1_700_000_000_000,
    }  # fmt: skip
    if subdir == "noarch":
        index["noarch"] = "generic"
    paths = {
        "paths": [
            {"_path": p, "path_type": "hardlink", "sha256": hashlib.sha256(d).hexdigest(), "size_in_bytes": len(d)}
            for p, d in files.items()
        ],
        "paths_version": 1,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        members = {**files, "info/index.json": json.dumps(index).encode(), "info/paths.json": json.dumps(paths).encode()}
        members["info/files"] = ("\n".join(files) + "\n").encode()
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o755 if path.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    target = channel / subdir / f"{name}-{version}-0.tar.bz2"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())
    return target


def index(channel: Path) -> None:
    for subdir in ("linux-64", "noarch"):
        (channel / subdir).mkdir(parents=True, exist_ok=True)
    asyncio.run(rattler.index.index_fs(channel, write_shards=False, write_zst=False, force=True))


class ChannelServer:
    """The channel folder over HTTP on loopback, until close()."""

    def __init__(self, channel: Path) -> None:
        self.folder = channel
        handler = functools.partial(_QuietHandler, directory=str(channel))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        if self.httpd.socket.fileno() != -1:
            self.httpd.shutdown()
            self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve_hello_channel(folder: Path) -> ChannelServer:
    """The tests' channel: hello-tool (a binary) needing hello-data >=2 (a data file; 1.0 and 2.1
    exist), and hello-extra (another data file) needing any hello-data."""
    make_package(folder, "linux-64", "hello-tool", "1.0", ["hello-data >=2"], {"bin/hello-tool": b"#!/bin/sh\necho hello from conda\n"})
    make_package(folder, "noarch", "hello-data", "2.1", [], {"share/hello/data.txt": b"42\n"})
    make_package(folder, "noarch", "hello-data", "1.0", [], {"share/hello/data.txt": b"1\n"})
    make_package(folder, "noarch", "hello-extra", "0.5", ["hello-data"], {"share/hello/extra.txt": b"extra\n"})
    index(folder)
    return ChannelServer(folder)
