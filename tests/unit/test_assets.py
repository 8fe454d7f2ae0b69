"""Assets: the recipe schema, the content-addressed cache, downloads (resume, refusal, mirror)
against a real HTTP server on loopback, and the `assets` commands."""

import hashlib
import http.server
import json
import os
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from imagebuild.errors import AssetError, RecipeError
from imagebuild.inputs.assets import AssetCache, DeclaredAsset, declared_assets
from imagebuild.model.mirror import Mirror, MirrorProfile
from imagebuild.model.project import load_project
from imagebuild.model.recipe_schema import AssetSpec
from tests.cli import CliResult, imagebuild

PAYLOAD = os.urandom(300_000)
CHECKSUM = hashlib.sha256(PAYLOAD).hexdigest()


def asset_toml(name: str = "data", url: str = "", sha256: str = CHECKSUM, extra: str = "") -> str:
    urls = f'urls = ["{url}"]' if url else 'filename = "data.bin"'
    return f'[[assets]]\nname = "{name}"\n{urls}\nsha256 = "{sha256}"\n{extra}\n'


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves `files`; honours Range; can cut the first answer short to prove resuming."""

    files: ClassVar[dict[str, bytes]] = {}
    cut_first: ClassVar[set[str]] = set()
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Range")))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.cut_first:
            self.cut_first.discard(self.path)
            self.wfile.write(body[start : start + 100_000])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        self.wfile.write(body[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_Files,), {"files": {}, "cut_first": set(), "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    httpd.handler = handler  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> AssetCache:
    monkeypatch.setenv("IMAGEBUILD_CACHE", str(tmp_path / "cache"))
    return AssetCache(tmp_path / "cache" / "assets")


def _declared(make_project, toml: str) -> DeclaredAsset:
    make_project.recipe("child", 'parent = "base"\n' + toml)
    return declared_assets(load_project(make_project.root))["data"]


def _fetch(cache: AssetCache, asset: DeclaredAsset, mirror: Mirror | None = None) -> Path:
    return cache.fetch(asset, mirror=mirror, logins={}, ca_file=None, progress=lambda done, total: None, say=print)


# -- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sha256": "abc"}, "64 hexadecimal digits"),
        ({"urls": ["ftp://example.org/x"]}, "http, https or file"),
        ({"urls": []}, "give 'filename'"),
        ({"dest": "relative/path"}, "absolute path"),
        ({"wheel": True}, "ending in .whl"),
        ({"install_at": "start"}, "needs an 'install' command"),
        ({"name": "two words"}, "letters, digits"),
        ({"filename": "../escape"}, "plain file name"),
    ],
)
def test_asset_schema_refuses_bad_fields(fields, message):
    values = {"name": "data", "urls": ["https://example.org/data.tar.gz"], "sha256": CHECKSUM} | fields
    with pytest.raises(ValueError, match=message):
        AssetSpec(**values)


def test_file_name_comes_from_the_url_unless_given():
    spec = AssetSpec(name="sssp", urls=["https://example.org/files/SSSP%201.3.tar.gz?download=1"], sha256=CHECKSUM)
    assert spec.file_name == "SSSP 1.3.tar.gz"
    assert spec.path_in_image == "/opt/assets/SSSP 1.3.tar.gz"
    unpacked = AssetSpec(name="sssp", urls=["https://x/y.zip"], sha256=CHECKSUM, unpack=True, dest="/opt/sssp")
    assert unpacked.path_in_image == "/opt/sssp"


def test_a_recipe_error_names_the_asset_field(make_project):
    make_project.recipe("child", 'parent = "base"\n' + asset_toml(sha256="nope"))
    with pytest.raises(RecipeError) as caught:
        load_project(make_project.root)
    assert "[assets][0].sha256" in caught.value.message
    assert str(caught.value.path).endswith("images/child/image.toml")


def test_one_name_with_two_checksums_is_refused(make_project):
    make_project.recipe("child", 'parent = "base"\n' + asset_toml())
    make_project.recipe("other", 'parent = "base"\n' + asset_toml(sha256="1" * 64))
    with pytest.raises(AssetError, match="also declared by"):
        declared_assets(load_project(make_project.root))


# -- cache -------------------------------------------------------------------------------------


def test_add_keeps_only_a_file_with_the_expected_checksum(cache, tmp_path):
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(PAYLOAD)
    bad.write_bytes(PAYLOAD[:-1] + b"x")
    with pytest.raises(AssetError, match="was not added"):
        cache.add(bad, CHECKSUM)
    assert not cache.has(CHECKSUM) and list(cache.partial.iterdir()) == []
    checksum, path = cache.add(good, CHECKSUM)
    assert checksum == CHECKSUM and path.read_bytes() == PAYLOAD


def test_a_corrupt_cached_file_is_refused_and_removed(cache, make_project, tmp_path):
    asset = _declared(make_project, asset_toml())
    source = tmp_path / "data.bin"
    source.write_bytes(PAYLOAD)
    _, path = cache.add(source, CHECKSUM)
    path.write_bytes(b"bit rot")
    with pytest.raises(AssetError, match="corrupt") as caught:
        cache.verified(asset)
    assert "imagebuild assets add data.bin" in caught.value.hint
    assert not path.exists()
    with pytest.raises(AssetError, match="not in the asset cache"):
        cache.verified(asset)


# -- downloads ---------------------------------------------------------------------------------


def test_fetch_resumes_a_cut_download_and_verifies(cache, make_project, server, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)  # the pause before trying again, recorded, not waited
    server.handler.files["/data.bin"] = PAYLOAD
    server.handler.cut_first.add("/data.bin")
    asset = _declared(make_project, asset_toml(url=f"{server.url}/data.bin"))
    path = _fetch(cache, asset)
    assert path.read_bytes() == PAYLOAD
    ranges = [r for p, r in server.handler.seen if p == "/data.bin"]
    assert ranges[0] is None and len(ranges) == 2
    assert ranges[1] is not None and int(ranges[1].removeprefix("bytes=").rstrip("-")) > 0  # it continued
    assert list(cache.partial.iterdir()) == []
    assert waits == [1]


def test_a_partial_download_never_counts_as_present(cache, make_project, server):
    asset = _declared(make_project, asset_toml(url=f"{server.url}/gone.bin"))
    (cache.partial / CHECKSUM).write_bytes(PAYLOAD[:1000])
    assert not cache.has(CHECKSUM)
    with pytest.raises(AssetError, match="could not be fetched") as caught:
        _fetch(cache, asset)
    assert "HTTP 404" in caught.value.message
    assert "imagebuild assets add gone.bin" in caught.value.hint
    assert not cache.has(CHECKSUM)


def test_a_wrong_file_from_the_server_is_refused_and_not_kept(cache, make_project, server):
    server.handler.files["/data.bin"] = b"something else entirely"
    asset = _declared(make_project, asset_toml(url=f"{server.url}/data.bin"))
    with pytest.raises(AssetError, match="served a file with sha256"):
        _fetch(cache, asset)
    assert not cache.has(CHECKSUM)
    assert list(cache.partial.iterdir()) == []


def test_the_mirror_download_rewrite_applies(cache, make_project, server, tmp_path):
    server.handler.files["/mirror/files/data.bin"] = PAYLOAD
    asset = _declared(make_project, asset_toml(url="https://downloads.example.org/files/data.bin"))
    profile = MirrorProfile(downloads={"https://downloads.example.org": f"{server.url}/mirror"})
    mirror = Mirror(name="site", path=tmp_path / "site.toml", spec=profile)
    assert _fetch(cache, asset, mirror).read_bytes() == PAYLOAD
    assert [p for p, _ in server.handler.seen] == ["/mirror/files/data.bin"]


# -- commands ----------------------------------------------------------------------------------


def _cli(root: Path, *args: str, cache_dir: Path) -> CliResult:
    return imagebuild(*args, cwd=root, env={"IMAGEBUILD_CACHE": str(cache_dir)})


def test_assets_commands_add_list_verify(make_project, tmp_path):
    make_project.recipe("child", 'parent = "base"\n' + asset_toml())
    root, cache_dir = make_project.root, tmp_path / "cache"
    listed = json.loads(_cli(root, "assets", "list", "--json", cache_dir=cache_dir).stdout)
    assert [(row["name"], row["present"]) for row in listed] == [("data", False)]
    missing = _cli(root, "assets", "verify", cache_dir=cache_dir)
    assert missing.returncode == 7

    stranger = tmp_path / "stranger.bin"
    stranger.write_bytes(b"not declared anywhere")
    refused = _cli(root, "assets", "add", str(stranger), cache_dir=cache_dir)
    assert refused.returncode == 7 and "not the checksum of any declared asset" in refused.stderr
    misnamed = tmp_path / "data.bin"
    misnamed.write_bytes(b"a different file under the asset's name")
    refused = _cli(root, "assets", "add", str(misnamed), cache_dir=cache_dir)
    assert refused.returncode == 7 and "named like asset 'data'" in refused.stderr

    misnamed.write_bytes(PAYLOAD)
    added = _cli(root, "assets", "add", str(misnamed), cache_dir=cache_dir)
    assert added.returncode == 0, added.stderr
    assert _cli(root, "assets", "verify", cache_dir=cache_dir).returncode == 0
    (cache_dir / "assets" / "sha256" / CHECKSUM).write_bytes(b"corrupted")
    corrupt = json.loads(_cli(root, "assets", "verify", "--json", cache_dir=cache_dir).stdout)
    assert corrupt[0]["state"] == "corrupt"
    assert not (cache_dir / "assets" / "sha256" / CHECKSUM).exists()
