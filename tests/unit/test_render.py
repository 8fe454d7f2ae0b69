import io
import tarfile

from imagebuild.build.context import assemble, content_hash
from imagebuild.model.project import load_project
from imagebuild.pipeline import prepare
from imagebuild.plan import plan
from imagebuild.reuse import content_ref
from tests.conftest import REPO, offline_fetcher, write_notebook

CHILD = """
parent = "base"
post_build = "postBuild"
[os]
packages = ["zip"]
[python]
requirements = "requirements.txt"
[env]
GREETING = "hello world"
[[files]]
src = "motd"
dest = "/etc/motd"
[labels]
"org.example.team" = "materials"
"""
CHILD_FILES = {
    "requirements.txt": "six==1.16.0\n",
    "motd": "welcome\n",
    "postBuild": "#!/bin/bash\necho done\n",
    "before-notebook.d/20-hello.sh": "#!/bin/bash\necho hello\n",
}


def _contexts(root, ca=None):
    project = load_project(root)
    return project, prepare(offline_fetcher(project, ca), plan(project, ["child"]))


def test_rendering_is_deterministic(make_project):
    make_project.recipe("child", CHILD, CHILD_FILES)
    _, first = _contexts(make_project.root)
    _, second = _contexts(make_project.root)
    assert [c.rendered.dockerfile for c in first] == [c.rendered.dockerfile for c in second]
    assert [c.tar for c in first] == [c.tar for c in second]
    assert [c.content_hash for c in first] == [c.content_hash for c in second]


def test_layers_are_ordered_for_cache_reuse(make_project):
    make_project.recipe("child", CHILD, CHILD_FILES)
    _, contexts = _contexts(make_project.root)
    dockerfile = contexts[-1].rendered.dockerfile
    marks = [
        "apt-get install -y --no-install-recommends zip",
        "uv pip install",
        "COPY recipe/motd /etc/motd",
        "/usr/local/bin/before-notebook.d/20-hello.sh",
        "with-build-env /tmp/imagebuild/postBuild",
        'ENV GREETING="hello world"',
        'LABEL "org.example.team"="materials"',
    ]
    positions = [dockerfile.index(mark) for mark in marks]
    assert positions == sorted(positions), dockerfile


def test_child_builds_from_parent_content_tag(make_project):
    make_project.recipe("child", CHILD, CHILD_FILES)
    project, (base, child) = _contexts(make_project.root)
    assert base.rendered.dockerfile.startswith("# Rendered by imagebuild")
    assert "FROM debian:bookworm\n" in base.rendered.dockerfile
    assert f"FROM {content_ref(project, 'base', base.content_hash)}\n" in child.rendered.dockerfile


def test_context_holds_only_what_the_dockerfile_copies(make_project):
    make_project.recipe("child", CHILD, {**CHILD_FILES, "unrelated.txt": "not copied\n"})
    _, contexts = _contexts(make_project.root)
    with tarfile.open(fileobj=io.BytesIO(contexts[-1].tar)) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert sorted(members) == [
        "Dockerfile",
        "recipe/before-notebook.d/20-hello.sh",
        "recipe/motd",
        "recipe/postBuild",
        "recipe/requirements.txt",
    ]
    assert members["recipe/before-notebook.d/20-hello.sh"].mode == 0o755
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, 0)}


def test_content_hash_covers_files_notebooks_and_parent(make_project):
    folder = make_project.recipe("child", CHILD, CHILD_FILES)
    _, (base, child) = _contexts(make_project.root)
    (folder / "motd").write_text("changed\n")
    _, (base2, child2) = _contexts(make_project.root)
    assert base2.content_hash == base.content_hash and child2.content_hash != child.content_hash
    write_notebook(folder / "smoke" / "check.ipynb", "assert True")
    _, (_, child3) = _contexts(make_project.root)
    assert child3.content_hash != child2.content_hash
    (make_project.root / "images/base/requirements.txt").write_text("jupyterhub==5.5.4\n")
    _, (base4, _child4) = _contexts(make_project.root)
    assert base4.content_hash == base.content_hash  # a locked image installs its lock (stale now, with a warning)
    (make_project.root / "images/base/image.lock").unlink()
    _, (base5, child5) = _contexts(make_project.root)
    assert base5.content_hash != base.content_hash and child5.content_hash != child3.content_hash


def test_content_hash_changes_with_file_mode(make_project):
    make_project.recipe("child", CHILD, CHILD_FILES)
    _, (_, child) = _contexts(make_project.root)
    rendered = child.rendered
    bumped = [type(f)(f.arcname, f.data, 0o600) if f.arcname == "recipe/motd" else f for f in rendered.files]
    assert content_hash(type(rendered)(rendered.plan, rendered.base_ref, rendered.dockerfile, tuple(bumped))) != (
        child.content_hash
    )


def test_ca_stays_out_of_context_and_hash_by_default(make_project):
    make_project.recipe("child", CHILD, CHILD_FILES)
    _, without = _contexts(make_project.root)
    _, with_ca = _contexts(make_project.root, ca=b"-----BEGIN CERTIFICATE-----\nTEST\n")
    assert [c.tar for c in without] == [c.tar for c in with_ca]
    assert b"TEST" not in with_ca[-1].tar
    assert "IMAGEBUILD_BUILD_ENV" in with_ca[0].rendered.dockerfile


def test_recipe_can_keep_the_ca(make_project):
    make_project.recipe("child", 'parent = "base"\n[ca]\nkeep = true\n')
    _, (_, child) = _contexts(make_project.root, ca=b"PEM-BYTES")
    assert "COPY imagebuild/ca-bundle.pem /usr/local/share/imagebuild/ca-bundle.pem" in child.rendered.dockerfile
    assert "SSL_CERT_FILE=/usr/local/share/imagebuild/ca-bundle.pem" in child.rendered.dockerfile
    assert b"PEM-BYTES" in child.tar
    _, (_, other) = _contexts(make_project.root, ca=b"OTHER-PEM")
    assert other.content_hash != child.content_hash


def test_bundled_images_render(tmp_path):
    project = load_project(REPO)
    contexts = prepare(offline_fetcher(project), plan(project, [], everything=True))
    by_name = {c.rendered.plan.name: c for c in contexts}
    assert "useradd --create-home --shell /bin/bash --uid 1000 --gid 100" in by_name["base"].rendered.dockerfile
    assert 'ENTRYPOINT ["tini", "-g", "--", "start.sh"]' in by_name["base"].rendered.dockerfile
    assert 'CMD ["start-notebook.py"]' in by_name["base"].rendered.dockerfile
    for child in ("aiidalab", "pyiron"):
        assert "useradd" not in by_name[child].rendered.dockerfile
        assert assemble(by_name[child].rendered).tar == by_name[child].tar


def test_a_root_image_takes_debian_updates_up_to_its_lock(make_project):
    """The lock's package indexes are in the OS layer's command: a new index rebuilds that layer
    (Docker's cache key is the command), with the security suite and `apt-get upgrade`."""
    lock = make_project.root / "images" / "base" / "image.lock"
    project = load_project(make_project.root)
    (base,) = prepare(offline_fetcher(project), plan(project, ["base"]))
    assert "debian-indexes bookworm=" in base.rendered.dockerfile
    assert "deb http://deb.debian.org/debian-security bookworm-security main" in base.rendered.dockerfile
    assert "with-build-env apt-get upgrade -y" in base.rendered.dockerfile
    child_lines = [line for line in _contexts_with_child(make_project)[-1].rendered.dockerfile.splitlines() if "apt-get" in line]
    assert child_lines and not any("upgrade" in line for line in child_lines)  # a child builds on its parent's upgrade
    text = lock.read_text()
    lock.write_text(text.replace(text[text.index('bookworm-security = "') + 21 :][:64], "0" * 64))
    (moved,) = prepare(offline_fetcher(project), plan(project, ["base"]))
    assert "bookworm-security=000000000000" in moved.rendered.dockerfile
    assert moved.content_hash != base.content_hash
    lock.write_text(text[: text.index("\n[debian]")] + "\n")  # a lock from before Debian was tracked
    (untracked,) = prepare(offline_fetcher(project), plan(project, ["base"]))
    assert "upgrade" not in untracked.rendered.dockerfile and "debian-indexes" not in untracked.rendered.dockerfile


def _contexts_with_child(make_project):
    make_project.recipe("child", CHILD, CHILD_FILES)
    return _contexts(make_project.root)[1]
