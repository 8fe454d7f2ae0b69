"""Tags and the pure parts of publishing: which tags an image gets, version commands inherited
from parents, errors hidden in a push stream, retries, and the publish record."""

import pytest

from imagebuild.build.records import PushFailure, pushed_digest
from imagebuild.errors import BuildError, PublishError
from imagebuild.model.project import load_project
from imagebuild.plan import plan
from imagebuild.publish import push as publish
from imagebuild.publish.tags import image_tags, parse_versions, version_commands, version_script

HASH = "ab" * 32


def test_tags_are_date_content_versions_and_one_moving_tag():
    tags = image_tags(created="2026-11-22T03:04:05+00:00", content_hash=HASH, versions={"python": "3.11", "aiida-core": "2.9.4"})
    assert tags.immutable == ("2026-11-22", "sha-abababababab", "aiida-core-2.9.4", "python-3.11")
    assert tags.moving == ("latest",)
    assert image_tags(created="2026-11-22T00:00:00", content_hash=HASH, versions={}, moving="edge").moving == ("edge",)
    with pytest.raises(ValueError):
        image_tags(created="2026-11-22", content_hash=HASH, versions={}, moving="stable")


def test_children_inherit_and_override_version_commands(make_project):
    make_project.recipe("child", 'parent = "base"\n[tags]\npackages = ["aiida-core"]\ncommands = { python = "echo 9.9" }\n')
    item = plan(load_project(make_project.root), ["child"])[-1]
    commands = version_commands(item)
    assert set(commands) == {"jupyterlab", "python", "aiida-core"}  # base declares jupyterlab and python
    assert commands["python"] == "echo 9.9"
    assert "printf '%s\\t%s\\n' aiida-core" in version_script(commands)


def test_versions_are_made_safe_for_tags_and_an_empty_one_is_an_error():
    commands = {"python": "x", "tool": "y"}
    assert parse_versions("python\t3.11\ntool\t1.0+local/x\n", commands, "img") == {"python": "3.11", "tool": "1.0-local-x"}
    with pytest.raises(BuildError, match="for tag 'tool' printed ''"):
        parse_versions("python\t3.11\ntool\t\n", commands, "img")
    with pytest.raises(BuildError, match="not a version"):
        parse_versions("python\t3.11\ntool\tbash: tool: command not found\n", commands, "img")


def test_a_failure_inside_a_successful_push_stream_is_caught():
    ok = [{"status": "Preparing", "id": "abc"}, {"status": "latest: digest: sha256:1 size: 1"}, {"aux": {"Digest": "sha256:1"}}]
    assert pushed_digest(iter(ok)) == "sha256:1"
    hidden = [{"status": "Pushing"}, {"errorDetail": {"message": "blob upload unknown"}, "error": "blob upload unknown"}]
    with pytest.raises(PushFailure, match="blob upload unknown"):
        pushed_digest(iter(hidden))
    with pytest.raises(PushFailure, match="without reporting a digest"):
        pushed_digest(iter([{"status": "Pushed"}]))


class _FlakyEngine:
    """Fails the first `failures` pushes with `message`, then succeeds."""

    def __init__(self, failures: int, message: str) -> None:
        self.failures, self.message, self.calls = failures, message, 0

    def push(self, repository: str, tag: str, credentials: object) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise PushFailure(self.message)
        return "sha256:done"


def test_transient_push_failures_are_retried_with_backoff(monkeypatch):
    monkeypatch.setattr(publish, "BACKOFF_SECONDS", 0.0)
    engine = _FlakyEngine(2, "connection reset by peer")
    said: list[str] = []
    assert publish._push_with_retries(engine, "r/x", "t", None, said.append) == "sha256:done"  # type: ignore[arg-type]
    assert engine.calls == 3 and len(said) == 2


def test_permanent_push_failures_are_not_retried(monkeypatch):
    monkeypatch.setattr(publish, "BACKOFF_SECONDS", 0.0)
    engine = _FlakyEngine(5, "unauthorized: authentication required")
    with pytest.raises(PublishError, match="unauthorized"):
        publish._push_with_retries(engine, "r/x", "t", None, print)  # type: ignore[arg-type]
    assert engine.calls == 1


def test_the_publish_record_grows_atomically(make_project):
    project = load_project(make_project.root)
    result = publish.PublishResult("base", "127.0.0.1:5000", "imagebuild/base", "sha256:i", HASH, "sha256:d")
    publish.record(project, result)
    publish.record(project, result)
    entries = publish.read_record(project, "base")
    assert len(entries) == 2 and entries[0]["digest"] == "sha256:d" and "published_at" in entries[0]
    assert not list(publish.record_path(project, "base").parent.glob("*.tmp"))
