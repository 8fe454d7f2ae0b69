"""The bundled hub's files: what `hub init` writes (secrets 0600, safe defaults), the settings
schema and its refusals, the compose file rendered from hub.toml, the selection arguments."""

import stat

import pytest
import yaml

from imagebuild.errors import RecipeError
from imagebuild.hub import folder as hub_folder
from imagebuild.hub.compose import render_compose
from imagebuild.model.hub import HubFolder
from imagebuild.model.project import load_project

REGISTRY = "registry.example.org"


def _init(tmp_path, make_project, **options):
    folder = tmp_path / "myhub"
    request = hub_folder.HubInit(folder=folder, registry=REGISTRY, admin="alice", **options)
    return folder, hub_folder.init(load_project(make_project.root), request)


def _edit(folder, old: str, new: str) -> None:
    path = folder / "hub.toml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


def test_init_writes_a_complete_hub_with_private_secrets(tmp_path, make_project):
    folder, written = _init(tmp_path, make_project)
    assert {p.name for p in written} == {"hub.toml", "compose.yml", "jupyterhub_config.py", "images.toml", ".env"}
    assert stat.S_IMODE((folder / ".env").stat().st_mode) == 0o600
    secrets = dict(line.split("=", 1) for line in (folder / ".env").read_text().splitlines() if "=" in line)
    assert len(secrets["POSTGRES_PASSWORD"]) > 20 and len(secrets["IMAGEBUILD_HUB_API_TOKEN"]) == 64
    settings = HubFolder(folder).settings
    assert settings.name == "myhub" and settings.authenticator.kind == "native"
    assert settings.authenticator.admin_users == ["alice"] and not settings.authenticator.open_signup
    assert settings.bind_address == "127.0.0.1" and settings.spawn.http_timeout >= 120
    assert settings.volumes.home == "myhub-user-{username}"
    compile((folder / "jupyterhub_config.py").read_text(), "jupyterhub_config.py", "exec")


def test_the_compose_file_needs_no_docker_hub_and_holds_no_secret(tmp_path, make_project):
    folder, _ = _init(tmp_path, make_project, proxy_domain="hub.example.org")
    text = (folder / "compose.yml").read_text()
    compose = yaml.safe_load(text)
    assert "version" not in compose and "name" not in compose  # Compose 1.29 and 2.x alike
    images = {service["image"] for service in compose["services"].values()}
    assert images == {f"{REGISTRY}/imagebuild/{name}:latest" for name in ("hub", "postgres", "proxy")}
    for value in HubFolder(folder).secrets.values():
        if value:
            assert value not in text
    for service in compose["services"].values():
        assert "env_file" not in service
    assert compose["networks"]["jupyterhub"]["name"] == "myhub-jupyterhub"
    assert {v["name"] for v in compose["volumes"].values()} == {"myhub-db-data", "myhub-hub-data", "myhub-caddy-data"}


def test_plain_http_listens_on_loopback_unless_hub_toml_says_otherwise(tmp_path, make_project):
    folder, _ = _init(tmp_path, make_project, port=8123)
    hub_service = yaml.safe_load((folder / "compose.yml").read_text())["services"]["hub"]
    assert hub_service["ports"] == ["127.0.0.1:8123:8000"]
    _edit(folder, 'bind_address = "127.0.0.1"', 'bind_address = "0.0.0.0"')
    settings = HubFolder(folder).settings
    rendered = yaml.safe_load(render_compose(settings, (folder / "hub.toml").read_text()))
    assert rendered["services"]["hub"]["ports"] == ["0.0.0.0:8123:8000"]


def test_a_hub_toml_edit_changes_only_the_hub_service(tmp_path, make_project):
    folder, _ = _init(tmp_path, make_project)
    before = yaml.safe_load((folder / "compose.yml").read_text())["services"]
    _edit(folder, "idle_timeout = 3600", "idle_timeout = 600")
    after = yaml.safe_load(render_compose(HubFolder(folder).settings, (folder / "hub.toml").read_text()))["services"]
    assert after["db"] == before["db"]
    assert after["hub"]["labels"] != before["hub"]["labels"]


def test_init_never_overwrites_a_hub(tmp_path, make_project):
    _init(tmp_path, make_project)
    with pytest.raises(RecipeError, match="exists already"):
        _init(tmp_path, make_project)


def test_init_refuses_a_bad_admin_name(tmp_path, make_project):
    request = hub_folder.HubInit(folder=tmp_path / "h", registry=REGISTRY, admin="Alice Smith")
    with pytest.raises(RecipeError, match="not a user name"):
        hub_folder.init(load_project(make_project.root), request)
    assert not (tmp_path / "h").exists()


def test_the_dummy_authenticator_needs_development_mode(tmp_path, make_project):
    with pytest.raises(RecipeError, match="development only"):
        _init(tmp_path, make_project, authenticator="dummy")
    folder, _ = _init(tmp_path, make_project, authenticator="dummy", development=True)
    _edit(folder, "development = true", "development = false")
    with pytest.raises(RecipeError, match="anyone log in as anyone") as caught:
        _ = HubFolder(folder).settings
    assert caught.value.path == folder / "hub.toml"


@pytest.mark.parametrize("kind", ["github", "generic"])
def test_an_oauth_hub_must_say_who_may_log_in(tmp_path, make_project, kind):
    folder, _ = _init(tmp_path, make_project, authenticator=kind)
    assert HubFolder(folder).settings.authenticator.admin_users == ["alice"]  # the admin may log in
    _edit(folder, 'admin_users = ["alice"]', "admin_users = []")
    with pytest.raises(RecipeError, match="must say who may log in") as caught:
        _ = HubFolder(folder).settings
    assert caught.value.path == folder / "hub.toml" and "allow_all = true" in caught.value.message
    _edit(folder, "allow_all = false", "allow_all = true")
    assert HubFolder(folder).settings.authenticator.allow_all
    _edit(folder, "allow_all = true", "allow_all = false")
    key = "allowed_organizations" if kind == "github" else "allowed_groups"
    _edit(folder, f"{key} = []", f'{key} = ["physics"]')
    assert HubFolder(folder).settings.authenticator.who_may_log_in() == ["physics"]


def test_a_native_hub_needs_an_admin(tmp_path, make_project):
    folder, _ = _init(tmp_path, make_project)
    _edit(folder, 'admin_users = ["alice"]', "admin_users = []")
    with pytest.raises(RecipeError, match="needs an admin to approve sign-ups"):
        _ = HubFolder(folder).settings


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("memory = \"4G\"", "memroy = \"4G\"", r"\[limits\].memroy: unknown key"),
        ('home = "myhub-user-{username}"', 'home = "home-{user}"', "unknown placeholder {user}"),
        ("[environment]\n", '[environment]\n"A B" = "1"\n', "NAME of an environment variable"),
        ("[environment]\n", '[environment]\nAIIDALAB_REGISTRY = "apps.example.org/api/v1"\n', "environment: AIIDALAB_REGISTRY must be an http or https URL"),
        ('name = "myhub"', 'name = "My Hub"', "name"),
        ("http_timeout = 300", "http_timeout = 5", "http_timeout"),
    ],
)
def test_bad_hub_settings_name_the_field(tmp_path, make_project, old, new, message):
    folder, _ = _init(tmp_path, make_project)
    _edit(folder, old, new)
    with pytest.raises(RecipeError, match=message) as caught:
        _ = HubFolder(folder).settings
    assert caught.value.path == folder / "hub.toml"


@pytest.mark.parametrize(
    ("text", "message"),
    [("base", "NAME:TAG"), ("base:", "NAME:TAG"), (":2026-11-22", "NAME:TAG"), ("nosuch:1", "not an image of this project"),
     ("base:bad/tag", "not a valid tag")],
)  # fmt: skip
def test_selection_arguments_are_a_project_image_and_a_tag(make_project, text, message):
    with pytest.raises(RecipeError, match=message):
        hub_folder.Wanted.parse(text, load_project(make_project.root))


def test_hub_names_keep_to_what_both_composes_accept(tmp_path):
    assert hub_folder.hub_name(tmp_path / "My-Hub_2") == "myhub2"
    assert hub_folder.hub_name(tmp_path / "2024") == "hub"


def test_an_oauth_hub_without_its_client_is_refused_without_echoing_secrets(tmp_path, make_project):
    folder, _ = _init(tmp_path, make_project, authenticator="github")
    with pytest.raises(RecipeError, match="OAUTH_CLIENT_ID is empty") as caught:
        HubFolder(folder).check()
    assert caught.value.path == folder / ".env"
    env = folder / ".env"
    env.write_text(env.read_text().replace("OAUTH_CLIENT_ID=", "OAUTH_CLIENT_ID=abc").replace("OAUTH_CLIENT_SECRET=", "OAUTH_CLIENT_SECRET=s3cr3t"))
    settings, selection = HubFolder(folder).check()
    assert settings.authenticator.kind == "github" and selection.images == []
    password = HubFolder(folder).secrets["POSTGRES_PASSWORD"]
    env.write_text(env.read_text().replace(f"POSTGRES_PASSWORD={password}", "POSTGRES_PASSWORD="))
    with pytest.raises(RecipeError, match="POSTGRES_PASSWORD is empty") as caught:
        HubFolder(folder).check()
    assert password not in caught.value.render()
