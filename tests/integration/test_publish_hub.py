"""End to end, issue 5's check, all on loopback: Debian's docker-registry as the registry;
aiidalab and pyiron pushed under all their tags; `tags` reads them back; `hub select` pins one
tag of each; the hub image imagebuild built runs JupyterHub with DockerSpawner (host
networking) and spawns a server from each selected tag, reached through the hub's proxy, whose
container runs exactly the published digest; an unselected tag is refused. A registry killed in
the middle of a push fails the command clearly, leaves the publish record alone, and a rerun
completes."""

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from imagebuild import pipeline
from imagebuild import registry as registry_module
from imagebuild.ca import read_ca_bundle
from imagebuild.plan import load_project
from imagebuild.publish import record_path
from tests.conftest import REPO, free_port, offline_fetcher
from tests.integration.conftest import AIIDA_CHECK, AIIDA_SUBMIT, QUIET, aiida_python

pytestmark = pytest.mark.engine

SCIENCE = ["aiidalab", "pyiron"]


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["imagebuild", *args], cwd=cwd, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def built(engine, repo_project) -> dict[str, pipeline.ImageOutcome]:
    """aiidalab, pyiron and the hub image, built and smoke-tested (shared with the other modules)."""
    outcomes = pipeline.build(
        repo_project, [*SCIENCE, "hub"], fetcher=offline_fetcher(read_ca_bundle(), offline=False), reporter=QUIET
    )
    return {outcome.name: outcome for outcome in outcomes}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    host = f"127.0.0.1:{free_port()}"
    pid = registry_module.up(host, print, storage=tmp_path_factory.mktemp("registry"))
    yield host
    if pid:
        os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="module")
def published(built, registry) -> dict[str, dict]:
    pushed = _cli("push", *SCIENCE, "--registry", registry, "--json")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    return {result["name"]: result for result in json.loads(pushed.stdout)}


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


@pytest.fixture(scope="module")
def hub(tmp_path_factory, engine, built, registry, published):
    """The bundled hub, as `hub init` writes it, running from the hub image on host networking."""
    folder = tmp_path_factory.mktemp("hub") / "hub"
    port = free_port(span=3)
    initialised = _cli(
        "hub", "init", str(folder), "--registry", registry, "--network", "host", "--port", str(port),
        "--authenticator", "dummy", "--development",
    )  # fmt: skip
    assert initialised.returncode == 0, initialised.stderr
    assert oct((folder / ".env").stat().st_mode & 0o777) == "0o600"
    date_tag = {name: published[name]["tags"][0]["tag"] for name in SCIENCE}
    refused = _cli("hub", "select", "aiidalab:no-such-tag", "--dir", str(folder))
    assert refused.returncode == 9 and "has no tag 'no-such-tag'" in refused.stderr
    selected = _cli("hub", "select", *(f"{name}:{date_tag[name]}" for name in SCIENCE), "--dir", str(folder))
    assert selected.returncode == 0, selected.stderr
    token = secrets.token_hex(16)
    container = engine.client.containers.run(
        built["hub"].ref,
        ["jupyterhub", "-f", "/srv/jupyterhub/config/jupyterhub_config.py"],
        detach=True,
        user="root",
        network_mode="host",
        environment={"IMAGEBUILD_HUB_ADMIN_TOKEN": token, "IMAGEBUILD_HUB_DATA": "/srv/jupyterhub/data"},
        volumes={
            "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
            str(folder): {"bind": "/srv/jupyterhub/config", "mode": "ro"},
            str(folder.parent / "data"): {"bind": "/srv/jupyterhub/data", "mode": "rw"},
        },
    )
    url = f"http://127.0.0.1:{port}"
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if session.get(f"{url}/hub/api/", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    else:
        pytest.fail("the hub did not answer:\n" + container.logs().decode()[-3000:])
    yield url, session, folder, date_tag, container
    for user in ("alice", "bob", "carol", "dave", *(f"{name}again" for name in SCIENCE)):
        session.delete(f"{url}/hub/api/users/{user}/server", timeout=60)
    container.remove(force=True)
    for volume in engine.client.volumes.list(filters={"name": "jupyterhub-user-"}):
        volume.remove(force=True)


def _spawn(url: str, session: requests.Session, user: str, image: str) -> requests.Response:
    session.post(f"{url}/hub/api/users/{user}", timeout=30)
    return session.post(f"{url}/hub/api/users/{user}/server", json={"image": image}, timeout=300)


def _wait_ready(url: str, session: requests.Session, user: str, container) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        model = session.get(f"{url}/hub/api/users/{user}", timeout=30).json()
        if (model.get("servers") or {}).get("", {}).get("ready"):
            return
        time.sleep(0.5)
    pytest.fail(f"{user}'s server did not become ready:\n" + container.logs().decode()[-4000:])


@pytest.mark.parametrize(("user", "name"), [("alice", "aiidalab"), ("bob", "pyiron")])
def test_hub_spawns_each_selected_tag_at_its_published_digest(engine, hub, published, user, name):
    url, session, _folder, date_tag, container = hub
    spawned = _spawn(url, session, user, f"{name} {date_tag[name]}")
    assert spawned.status_code in (201, 202), spawned.text + container.logs().decode()[-4000:]
    _wait_ready(url, session, user, container)
    answer = session.get(f"{url}/user/{user}/api", timeout=30)
    assert answer.status_code == 200 and "version" in answer.json()  # the single-user server, through the hub
    (running,) = engine.client.containers.list(filters={"name": f"jupyter-{user}"})
    assert running.image.id == published[name]["image_id"]
    assert published[name]["digest"] in running.attrs["Config"]["Image"]
    assert any(d.endswith(published[name]["digest"]) for d in running.image.attrs["RepoDigests"])


def _stop(url: str, session: requests.Session, engine, user: str) -> None:
    session.delete(f"{url}/hub/api/users/{user}/server", timeout=120)
    deadline = time.monotonic() + 120
    while engine.client.containers.list(all=True, filters={"name": f"jupyter-{user}"}):
        assert time.monotonic() < deadline, f"{user}'s container was not removed"
        time.sleep(0.5)


@pytest.mark.parametrize("name", SCIENCE)
def test_first_and_second_start_through_the_hub(engine, hub, published, name):
    """Each image spawned through the hub, stopped, and spawned again on the same home volume,
    beside the servers other tests left running (each gets its own service ports on the host
    network). Prints both times; aiidalab's calculation from the first start is there after the
    second, with the daemon running again and nothing initialised twice."""
    url, session, _folder, date_tag, container = hub
    user = f"{name}again"  # no "-": DockerSpawner escapes it in container names
    seconds, uuid = [], None
    for start in ("first", "second"):
        began = time.monotonic()
        spawned = _spawn(url, session, user, f"{name} {date_tag[name]}")
        assert spawned.status_code in (201, 202), spawned.text + container.logs().decode()[-4000:]
        _wait_ready(url, session, user, container)
        seconds.append(time.monotonic() - began)
        (running,) = engine.client.containers.list(filters={"name": f"jupyter-{user}"})
        if name == "aiidalab" and start == "first":
            uuid = aiida_python(running, AIIDA_SUBMIT).split("UUID ")[1].split()[0]
        elif name == "aiidalab":
            aiida_python(running, AIIDA_CHECK, uuid)
            logs = running.logs().decode(errors="replace")
            assert "created AiiDA profile" not in logs and "creating the PostgreSQL cluster" not in logs, logs
        _stop(url, session, engine, user)
    print(f"{name} through the hub: first start ready in {seconds[0]:.1f} s, second start in {seconds[1]:.1f} s")


def test_hub_refuses_an_image_that_is_not_selected(hub, registry, published):
    url, session, _folder, _date_tag, _container = hub
    content_tag = next(t["tag"] for t in published["aiidalab"]["tags"] if t["tag"].startswith("sha-"))
    refused = _spawn(url, session, "carol", f"{registry}/imagebuild/aiidalab:{content_tag}")
    assert refused.status_code == 400 and "not in allowed list" in refused.text


def test_hub_images_shows_the_selection_next_to_the_registry(hub):
    _url, _session, folder, date_tag, _container = hub
    shown = _cli("hub", "images", "--dir", str(folder), "--json")
    assert shown.returncode == 0, shown.stderr
    offered = {(row["image"], row["tag"]) for row in json.loads(shown.stdout)["published"] if row["selected"]}
    assert offered == {(name, date_tag[name]) for name in SCIENCE}


def test_a_new_selection_applies_without_restarting_the_hub(hub):
    url, session, folder, date_tag, container = hub
    narrowed = _cli("hub", "select", f"aiidalab:{date_tag['aiidalab']}", "--dir", str(folder))
    assert narrowed.returncode == 0, narrowed.stderr
    refused = _spawn(url, session, "dave", f"pyiron {date_tag['pyiron']}")
    assert refused.status_code == 400 and "not in allowed list" in refused.text
    container.reload()
    assert container.status == "running"  # the same hub process, no restart


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
