"""The bundled hub as an admin and a user meet it (issue 16), all real and all on loopback:
`hub init --admin` -> `hub select` aiidalab and pyiron -> `hub up` (Compose, the PostgreSQL image
and the hub image pulled or built and pushed to the session's registry) -> in headless Chromium
a user signs up, the admin approves, the user starts aiidalab and runs a cell in JupyterLab,
stops, starts pyiron, runs a cell -> `hub down && hub up` -> the user logs in again and finds the
file. Around it: a second `hub up` restarts nothing, a new selection restarts nothing, a hub.toml
edit recreates only the hub, no generated secret appears in a file, label, variable or log;
OAuth against a real OpenID Connect provider; refusals that leave nothing running.

Each browser step leaves a screenshot in build/test-artifacts/hub-journey/ (kept on failure)."""

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from imagebuild.model.hub import HubFolder
from tests.conftest import REPO, free_port
from tests.hub_browser import HubPerson
from tests.integration.conftest import SCIENCE, imagebuild_cli, remove_hub_data

pytestmark = pytest.mark.engine

ARTIFACTS = REPO / "build" / "test-artifacts" / "hub-journey"
PASSWORD = "a long journey password"
PROVIDER = "imagebuild-test-oidc"  # the OpenID Connect provider's container, on the OAuth hub's network
STEP_TIMEOUT = 300_000  # ms: a first start of aiidalab on a slow host, then JupyterLab loading


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return imagebuild_cli(*args, cwd=REPO)


@dataclass(frozen=True)
class Hub:
    folder: Path
    url: str
    name: str
    tags: dict[str, str]  # image -> the date tag offered

    @property
    def api(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"token {HubFolder(self.folder).secrets['IMAGEBUILD_HUB_API_TOKEN']}"
        return session

    def services(self) -> dict[str, dict]:
        shown = _cli("hub", "status", str(self.folder), "--json")
        assert shown.returncode == 0, shown.stderr
        return {row["service"]: row for row in json.loads(shown.stdout)["services"]}


def _up(folder: Path) -> dict:
    began = time.monotonic()
    started = _cli("hub", "up", str(folder), "--json")
    assert started.returncode == 0, started.stdout + started.stderr[-4000:]
    result = json.loads(started.stdout)
    print(f"hub up {folder.name}: {time.monotonic() - began:.1f} s; images {result['images']}; services {result['services']}")
    return result


@pytest.fixture(scope="module")
def hub(tmp_path_factory, engine, registry, published) -> Iterator[Hub]:
    folder = tmp_path_factory.mktemp("hubs") / "journey"
    remove_hub_data(engine, "journey")  # a hub of an earlier, interrupted session
    port = free_port()
    initialised = _cli("hub", "init", str(folder), "--admin", "boss", "--registry", registry, "--port", str(port))
    assert initialised.returncode == 0, initialised.stderr
    tags = {name: published[name]["tags"][0]["tag"] for name in SCIENCE}
    selected = _cli("hub", "select", *(f"{name}:{tag}" for name, tag in tags.items()), "--dir", str(folder))
    assert selected.returncode == 0, selected.stderr
    first = _up(folder)
    assert set(first["images"].values()) <= {"present", "pulled", "built"}
    assert first["url"] == f"http://127.0.0.1:{port}"
    try:
        yield Hub(folder=folder, url=first["url"], name="journey", tags=tags)
    finally:
        print(_cli("hub", "logs", "hub", "--dir", str(folder), "--tail", "150").stdout)  # shown when a test failed
        down = _cli("hub", "down", str(folder))
        print(down.stdout, down.stderr)
        remove_hub_data(engine, "journey")


def test_hub_up_runs_the_database_and_the_hub_from_the_registry(hub, registry, engine):
    services = hub.services()
    assert set(services) == {"db", "hub"}
    assert all(s["state"] == "running" and s["health"] == "healthy" for s in services.values()), services
    assert {s["image"] for s in services.values()} == {f"{registry}/imagebuild/hub:latest", f"{registry}/imagebuild/postgres:latest"}
    assert requests.get(f"{hub.url}/hub/health", timeout=10).status_code == 200
    ports = engine.client.containers.get("journey-hub").attrs["NetworkSettings"]["Ports"]["8000/tcp"]
    assert {binding["HostIp"] for binding in ports} == {"127.0.0.1"}  # plain http: loopback only
    database = engine.client.containers.get("journey-db")
    assert any(m["Name"] == "journey-db-data" for m in database.attrs["Mounts"] if m["Type"] == "volume")


def test_a_second_hub_up_restarts_nothing(hub):
    again = _up(hub.folder)
    assert again["services"] == {"db": "unchanged", "hub": "unchanged"}
    assert set(again["images"].values()) == {"present"}


# ---------------------------------------------------------------- the browser journey


def person(browser, url: str, who: str) -> HubPerson:
    return HubPerson(browser, url, who, password=PASSWORD, timeout_ms=STEP_TIMEOUT, shots=ARTIFACTS)


def test_sign_up_approval_spawn_and_persistence_in_a_browser(hub, browser, journeys, engine):
    admin, user = person(browser, hub.url, "admin"), person(browser, hub.url, "ada")
    journeys += [admin, user]
    user.signup("ada")
    assert not user.login("ada")  # not yet: the admin has not approved ada
    admin.signup("boss")  # the admin named by `hub init --admin` is approved as they sign up
    assert admin.login("boss")
    admin.approve("ada")

    assert user.login("ada")
    seconds = user.start(f"aiidalab {hub.tags['aiidalab']}")
    version = user.run_cell(
        "import aiida; print('aiida', aiida.__version__); open('journey.txt', 'w').write('written before the restart')",
        r"aiida \d+\.\d+",
    )
    print(f"ada: aiidalab spawn -> JupyterLab loaded in {seconds:.1f} s; {version.strip()}")
    user.stop()
    seconds = user.start(f"pyiron {hub.tags['pyiron']}")
    user.run_cell("import pyiron_base; print('pyiron_base', pyiron_base.__version__)", r"pyiron_base \d+\.\d+")
    print(f"ada: pyiron spawn -> JupyterLab loaded in {seconds:.1f} s")
    user.stop()

    stopped = _cli("hub", "down", str(hub.folder))
    assert stopped.returncode == 0, stopped.stderr
    assert not engine.client.containers.list(all=True, filters={"label": "com.docker.compose.project=journey"})
    _up(hub.folder)
    again = person(browser, hub.url, "ada-again")  # a new browser session: no cookie from before
    journeys.append(again)
    assert again.login("ada")  # the account lives in PostgreSQL, on its volume
    again.start(f"pyiron {hub.tags['pyiron']}")
    again.run_cell("print(open('journey.txt').read())", "written before the restart")  # the home volume


def test_a_new_selection_applies_at_the_next_spawn_without_a_restart(hub, engine):
    before = hub.services()
    narrowed = _cli("hub", "select", f"aiidalab:{hub.tags['aiidalab']}", "--dir", str(hub.folder))
    assert narrowed.returncode == 0, narrowed.stderr
    api = hub.api
    api.post(f"{hub.url}/hub/api/users/dave", timeout=30)
    refused = api.post(f"{hub.url}/hub/api/users/dave/server", json={"image": f"pyiron {hub.tags['pyiron']}"}, timeout=60)
    assert refused.status_code == 400 and "not in allowed list" in refused.text
    assert hub.services() == before  # nothing restarted
    restored = _cli("hub", "select", *(f"{name}:{tag}" for name, tag in hub.tags.items()), "--dir", str(hub.folder))
    assert restored.returncode == 0, restored.stderr


def test_a_spawn_runs_the_published_digest_and_status_lists_it(hub, engine, published):
    api = hub.api
    api.post(f"{hub.url}/hub/api/users/eve", timeout=30)
    spawned = api.post(f"{hub.url}/hub/api/users/eve/server", json={"image": f"pyiron {hub.tags['pyiron']}"}, timeout=120)
    assert spawned.status_code in (201, 202), spawned.text
    deadline = time.monotonic() + 600
    while not (api.get(f"{hub.url}/hub/api/users/eve", timeout=30).json().get("servers") or {}).get("", {}).get("ready"):
        assert time.monotonic() < deadline, "eve's server never became ready"
        time.sleep(1)
    status = json.loads(_cli("hub", "status", str(hub.folder), "--json").stdout)
    (server,) = [s for s in status["user_servers"] if s["user"] == "eve"]
    assert server["state"] == "running" and published["pyiron"]["digest"] in server["image"]
    assert {item["label"] for item in status["selected"]} == {f"{n} {t}" for n, t in hub.tags.items()}
    running = engine.client.containers.get(server["container"])
    assert running.image.id == published["pyiron"]["image_id"]
    assert any(m["Name"] == "journey-user-eve" for m in running.attrs["Mounts"] if m["Type"] == "volume")
    api.delete(f"{hub.url}/hub/api/users/eve/server", timeout=120)


def test_a_hub_toml_edit_recreates_only_the_hub_and_idle_servers_are_culled(hub):
    """idle_timeout lowered to 30 s: `hub up` recreates the hub alone, and the idle culler (a hub
    service) stops a server nobody uses."""
    settings = hub.folder / "hub.toml"
    settings.write_text(settings.read_text().replace("idle_timeout = 3600", "idle_timeout = 30"))
    changed = _up(hub.folder)
    assert changed["services"] == {"db": "unchanged", "hub": "recreated"}
    api = hub.api
    api.post(f"{hub.url}/hub/api/users/idle", timeout=30)
    spawned = api.post(f"{hub.url}/hub/api/users/idle/server", json={"image": f"pyiron {hub.tags['pyiron']}"}, timeout=120)
    assert spawned.status_code in (201, 202), spawned.text
    began, deadline, seen_running = time.monotonic(), time.monotonic() + 900, False
    while True:
        server = (api.get(f"{hub.url}/hub/api/users/idle", timeout=30).json().get("servers") or {}).get("")
        seen_running = seen_running or bool(server and server.get("ready"))
        if seen_running and not server:
            break
        assert time.monotonic() < deadline, f"the idle server was not stopped: {server}"
        time.sleep(2)
    print(f"idle server stopped by the culler {time.monotonic() - began:.0f} s after its spawn (idle_timeout 30 s)")


def test_no_generated_secret_appears_in_files_labels_variables_or_logs(hub, engine):
    secrets = {key: value for key, value in HubFolder(hub.folder).secrets.items() if value}
    assert {"POSTGRES_PASSWORD", "IMAGEBUILD_HUB_API_TOKEN"} <= secrets.keys()
    places = {path.name: path.read_text() for path in hub.folder.iterdir() if path.is_file() and path.name != ".env"}
    for container in engine.client.containers.list(all=True, filters={"label": "com.docker.compose.project=journey"}):
        config = container.attrs["Config"]
        places[f"{container.name} labels"] = json.dumps(config.get("Labels"))
        places[f"{container.name} environment"] = json.dumps(config.get("Env"))
        places[f"{container.name} command"] = json.dumps([config.get("Cmd"), config.get("Entrypoint")])
        places[f"{container.name} log"] = container.logs().decode(errors="replace")
    places["hub logs"] = _cli("hub", "logs", "--dir", str(hub.folder)).stdout
    assert "jupyterhub" in places["hub logs"].lower()
    for key, value in secrets.items():
        for place, text in places.items():
            assert value not in text, f"{key} appears in {place}"


# ---------------------------------------------------------------- refusals


def _nothing_runs(engine, name: str) -> None:
    assert not engine.client.containers.list(all=True, filters={"label": f"com.docker.compose.project={name}"})


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error line (after any progress lines); at most a hint follows it."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    rest = [line for line in lines[start + 1 :] if line.strip()]
    assert len(rest) <= 1 and all(line.startswith("  hint: ") for line in rest), result.stderr
    return lines[start]


def test_an_oauth_hub_that_allows_nobody_is_refused(tmp_path, registry, engine):
    folder = tmp_path / "nobody"
    assert _cli("hub", "init", str(folder), "--admin", "root1", "--registry", registry, "--authenticator", "generic").returncode == 0
    settings = folder / "hub.toml"
    settings.write_text(settings.read_text().replace('admin_users = ["root1"]', "admin_users = []"))
    for command in (["hub", "check", "--dir", str(folder)], ["hub", "up", str(folder)]):
        refused = _cli(*command)
        assert refused.returncode == 2
        line = _one_line(refused)
        assert str(settings) in line and "must say who may log in" in line and "allow_all = true" in line
    _nothing_runs(engine, "nobody")


def test_a_taken_port_is_refused_and_nothing_starts(tmp_path, registry, engine, hub):
    folder = tmp_path / "busy"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert _cli("hub", "init", str(folder), "--admin", "root1", "--registry", registry, "--port", str(port)).returncode == 0
        refused = _cli("hub", "up", str(folder))
    assert refused.returncode == 2
    assert f"port {port} is taken" in _one_line(refused)
    _nothing_runs(engine, "busy")


def test_a_new_folder_with_an_earlier_hubs_name_is_refused_and_that_hub_untouched(tmp_path, registry, engine, hub):
    """Its database volume has the other folder's password: `hub up` says so instead of a hub that
    cannot reach its database."""
    folder = tmp_path / "journey"  # the same name as the running hub (the folder's name)
    assert _cli("hub", "init", str(folder), "--admin", "root1", "--registry", registry, "--port", str(free_port())).returncode == 0
    running = {c.id for c in engine.client.containers.list(filters={"label": "com.docker.compose.project=journey"})}
    refused = _cli("hub", "up", str(folder))
    assert refused.returncode == 2, refused.stderr
    line = _one_line(refused)
    assert "journey-db-data holds the database of another hub folder of the same name" in line and "hub.toml" in line
    assert "give this hub another name" in refused.stderr
    assert {c.id for c in engine.client.containers.list(filters={"label": "com.docker.compose.project=journey"})} == running


def test_a_missing_image_without_a_registry_is_refused_and_nothing_starts(tmp_path, engine):
    folder = tmp_path / "offline"
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    assert _cli("hub", "init", str(folder), "--admin", "root1", "--registry", nowhere, "--hub-tag", "2026-01-01").returncode == 0
    refused = _cli("hub", "up", str(folder))
    assert refused.returncode == 9
    line = _one_line(refused)
    assert f"registry {nowhere} does not answer" in line and "is not in the engine" in line
    _nothing_runs(engine, "offline")
    assert not engine.client.volumes.list(filters={"name": "offline-db-data"})  # no volume of a hub that did not start


# ---------------------------------------------------------------- OAuth against a real OpenID Connect provider


@pytest.fixture(scope="module")
def oidc_wheels(tmp_path_factory) -> Path:
    """oidc-provider-mock and its dependencies as wheels, for a container that has no index."""
    folder = tmp_path_factory.mktemp("oidc-wheels")
    subprocess.run(
        ["python", "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d", str(folder), "oidc-provider-mock==0.3.4"],
        check=True,
        timeout=600,
    )
    folder.chmod(0o755)  # readable by the container's user
    return folder


def test_generic_oauth_admits_an_allowed_user_and_refuses_another(tmp_path, registry, engine, browser, journeys, oidc_wheels, hub):
    folder = tmp_path / "oidc"
    remove_hub_data(engine, "oidc")
    for stale in engine.client.containers.list(all=True, filters={"name": PROVIDER}):
        stale.remove(force=True)
    port, provider_port = free_port(), free_port()
    assert _cli("hub", "init", str(folder), "--admin", "ada", "--registry", registry, "--port", str(port), "--authenticator", "generic").returncode == 0
    settings = folder / "hub.toml"
    text = settings.read_text()
    for key, value in {
        "authorize_url": f"http://127.0.0.1:{provider_port}/oauth2/authorize",  # the browser's way
        "token_url": f"http://{PROVIDER}:9400/oauth2/token",  # the hub's way, on its compose network
        "userdata_url": f"http://{PROVIDER}:9400/userinfo",
        "username_claim": "sub",
    }.items():
        text = re.sub(rf'^{key} = ".*"$', f'{key} = "{value}"', text, flags=re.M)
    settings.write_text(text.replace("allowed_users = []", 'allowed_users = ["alice"]'))
    env = folder / ".env"
    env.write_text(env.read_text().replace("OAUTH_CLIENT_ID=", "OAUTH_CLIENT_ID=imagebuild-test").replace("OAUTH_CLIENT_SECRET=", "OAUTH_CLIENT_SECRET=not-a-real-secret"))
    _up(folder)
    provider = engine.client.containers.run(
        "imagebuild/base:latest",
        ["bash", "-c", ("python -m venv /tmp/oidc && /tmp/oidc/bin/pip install -q --no-index --find-links /wheels oidc-provider-mock "
         "&& exec /tmp/oidc/bin/python -m oidc_provider_mock --host 0.0.0.0 --port 9400")],
        detach=True,
        name=PROVIDER,
        network="oidc-jupyterhub",
        ports={"9400/tcp": ("127.0.0.1", provider_port)},
        volumes={str(oidc_wheels): {"bind": "/wheels", "mode": "ro"}},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not _answers(f"http://127.0.0.1:{provider_port}/.well-known/openid-configuration"):
            provider.reload()
            assert provider.status == "running" and time.monotonic() < deadline, provider.logs().decode()[-2000:]
            time.sleep(1)
        url = f"http://127.0.0.1:{port}"
        for who, allowed in (("alice", True), ("mallory", False)):
            visitor = person(browser, url, who)
            journeys.append(visitor)
            visitor.page.goto(f"{url}/hub/oauth_login")
            visitor.page.fill("input[name=sub]", who)
            visitor.shot("provider")
            visitor.page.click("button[type=submit]:has-text('Authorize')")
            visitor.page.wait_for_load_state()
            visitor.shot("back-at-the-hub")
            content = visitor.page.content()
            if allowed:
                assert "/hub/spawn" in visitor.page.url or "/hub/home" in visitor.page.url, visitor.page.url
                assert who in content
            else:
                assert "403" in content or "Forbidden" in content or "not allowed" in content.lower(), content[:2000]
    finally:
        provider.remove(force=True)
        _cli("hub", "down", str(folder))
        remove_hub_data(engine, "oidc")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False

