"""mirror sync and serve without the internet: fake wheels and a fake source distribution with
real metadata, an upstream index written and served by the code under test, and pip resolving
against it for the images' target rather than this host."""

import base64
import hashlib
import io
import json
import shutil
import tarfile
import threading
import urllib.error
import urllib.request
import zipfile
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from imagebuild.build.render import INSTALLER
from imagebuild.errors import MirrorError, RecipeError
from imagebuild.inputs.target import DEBIAN_TARGETS, image_target
from imagebuild.mirrors.serve import IndexServer, serve_mirror
from imagebuild.mirrors.sync import sync
from imagebuild.mirrors.wheelhouse import MANIFEST, file_entry, load_manifest, save_manifest, write_index
from imagebuild.model.mirror import Mirror, MirrorProfile
from imagebuild.model.project import load_project
from imagebuild.plan import plan
from tests.conftest import ProjectFactory, free_port, run_config

USER_VARIABLE, PASSWORD_VARIABLE = "SYNC_TEST_USER", "SYNC_TEST_PASSWORD"


def make_wheel(
    folder: Path, filename: str, *, requires_python: str | None = None, requires: tuple[str, ...] = ()
) -> Path:
    """A wheel pip accepts and installs: METADATA, WHEEL and RECORD under its .dist-info."""
    distribution, version = filename.split("-")[:2]
    info = f"{distribution}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    metadata += f"Requires-Python: {requires_python}\n" if requires_python else ""
    metadata += "".join(f"Requires-Dist: {item}\n" for item in requires)
    tag = filename.removesuffix(".whl").split("-", 2)[2]
    files = {
        f"{distribution.lower()}/__init__.py": "",
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            wheel.writestr(name, text)
    return path


BACKEND = '''\
"""An in-tree PEP 517 backend whose build needs one more package, asked for at build time."""
import base64, hashlib, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return ["fakebuildtool>=1"]

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    import fakebuildtool  # noqa: F401  proves the build environment holds it
    name = "srconly-1.0-py3-none-any.whl"
    info = "srconly-1.0.dist-info"
    files = {
        "srconly/__init__.py": b"",
        f"{info}/METADATA": b"Metadata-Version: 2.1\\nName: srconly\\nVersion: 1.0\\nRequires-Dist: beta>=2\\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\\n"
    record += f"{info}/RECORD,,\\n"
    with zipfile.ZipFile(f"{wheel_directory}/{name}", "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
        wheel.writestr(f"{info}/RECORD", record)
    return name
'''


def make_sdist(folder: Path) -> Path:
    """srconly 1.0, published only as a source distribution built by the backend above."""
    members = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: srconly\nVersion: 1.0\nRequires-Python: >=3.8\n",
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "fake_backend"\nbackend-path = ["."]\n',
        "fake_backend.py": BACKEND,
    }
    path = folder / "srconly-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"srconly-1.0/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def publish(folder: Path) -> None:
    """Make `folder`/files an index, as sync leaves it."""
    entries = {path.name: file_entry(path) for path in sorted((folder / "files").iterdir())}
    save_manifest(folder, entries)
    write_index(folder, entries)


class Anchors(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: dict[str, dict[str, str | None]] = {}
        self._current: dict[str, str | None] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._current = dict(attrs)

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.links[data] = self._current
            self._current = None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)




def make_mirror(tmp_path: Path, index_url: str, *, serve: bool = False, credentials: bool = False) -> Mirror:
    document: dict = {"pypi": {"index_url": index_url}}
    if serve:
        (tmp_path / "wheelhouse").mkdir(exist_ok=True)
        document["serve"] = {"pypi": "wheelhouse"}
    if credentials:
        host = index_url.split("/")[2]
        document["credentials"] = [{"host": host, "username_env": USER_VARIABLE, "password_env": PASSWORD_VARIABLE}]
    return Mirror(name="test", path=tmp_path / "test.toml", spec=MirrorProfile.model_validate(document))


# -- the target ---------------------------------------------------------------------------------


def test_bookworm_target_accepts_every_manylinux_tag_up_to_glibc_2_36():
    target = DEBIAN_TARGETS["bookworm"]
    platforms = target.platforms()
    assert platforms[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_37_x86_64" not in platforms
    assert platforms.index("manylinux2014_x86_64") == platforms.index("manylinux_2_17_x86_64") + 1
    assert platforms[-3:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    options = target.pip_options()
    assert options[:6] == ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    assert target.markers()["python_full_version"] == "3.11.2"


def test_a_root_image_of_an_unknown_suite_is_named(make_project):
    make_project.recipe("odd", 'root = "ubuntu:noble"\n')
    project = load_project(make_project.root)
    (item,) = plan(project, ["odd"])
    with pytest.raises(RecipeError, match="ubuntu:noble") as caught:
        image_target(item)
    assert "bookworm" in caught.value.hint


# -- the index ----------------------------------------------------------------------------------


def test_index_names_projects_per_pep_503_and_links_files_with_hash_and_requires_python(tmp_path):
    files = tmp_path / "files"
    old = make_wheel(files, "Foo.Bar-1.0-py3-none-any.whl", requires_python=">=3.8,<4")
    new = make_wheel(files, "foo_bar-2.0-py3-none-any.whl")
    make_wheel(files, "Zed_Pkg-0.1-cp311-cp311-manylinux_2_17_x86_64.whl")
    make_sdist(files)
    publish(tmp_path)

    root = Anchors((tmp_path / "simple/index.html").read_text()).links
    assert list(root) == ["foo-bar", "srconly", "zed-pkg"]
    assert root["foo-bar"]["href"] == "foo-bar/"
    page_text = (tmp_path / "simple/foo-bar/index.html").read_text()
    page = Anchors(page_text).links
    assert page["Foo.Bar-1.0-py3-none-any.whl"] == {
        "href": f"../../files/Foo.Bar-1.0-py3-none-any.whl#sha256={sha256(old)}",
        "data-requires-python": ">=3.8,<4",
    }
    assert page[new.name] == {"href": f"../../files/{new.name}#sha256={sha256(new)}"}
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in page_text
    assert "data-requires-python" not in (tmp_path / "simple/zed-pkg/index.html").read_text()
    assert Anchors((tmp_path / "simple/srconly/index.html").read_text()).links["srconly-1.0.tar.gz"][
        "data-requires-python"
    ] == ">=3.8"


def test_index_forgets_projects_no_longer_in_the_manifest(tmp_path):
    make_wheel(tmp_path / "files", "gone-1.0-py3-none-any.whl")
    publish(tmp_path)
    (tmp_path / "files/gone-1.0-py3-none-any.whl").unlink()
    make_wheel(tmp_path / "files", "kept-1.0-py3-none-any.whl")
    publish(tmp_path)
    assert sorted(p.name for p in (tmp_path / "simple").iterdir()) == ["index.html", "kept"]


def test_a_file_that_is_no_wheel_is_refused_by_name(tmp_path):
    path = tmp_path / "files" / "notes.txt.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"x")
    with pytest.raises(MirrorError, match=r"notes\.txt\.tar\.gz"):
        file_entry(path)


def test_manifest_keeps_intact_files_and_deletes_damaged_ones(tmp_path):
    intact = make_wheel(tmp_path / "files", "a-1.0-py3-none-any.whl")
    damaged = make_wheel(tmp_path / "files", "b-1.0-py3-none-any.whl")
    missing = make_wheel(tmp_path / "files", "c-1.0-py3-none-any.whl")
    publish(tmp_path)
    data = bytearray(damaged.read_bytes())
    data[10] ^= 0xFF  # same size, other bytes
    damaged.write_bytes(bytes(data))
    missing.unlink()
    said: list[str] = []
    entries = load_manifest(tmp_path, said.append)
    assert list(entries) == [intact.name]
    assert not damaged.exists()
    assert said == [f"{damaged.name} does not match {MANIFEST}: downloading it again"]


def test_an_unreadable_manifest_means_nothing_is_trusted(tmp_path):
    make_wheel(tmp_path / "files", "a-1.0-py3-none-any.whl")
    (tmp_path / MANIFEST).write_text("{not json")
    said: list[str] = []
    assert load_manifest(tmp_path, said.append) == {}
    assert "damaged" in said[0]


# -- the server ---------------------------------------------------------------------------------


def log_lines(folder: Path) -> list[list[str]]:
    return [line.split() for line in (folder / "access.log").read_text().splitlines()]


def test_index_server_serves_the_index_and_files_and_logs_each_request(tmp_path):
    wheel = make_wheel(tmp_path / "files", "six-1.16.0-py2.py3-none-any.whl")
    publish(tmp_path)
    with IndexServer(tmp_path, "http://127.0.0.1:0/simple") as server:
        status, body, _ = get(f"{server.url}/")
        assert status == 200 and b'href="six/"' in body
        status, body, _ = get(f"{server.url}/six/")
        assert status == 200 and b"six-1.16.0-py2.py3-none-any.whl#sha256=" in body
        file_url = server.url.removesuffix("/simple") + f"/files/{wheel.name}"
        assert get(file_url)[:2] == (200, wheel.read_bytes())
        for private in ("/manifest.json", "/access.log", "/files/", "/simple/../manifest.json"):
            assert get(server.url.removesuffix("/simple") + private)[0] == 404, private
    lines = log_lines(tmp_path)
    # A line is written once its answer is sent, so answers on separate connections may log in any order.
    assert {line[3]: line[4] for line in lines} == {
        "/simple/": "200",
        "/simple/six/": "200",
        f"/files/{wheel.name}": "200",
        **dict.fromkeys(("/manifest.json", "/access.log", "/files/", "/simple/../manifest.json"), "404"),
    }
    assert len(lines) == 7
    timestamp, client, method, path, status, sent = next(line for line in lines if line[3].startswith("/files/six"))
    assert timestamp.endswith("Z") and client == "127.0.0.1"
    assert (method, path, status, sent) == ("GET", f"/files/{wheel.name}", "200", str(wheel.stat().st_size))


def test_index_server_maps_an_index_below_a_prefix(tmp_path):
    wheel = make_wheel(tmp_path / "files", "six-1.16.0-py2.py3-none-any.whl")
    publish(tmp_path)
    with IndexServer(tmp_path, "http://127.0.0.1:0/pypi/simple") as server:
        assert server.url.endswith("/pypi/simple")
        base = server.url.removesuffix("/simple")
        assert get(f"{server.url}/six/")[0] == 200
        assert get(f"{base}/files/{wheel.name}")[0] == 200
        assert get(server.url.removesuffix("/pypi/simple") + "/simple/")[0] == 404


def test_index_server_asks_for_the_credentials_it_was_given(tmp_path):
    make_wheel(tmp_path / "files", "six-1.16.0-py2.py3-none-any.whl")
    publish(tmp_path)
    with IndexServer(tmp_path, "http://127.0.0.1:0/simple", credentials=("ann", "s3cret")) as server:
        status, _, headers = get(f"{server.url}/")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert get(f"{server.url}/", auth=("ann", "wrong"))[0] == 401
        assert get(f"{server.url}/", auth=("ann", "s3cret"))[0] == 200
    assert [line[4] for line in log_lines(tmp_path)] == ["401", "401", "200"]


def test_index_server_takes_only_http_urls(tmp_path):
    with pytest.raises(MirrorError, match="http://"):
        IndexServer(tmp_path, "https://127.0.0.1:3141/simple")


def test_serve_mirror_serves_only_profiles_with_a_serve_folder(tmp_path, monkeypatch):
    assert serve_mirror(make_mirror(tmp_path, "http://127.0.0.1:3141/simple"), {}) is None
    port = free_port()
    mirror = make_mirror(tmp_path, f"http://127.0.0.1:{port}/simple", serve=True, credentials=True)
    make_wheel(tmp_path / "wheelhouse" / "files", "six-1.16.0-py2.py3-none-any.whl")
    publish(tmp_path / "wheelhouse")
    logins = {f"127.0.0.1:{port}": ("ann", "s3cret")}
    server = serve_mirror(mirror, logins)
    assert server is not None
    with server:
        assert get(f"{server.url}/")[0] == 401
        assert get(f"{server.url}/", auth=("ann", "s3cret"))[0] == 200
        # The admin (here: the server above) already serves the index: nothing more to start.
        assert serve_mirror(mirror, logins) is None


class NotAnIndex(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


def test_serve_mirror_names_a_port_taken_by_something_else(tmp_path):
    other = HTTPServer(("127.0.0.1", 0), NotAnIndex)
    thread = threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        mirror = make_mirror(tmp_path, f"http://127.0.0.1:{other.server_address[1]}/simple", serve=True)
        with pytest.raises(MirrorError, match="in use by a server that is no PyPI index") as caught:
            serve_mirror(mirror, {})
        assert caught.value.path == mirror.path
    finally:
        other.shutdown()
        other.server_close()


# -- sync, against a fake upstream index --------------------------------------------------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """An upstream index behind credentials, as a mirror profile names it; one per module, for
    the sync tests only read it. Its files are under `mirror.path.parent / "upstream"`.

    The project's root is bullseye, so the target is CPython 3.9 on glibc 2.31 while this host
    runs another Python: only a resolution for the target picks what is asserted below.
    """
    folder = tmp_path_factory.mktemp("upstream")
    files = folder / "upstream" / "files"
    make_wheel(files, f"{INSTALLER.replace('==', '-')}-py3-none-manylinux_2_17_x86_64.whl")
    make_wheel(
        files,
        "alpha-1.0-py3-none-any.whl",
        requires=("beta>=2", 'epsilon; python_version < "3.10"', 'zeta; python_version >= "3.10"'),
    )
    make_wheel(files, "beta-2.0-cp39-cp39-manylinux_2_17_x86_64.whl")  # the one for the target
    make_wheel(files, "beta-2.0-cp39-cp39-manylinux_2_34_x86_64.whl")  # needs a newer glibc
    make_wheel(files, "beta-2.0-cp311-cp311-manylinux_2_17_x86_64.whl")  # this host's
    make_wheel(files, "beta-2.0-cp312-cp312-manylinux_2_17_x86_64.whl")
    make_wheel(files, "beta-3.0-py3-none-any.whl", requires_python=">=3.10")
    make_wheel(files, "epsilon-1.0-py3-none-any.whl")
    make_wheel(files, "zeta-1.0-py3-none-any.whl")
    make_wheel(files, "fakebuildtool-1.0-py3-none-any.whl")
    make_sdist(files)
    publish(folder / "upstream")
    with (
        pytest.MonkeyPatch.context() as patch,
        IndexServer(folder / "upstream", "http://127.0.0.1:0/simple", credentials=("ann", "s3cret")) as server,
    ):
        patch.setenv(USER_VARIABLE, "ann")
        patch.setenv(PASSWORD_VARIABLE, "s3cret")
        yield make_mirror(folder, server.url, credentials=True)


@pytest.fixture(scope="module")
def bullseye_project(tmp_path_factory):
    """A root image with one pin and a child pinning a package published only as source."""
    project = ProjectFactory(tmp_path_factory.mktemp("bullseye") / "project")
    project.recipe(
        "root",
        """\
        root = "debian:bullseye"
        [python]
        requirements = "requirements.txt"
        """,
        {"requirements.txt": "alpha==1.0\n"},
    )
    project.recipe(
        "child",
        """\
        parent = "root"
        [python]
        requirements = "requirements.txt"
        """,
        {"requirements.txt": "srconly==1.0\n"},
    )
    return load_project(project.root)


WANTED = {
    f"{INSTALLER.replace('==', '-')}-py3-none-manylinux_2_17_x86_64.whl",
    "alpha-1.0-py3-none-any.whl",
    "beta-2.0-cp39-cp39-manylinux_2_17_x86_64.whl",
    "epsilon-1.0-py3-none-any.whl",
    "srconly-1.0.tar.gz",
    "fakebuildtool-1.0-py3-none-any.whl",
}


def inodes(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_ino for path in (folder / "files").iterdir()}


def test_sync_mirrors_exactly_what_the_images_install_on_their_target(tmp_path, upstream, bullseye_project):
    destination = tmp_path / "wheelhouse"
    said: list[str] = []
    result = sync(run_config(bullseye_project, None, upstream), ["child"], destination, say=said.append)

    assert {path.name for path in (destination / "files").iterdir()} == WANTED
    assert (result.files, result.new) == (len(WANTED), len(WANTED))
    assert result.total_bytes == sum(path.stat().st_size for path in (destination / "files").iterdir())
    assert result.packages == ("alpha", "beta", "epsilon", "fakebuildtool", "srconly", INSTALLER.split("==")[0])
    assert any("srconly==1.0 publishes no wheel for CPython 3.9" in line for line in said)
    manifest = json.loads((destination / MANIFEST).read_text())["files"]
    assert set(manifest) == WANTED
    for name, entry in manifest.items():
        assert entry["sha256"] == sha256(destination / "files" / name)
    page = Anchors((destination / "simple/beta/index.html").read_text()).links
    assert list(page) == ["beta-2.0-cp39-cp39-manylinux_2_17_x86_64.whl"]
    assert not list(destination.rglob("*.part"))


def test_the_next_sync_downloads_only_what_is_missing_or_damaged(tmp_path, upstream, bullseye_project):
    """It needs the same files, the source distribution's build requirements too (found by
    building it again), and keeps every intact file as it is."""
    destination, upstream_files = tmp_path / "wheelhouse", upstream.path.parent / "upstream" / "files"
    (destination / "files").mkdir(parents=True)
    for name in WANTED:  # the folder as the first sync leaves it
        shutil.copy(upstream_files / name, destination / "files" / name)
    publish(destination)
    before = inodes(destination)
    damaged, missing = destination / "files" / "alpha-1.0-py3-none-any.whl", "epsilon-1.0-py3-none-any.whl"
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (destination / "files" / missing).unlink()

    said: list[str] = []
    again = sync(run_config(bullseye_project, None, upstream), ["child"], destination, say=said.append)
    assert (again.files, again.new) == (len(WANTED), 2)
    assert again.packages == ("alpha", "beta", "epsilon", "fakebuildtool", "srconly", INSTALLER.split("==")[0])
    assert f"{damaged.name} does not match {MANIFEST}: downloading it again" in said
    assert sorted(line for line in said if line.startswith("downloading")) == [
        f"downloading {damaged.name}",
        f"downloading {missing}",
    ]
    for name in WANTED:
        assert sha256(destination / "files" / name) == sha256(upstream_files / name)
    kept = {name: inode for name, inode in inodes(destination).items() if name not in {damaged.name, missing}}
    assert kept == {name: inode for name, inode in before.items() if name in kept}
    assert set(kept) == WANTED - {damaged.name, missing}
    assert set(json.loads((destination / MANIFEST).read_text())["files"]) == WANTED


def test_sync_names_a_package_without_any_file_for_the_target(tmp_path, upstream, make_project):
    make_project.recipe(
        "root",
        """\
        root = "debian:bullseye"
        [python]
        requirements = "requirements.txt"
        """,
        {"requirements.txt": "zeta==1.0\nbeta==3.0\n"},
    )
    project = load_project(make_project.root)
    with pytest.raises(MirrorError, match=r"beta==3\.0") as caught:
        sync(run_config(project, None, upstream), ["root"], tmp_path / "wheelhouse", say=lambda _: None)
    assert "pypi.org/project/beta" in caught.value.hint


def test_sync_refuses_an_image_of_an_unknown_suite(tmp_path, make_project):
    make_project.recipe("odd", 'root = "debian:sid"\n')
    with pytest.raises(RecipeError, match="debian:sid"):
        sync(run_config(load_project(make_project.root), None, None), ["odd"], tmp_path / "out", say=print)


def test_unknown_package_is_an_error_naming_it(tmp_path, upstream, make_project):
    make_project.recipe(
        "root",
        'root = "debian:bookworm"\n[python]\nrequirements = "requirements.txt"\n',
        {"requirements.txt": "nosuchthing==1.0\n"},
    )
    with pytest.raises(MirrorError, match="nosuchthing"):
        sync(run_config(load_project(make_project.root), None, upstream), ["root"], tmp_path / "out", say=print)
