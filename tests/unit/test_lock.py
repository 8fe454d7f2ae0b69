"""Locks and dev packages: refs resolved in real git repositories (file URLs), the staleness
rule behind `lock --check`, and the lock file's schema."""

import functools
import http.server
import io
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from imagebuild.errors import LockError, RecipeError
from imagebuild.inputs.devpackages import archive, host_environment, resolve
from imagebuild.inputs.lockfile import ImageLock, read_lock, write_lock
from imagebuild.inputs.lockstate import input_digests, inputs_digest, lock_state
from imagebuild.model.mirror import Mirror, MirrorProfile
from imagebuild.model.project import load_project
from imagebuild.model.recipe_schema import DevPackageSpec
from imagebuild.plan import plan
from tests.cli import imagebuild
from tests.conftest import GIT_ENV, REPO, git


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository with main, a feature branch, a lightweight and an annotated tag."""
    path = tmp_path / "widgets"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "commit", "-q", "--allow-empty", "-m", "one")
    git(path, "tag", "v1")
    git(path, "checkout", "-q", "-b", "feature")
    git(path, "commit", "-q", "--allow-empty", "-m", "two")
    git(path, "tag", "-a", "v2", "-m", "annotated")
    git(path, "checkout", "-q", "main")
    return path


def _spec(repo: Path, ref: str) -> DevPackageSpec:
    return DevPackageSpec(name="widgets", url=repo.as_uri(), ref=ref)


def test_refs_resolve_to_commits(repo):
    main, feature = git(repo, "rev-parse", "main"), git(repo, "rev-parse", "feature")
    assert resolve(_spec(repo, "main"), GIT_ENV).commit == main
    assert resolve(_spec(repo, "feature"), GIT_ENV).commit == feature
    assert resolve(_spec(repo, "v1"), GIT_ENV).commit == main
    assert resolve(_spec(repo, "v2"), GIT_ENV).commit == feature  # the annotated tag's commit, not the tag object
    assert resolve(_spec(repo, "refs/heads/feature"), GIT_ENV).commit == feature
    assert resolve(_spec(repo, main), GIT_ENV).commit == main


def test_a_moved_branch_resolves_to_its_new_commit(repo):
    before = resolve(_spec(repo, "feature"), GIT_ENV)
    git(repo, "checkout", "-q", "feature")
    git(repo, "commit", "-q", "--allow-empty", "-m", "three")
    after = resolve(_spec(repo, "feature"), GIT_ENV)
    assert after.commit != before.commit and after.commit == git(repo, "rev-parse", "HEAD")


def test_a_missing_ref_names_repository_and_ref(repo):
    with pytest.raises(LockError) as caught:
        resolve(_spec(repo, "no-such-branch"), GIT_ENV)
    assert "no branch or tag 'no-such-branch'" in caught.value.message
    assert repo.as_uri() in caught.value.message
    assert "feature, main" in caught.value.hint


def test_an_unreachable_repository_names_repository_and_ref(tmp_path):
    gone = (tmp_path / "gone").as_uri()
    with pytest.raises(LockError) as caught:
        resolve(DevPackageSpec(name="widgets", url=gone, ref="main"), GIT_ENV)
    assert gone in caught.value.message and "ref 'main'" in caught.value.message
    assert "[git] rewrite" in caught.value.hint


def test_the_mirror_profile_git_rewrite_reaches_git(repo, tmp_path):
    """The recipe names the upstream host; the profile's [git] rewrite sends git to the mirror
    (here git's dumb HTTP protocol served on loopback)."""
    served = tmp_path / "served"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(served / "widgets.git")], check=True)
    git(served / "widgets.git", "update-server-info")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        profile = MirrorProfile(git={"https://git.example.org": f"http://127.0.0.1:{httpd.server_address[1]}"})
        env = {**host_environment(os.environ, Mirror(name="site", path=tmp_path / "site.toml", spec=profile), {}, None), **GIT_ENV}
        spec = DevPackageSpec(name="widgets", url="https://git.example.org/widgets.git", ref="feature")
        assert resolve(spec, env).commit == git(repo, "rev-parse", "feature")
        httpd.shutdown()


@pytest.mark.parametrize("ref", ["", "-upload-pack=evil", "two words"])
def test_dev_package_refs_must_be_refs(ref):
    with pytest.raises(ValueError, match="branch, tag or commit"):
        DevPackageSpec(name="x", url="https://example.org/x.git", ref=ref)


def test_lock_state_follows_the_recipe(make_project):
    folder = make_project.recipe(
        "child", 'parent = "base"\n[python]\nrequirements = "requirements.txt"\n', {"requirements.txt": "six==1.16.0\n"}
    )
    project = load_project(make_project.root)
    item = plan(project, ["child"])[-1]
    assert lock_state(item).state == "missing"
    lock = ImageLock(inputs=inputs_digest(item), python="3.11", platform="x86_64-manylinux_2_36", requirements="six==1.16.0\n")
    assert write_lock(item, lock) is True
    assert write_lock(item, lock) is False  # nothing changed: the file is not touched
    assert read_lock(item.recipe) == lock.model_copy(update={"pins_digest": lock.content_digest()})
    assert lock_state(item).state == "fresh"
    lock_file = folder / "image.lock"
    written = lock_file.read_text()
    lock_file.write_text(written.replace("six==1.16.0", "six==1.17.0"))  # a pin edited by hand
    edited = lock_state(item)
    assert (edited.state, edited.changed) == ("stale", ("image.lock itself (its pins or commits were edited by hand)",))
    lock_file.write_text(written)

    (folder / "requirements.txt").write_text("six==1.17.0\n")
    assert lock_state(plan(load_project(make_project.root), ["child"])[-1]).state == "stale"
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    assert lock_state(plan(load_project(make_project.root), ["child"])[-1]).state == "fresh"

    base_lock = make_project.root / "images/base/image.lock"
    base_lock.write_text(base_lock.read_text().replace("jupyterhub==", "jupyterhub== "))  # the parent was locked again
    assert lock_state(plan(load_project(make_project.root), ["child"])[-1]).state == "stale"


def test_a_stale_lock_names_the_input_that_changed(make_project):
    """`lock --check` said only 'stale'; it names the requirements file, the recipe field or the parent lock."""
    folder = make_project.recipe(
        "child", 'parent = "base"\n[python]\nrequirements = "requirements.txt"\n', {"requirements.txt": "six==1.16.0\n"}
    )
    item = plan(load_project(make_project.root), ["child"])[-1]
    write_lock(item, ImageLock(inputs=inputs_digest(item), input_digests=input_digests(item), requirements="six==1.16.0\n"))

    (folder / "requirements.txt").write_text("six==1.17.0\n")
    state = lock_state(plan(load_project(make_project.root), ["child"])[-1])
    assert state.state == "stale"
    assert state.explain() == "stale: the requirements file requirements.txt changed"
    (folder / "requirements.txt").write_text("six==1.16.0\n")

    base_lock = make_project.root / "images/base/image.lock"
    base_lock.write_text(base_lock.read_text().replace("jupyterhub==", "jupyterhub== "))
    state = lock_state(plan(load_project(make_project.root), ["child"])[-1])
    assert state.changed == ("the lock of parent 'base' (base/image.lock)",)

    result = imagebuild("lock", "--check", "child", cwd=make_project.root)
    assert result.returncode == 8
    assert "child: stale: the lock of parent 'base' (base/image.lock) changed" in result.stdout


def test_a_lock_without_its_inputs_one_by_one_is_stale_without_guessing(make_project):
    folder = make_project.recipe("child", 'parent = "base"\n[python]\nrequirements = "r.txt"\n', {"r.txt": "six\n"})
    item = plan(load_project(make_project.root), ["child"])[-1]
    write_lock(item, ImageLock(inputs=inputs_digest(item)))  # as imagebuild wrote locks before
    (folder / "r.txt").write_text("six==1.17.0\n")
    state = lock_state(plan(load_project(make_project.root), ["child"])[-1])
    assert state.state == "stale" and state.changed == ()
    assert "predates" in state.explain()


def test_an_image_with_nothing_to_lock_needs_no_lock(make_project):
    make_project.recipe("plain", 'parent = "base"\n')
    item = plan(load_project(make_project.root), ["plain"])[-1]
    assert lock_state(item).state == "none"


def test_lock_check_exits_8_naming_the_fix(make_project):
    make_project.recipe(
        "child", 'parent = "base"\n[python]\nrequirements = "requirements.txt"\n', {"requirements.txt": "six==1.16.0\n"}
    )
    result = imagebuild("lock", "--check", cwd=make_project.root)
    assert result.returncode == 8
    assert "base: fresh" in result.stdout
    assert "child: missing (run 'imagebuild lock child' and commit image.lock)" in result.stdout


def test_a_hand_edited_lock_is_a_recipe_error(make_project):
    folder = make_project.recipe("child", 'parent = "base"\n[python]\nrequirements = "r.txt"\n', {"r.txt": "six\n"})
    (folder / "image.lock").write_text('version = 2\ninputs = "x"\npython = "3.11"\nplatform = "p"\n')
    with pytest.raises(RecipeError) as caught:
        read_lock(load_project(make_project.root).recipes["child"])
    assert "version" in caught.value.message and str(caught.value.path).endswith("image.lock")


def test_the_bundled_locks_are_fresh():
    """CI's guard: a recipe changed without `imagebuild lock` fails here, as `lock --check` would."""
    project = load_project(REPO)
    states = {item.name: lock_state(item).state for item in plan(project, [], everything=True)}
    assert set(states.values()) <= {"fresh", "none"}, states


def test_a_checkout_archives_the_locked_commit_and_works_offline_once_fetched(repo, tmp_path):
    (repo / "app.ipynb").write_text("{}")
    git(repo, "add", "app.ipynb")
    git(repo, "commit", "-q", "-m", "an app")
    package = resolve(_spec(repo, "main"), GIT_ENV)
    (repo / "app.ipynb").write_text('{"later": true}')  # a later commit is not what the lock names
    git(repo, "commit", "-q", "-am", "later")
    cache = tmp_path / "cache"
    with pytest.raises(LockError, match="not on this host") as caught:
        archive(package, cache, GIT_ENV, offline=True)
    assert "imagebuild assets fetch" in caught.value.hint
    fetched = archive(package, cache, GIT_ENV, offline=False)
    offline = archive(package, cache, GIT_ENV, offline=True)
    with tarfile.open(fileobj=io.BytesIO(offline)) as tar:
        assert tar.extractfile("app.ipynb").read() == b"{}"  # type: ignore[union-attr]
    assert fetched == offline
