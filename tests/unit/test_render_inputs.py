"""Rendering offline inputs: assets unpacked into one COPY, start hooks for per-user installs,
provenance labels, locked installs with hash checking, and the errors of missing inputs."""

import hashlib
import io
import tarfile

import pytest

from imagebuild.build.render import render
from imagebuild.errors import AssetError, LockError
from imagebuild.inputs.assets import AssetCache
from imagebuild.inputs.gather import ImageInputs
from imagebuild.inputs.lockfile import ImageLock, write_lock
from imagebuild.inputs.lockstate import inputs_digest
from imagebuild.model.project import load_project
from imagebuild.pipeline import prepare
from imagebuild.plan import plan
from tests.conftest import offline_fetcher, write_pseudo_archive

INSTALL = 'aiida-pseudo install family "$ASSET_PATH" TEST -P pseudo.upf'


@pytest.fixture
def cache(tmp_path, monkeypatch) -> AssetCache:
    monkeypatch.setenv("IMAGEBUILD_CACHE", str(tmp_path / "cache"))
    return AssetCache(tmp_path / "cache" / "assets")


@pytest.fixture
def pseudos(tmp_path) -> tuple:
    archive = tmp_path / "pseudos.tar.gz"
    return archive, write_pseudo_archive(archive)


def _recipe(make_project, sha256: str, *, optional: bool = False, extra: str = "") -> None:
    make_project.recipe(
        "child",
        f"""\
        parent = "base"
        [[assets]]
        name = "pseudos"
        urls = ["https://archive.example.org/pseudos.tar.gz"]
        sha256 = "{sha256}"
        dest = "/opt/pseudos"
        unpack = true
        install = '{INSTALL}'
        install_at = "start"
        optional = {str(optional).lower()}
        {extra}
        """,
    )


def _child(make_project):
    project = load_project(make_project.root)
    return prepare(offline_fetcher(project), plan(project, ["child"]))[-1]


def test_an_unpacked_asset_is_one_copy_with_a_start_hook_and_a_label(make_project, cache, pseudos):
    archive, sha256 = pseudos
    _recipe(make_project, sha256)
    cache.add(archive, sha256)
    context = _child(make_project)
    dockerfile = context.rendered.dockerfile
    names = {item.arcname: item for item in context.rendered.files}
    assert {"assets/pseudos/Si.pbe-test.UPF", "assets/pseudos/O.pbe-test.UPF"} <= names.keys()
    assert "pseudos.tar.gz" not in " ".join(names)  # unpacked on the host, the archive stays out
    assert "COPY assets/pseudos/ /opt/pseudos/" in dockerfile
    hook = names["imagebuild/hooks/90-asset-pseudos.sh"]
    assert hook.mode == 0o755
    assert "export ASSET_PATH=/opt/pseudos" in hook.data.decode()
    assert "aiida-pseudo install family" in hook.data.decode()
    assert "before-notebook.d/90-asset-pseudos.sh" in dockerfile
    assert f'"io.imagebuild.asset.pseudos"="{sha256}"' in dockerfile


def test_a_build_time_install_runs_as_the_user_with_asset_path(make_project, cache, tmp_path):
    data = tmp_path / "table.csv"
    data.write_text("a,b\n1,2\n")
    sha256 = hashlib.sha256(data.read_bytes()).hexdigest()
    make_project.recipe(
        "child",
        f"""\
        parent = "base"
        [[assets]]
        name = "table"
        filename = "table.csv"
        sha256 = "{sha256}"
        dest = "/opt/data"
        install = "wc -l $ASSET_PATH > /tmp/lines"
        """,
    )
    cache.add(data, sha256)
    dockerfile = _child(make_project).rendered.dockerfile
    assert "COPY assets/table/ /opt/data/" in dockerfile
    assert " ASSET_PATH=/opt/data/table.csv with-build-env bash -c 'wc -l $ASSET_PATH > /tmp/lines'" in dockerfile


def test_the_content_hash_follows_the_asset(make_project, cache, pseudos, tmp_path):
    archive, sha256 = pseudos
    _recipe(make_project, sha256)
    cache.add(archive, sha256)
    first = _child(make_project).content_hash
    assert _child(make_project).content_hash == first
    other = tmp_path / "other.tar"
    other.write_bytes(archive.read_bytes())
    with tarfile.open(other, "w") as tar:  # another library: one more element
        info = tarfile.TarInfo("Fe.pbe-test.UPF")
        body = b'<PP_HEADER element="Fe" z_valence="8.0" />'
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    other_sha = hashlib.sha256(other.read_bytes()).hexdigest()
    cache.add(other, other_sha)
    _recipe(make_project, other_sha, extra='filename = "other.tar"')
    assert _child(make_project).content_hash != first


def test_a_missing_asset_offline_fails_before_anything_naming_the_add_command(make_project, cache, pseudos):
    _, sha256 = pseudos
    _recipe(make_project, sha256)
    with pytest.raises(AssetError) as caught:
        _child(make_project)
    assert "asset 'pseudos' (pseudos.tar.gz) is not in the asset cache" in caught.value.message
    assert "imagebuild assets add pseudos.tar.gz" in caught.value.hint


def test_every_missing_asset_is_named_at_once(make_project, cache, pseudos):
    _, sha256 = pseudos
    _recipe(make_project, sha256)
    make_project.recipe("second", f'parent = "child"\n[[assets]]\nname = "more"\nfilename = "more.bin"\nsha256 = "{"2" * 64}"\n')
    project = load_project(make_project.root)
    with pytest.raises(AssetError) as caught:
        prepare(offline_fetcher(project), plan(project, ["second"]))
    assert "2 inputs are missing" in caught.value.message
    assert "imagebuild assets add pseudos.tar.gz" in caught.value.message
    assert "imagebuild assets add more.bin" in caught.value.message


def test_an_optional_asset_is_left_out_with_a_warning(make_project, cache, pseudos, capsys):
    _, sha256 = pseudos
    _recipe(make_project, sha256, optional=True)
    dockerfile = _child(make_project).rendered.dockerfile
    assert "assets/pseudos" not in dockerfile and "io.imagebuild.asset.pseudos" not in dockerfile
    assert "without optional asset 'pseudos'" in capsys.readouterr().out


def test_a_file_that_is_no_archive_cannot_be_unpacked(make_project, cache, tmp_path):
    fake = tmp_path / "fake.tar.gz"
    fake.write_bytes(b"not an archive")
    sha256 = hashlib.sha256(fake.read_bytes()).hexdigest()
    _recipe(make_project, sha256)
    cache.add(fake, sha256)
    with pytest.raises(AssetError, match="cannot be unpacked") as caught:
        _child(make_project)
    assert "unpack = false" in caught.value.hint


def test_a_locked_image_installs_its_lock_with_hashes_and_its_wheels(make_project, cache, tmp_path):
    wheel = tmp_path / "probe-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK wheel bytes")
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    folder = make_project.recipe(
        "child",
        f"""\
        parent = "base"
        [python]
        requirements = "requirements.txt"
        [[assets]]
        name = "probe"
        filename = "probe-1.0-py3-none-any.whl"
        sha256 = "{sha256}"
        wheel = true
        """,
        {"requirements.txt": "six==1.16.0\n"},
    )
    cache.add(wheel, sha256)
    project = load_project(make_project.root)
    item = plan(project, ["child"])[-1]
    pins = "six==1.16.0 \\\n    --hash=sha256:" + "a" * 64 + "\n"
    write_lock(item, ImageLock(inputs=inputs_digest(item), python="3.11", platform="x86_64-manylinux_2_36", requirements=pins))
    context = prepare(offline_fetcher(project), plan(project, ["child"]))[-1]
    dockerfile = context.rendered.dockerfile
    files = {item.arcname: item for item in context.rendered.files}
    assert files["imagebuild/requirements.lock"].data.decode() == pins
    assert "--require-hashes -r /opt/imagebuild/child/requirements.txt" in dockerfile
    assert "COPY imagebuild/wheels/ /opt/imagebuild/child/wheels/" in dockerfile
    assert "--no-deps /opt/imagebuild/child/wheels/probe-1.0-py3-none-any.whl" in dockerfile
    assert files["imagebuild/wheels/probe-1.0-py3-none-any.whl"].data == b"PK wheel bytes"
    assert (folder / "requirements.txt").read_text() == "six==1.16.0\n"


def test_dev_packages_need_a_lock(make_project, cache):
    make_project.recipe(
        "child",
        """\
        parent = "base"
        [[dev_packages]]
        name = "widgets"
        url = "https://git.example.org/widgets.git"
        ref = "main"
        """,
    )
    with pytest.raises(LockError, match="no locked commit") as caught:
        _child(make_project)
    assert "imagebuild lock child" in caught.value.hint


def test_a_dev_package_checkout_is_copied_owned_by_the_user_without_links(make_project, cache):
    """`checkout` puts the repository's files at the locked commit where the recipe says, as the
    user's (apps write beside their notebooks); links, which a context cannot hold, are left out."""
    make_project.recipe("child", 'parent = "base"\n')
    project = load_project(make_project.root)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("app.ipynb", b"{}"), ("logos/logo.png", b"PNG")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("docs/logo.png")
        link.type, link.linkname = tarfile.SYMTYPE, "../logos/logo.png"
        archive.addfile(link)
    inputs = ImageInputs(checkouts=(("/opt/aiidalab/apps/hello", buffer.getvalue()),))
    rendered = render(plan(project, ["child"])[-1], "imagebuild/base:sha-0", inputs=inputs)
    files = {item.arcname: item.data for item in rendered.files if item.arcname.startswith("imagebuild/checkouts/")}
    assert files == {"imagebuild/checkouts/0/app.ipynb": b"{}", "imagebuild/checkouts/0/logos/logo.png": b"PNG"}
    assert "COPY --chown=1000:100 imagebuild/checkouts/0/ /opt/aiidalab/apps/hello/" in rendered.dockerfile
    assert "RUN fix-permissions /opt/aiidalab/apps/hello" in rendered.dockerfile
