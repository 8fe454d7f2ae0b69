"""Publishing end to end, all on loopback: Debian's docker-registry as the registry; aiidalab and
pyiron pushed under all their tags; `tags` reads them back; manifests and `diff` from the
registry alone. A registry killed in the middle of a push fails the command clearly, leaves the
publish record alone, and a rerun completes. (The hub that offers them: test_hub_journey.py.)"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from imagebuild.model.project import load_project
from imagebuild.publish import registry as registry_module
from imagebuild.publish.push import record_path
from tests.conftest import REPO, free_port
from tests.integration.conftest import SCIENCE

pytestmark = pytest.mark.engine


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["imagebuild", *args], cwd=cwd, capture_output=True, text=True, timeout=1800)


def test_push_publishes_every_tag_and_tags_reads_them_back(built, registry, published):
    for name in SCIENCE:
        result = published[name]
        tags = {t["tag"] for t in result["tags"]}
        content_tag = f"sha-{built[name].content_hash[:12]}"
        assert {content_tag, "latest", "python-3.11"} <= tags
        assert any(t.startswith("aiida-core-" if name == "aiidalab" else "pyiron_atomistics-") for t in tags)
        assert result["image_id"] == built[name].image_id
        listed = _cli("tags", name, "--registry", registry, "--json")
        assert listed.returncode == 0, listed.stderr
        rows = {row["tag"]: row for row in json.loads(listed.stdout)}
        assert tags <= rows.keys()
        assert {rows[tag]["digest"] for tag in tags} == {result["digest"]}
        assert rows[content_tag]["content_hash"] == built[name].content_hash
        record = json.loads(record_path(load_project(REPO), name).read_text())
        assert record[-1]["digest"] == result["digest"] and record[-1]["registry"] == registry


def test_manifests_record_what_was_pushed_and_diff_reads_the_registry_alone(built, registry, published):
    for name in SCIENCE:
        document = json.loads((REPO / "build" / name / "manifest.json").read_text())
        assert document["digest"] == published[name]["digest"] and document["registry"] == registry
        assert set(document["tags"]) == {t["tag"] for t in published[name]["tags"] if t["action"] != "held"}
        assert document["content_hash"] == built[name].content_hash and document["parent"].startswith("imagebuild/base:sha-")
        if built[name].smoke is not None:  # smoke-tested in this session (a warm engine may have done it before)
            assert [run["notebook"] for run in document["smoke"]] == [n.notebook for n in built[name].smoke.notebooks]
        assert "python3.11" in document["os_packages"] and "jupyterlab" in document["python_packages"]
        text = (REPO / "build" / name / "manifest.md").read_text()
        assert text.startswith(f"# {name}: ")
        assert f"| published | {registry} {published[name]['digest']} |" in text and "## Python packages" in text
    tag = {name: f"sha-{built[name].content_hash[:12]}" for name in SCIENCE}
    compared = _cli("diff", f"aiidalab:{tag['aiidalab']}", f"pyiron:{tag['pyiron']}", "--registry", registry, "--json")
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    os_changes = {c["name"]: c["kind"] for c in result["packages"]["os_packages"]}
    python_changes = {c["name"]: c["kind"] for c in result["packages"]["python_packages"]}
    assert os_changes["lammps"] == "added" and os_changes["rabbitmq-server"] == "removed"
    assert python_changes["pyiron-atomistics"] == "added" and python_changes["aiida-core"] == "removed"
    assert "jupyterlab" not in python_changes  # both carry base's pin
    assert result["size_before"] > 0 and result["size_after"] > 0
    shown = _cli("diff", f"aiidalab:{tag['aiidalab']}", f"pyiron:{tag['pyiron']}", "--registry", registry)
    assert shown.returncode == 0 and "pyiron-atomistics" in shown.stdout
    missing = _cli("diff", "aiidalab:no-such-tag", f"pyiron:{tag['pyiron']}", "--registry", registry)
    assert missing.returncode == 9 and "has no tag 'no-such-tag'" in missing.stderr


def test_a_second_push_moves_only_the_moving_tag(registry, published):
    again = _cli("push", "pyiron", "--registry", registry, "--json")
    assert again.returncode == 0, again.stderr
    actions = {t["tag"]: t["action"] for t in json.loads(again.stdout)[0]["tags"]}
    assert actions.pop("latest") == "pushed"
    assert set(actions.values()) == {"present"}


def test_a_registry_killed_mid_push_fails_clearly_and_a_rerun_completes(built, tmp_path):
    storage = tmp_path / "storage"
    host = f"127.0.0.1:{free_port()}"
    pid = registry_module.up(host, print, storage=storage)
    record = record_path(load_project(REPO), "pyiron")
    before = record.read_bytes() if record.exists() else None
    push = subprocess.Popen(
        ["imagebuild", "push", "pyiron", "--registry", host], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    uploads = storage / "docker" / "registry" / "v2" / "repositories" / "imagebuild" / "pyiron" / "_uploads"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (uploads.is_dir() and any(uploads.iterdir())):
        time.sleep(0.05)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the registry dies with blobs half uploaded
    _, stderr = push.communicate(timeout=600)
    assert push.returncode == 9, stderr
    assert "pushing" in stderr and "failed" in stderr
    assert "pushed: (none)" in stderr and "not pushed:" in stderr and "latest" in stderr
    assert "nothing was recorded" in stderr
    assert (record.read_bytes() if record.exists() else None) == before

    pid = registry_module.up(host, print, storage=storage)
    try:
        rerun = _cli("push", "pyiron", "--registry", host, "--json")
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert {t["action"] for t in json.loads(rerun.stdout)[0]["tags"]} == {"pushed"}
        assert json.loads(record.read_text())[-1]["registry"] == host
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
