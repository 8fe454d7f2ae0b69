"""The bundled hub's files: what `hub init` writes (secrets 0600, mirror rewrites), the settings
schema, the selection file, and the Zero-to-JupyterHub profile list (a structure test: the
chart's values schema is not available offline)."""

import stat

import pytest
import yaml

from imagebuild import hub
from imagebuild.errors import RecipeError
from imagebuild.mirrors.profile import load_mirror
from imagebuild.plan import load_project
from tests.conftest import REPO


def _init(tmp_path, make_project, **options):
    values = dict(
        hub_tag="2026-11-22", mirror=None, network="jupyterhub", port=8000, authenticator="native",
        development=False, proxy_domain=None,
    )  # fmt: skip
    values.update(options)
    folder = tmp_path / "hub"
    return folder, hub.init(folder, load_project(make_project.root), "registry.example.org", **values)


def test_init_writes_a_complete_hub_with_private_secrets(tmp_path, make_project):
    folder, written = _init(tmp_path, make_project)
    assert {p.name for p in written} == {"hub.toml", "compose.yml", "jupyterhub_config.py", "get-compose.sh", "images.toml", ".env"}
    assert stat.S_IMODE((folder / ".env").stat().st_mode) == 0o600
    secrets = dict(line.split("=", 1) for line in (folder / ".env").read_text().splitlines() if "=" in line)
    assert len(secrets["POSTGRES_PASSWORD"]) > 20
    compose = yaml.safe_load((folder / "compose.yml").read_text())
    assert compose["services"]["hub"]["image"] == "registry.example.org/imagebuild/hub:2026-11-22"
    assert compose["services"]["db"]["image"] == "postgres:16"
    assert secrets["POSTGRES_PASSWORD"] not in (folder / "compose.yml").read_text()  # compose reads it from .env
    settings = hub.HubFolder(folder).settings
    assert settings.authenticator.kind == "native" and settings.limits.memory == "4G"
    compile((folder / "jupyterhub_config.py").read_text(), "jupyterhub_config.py", "exec")


def test_init_never_overwrites_a_hub(tmp_path, make_project):
    _init(tmp_path, make_project)
    with pytest.raises(RecipeError, match="exists already"):
        _init(tmp_path, make_project)


def test_the_dummy_authenticator_needs_development_mode(tmp_path, make_project):
    with pytest.raises(RecipeError, match="development only"):
        _init(tmp_path, make_project, authenticator="dummy")
    folder, _ = _init(tmp_path, make_project, authenticator="dummy", development=True)
    settings_file = folder / "hub.toml"
    settings_file.write_text(settings_file.read_text().replace("development = true", "development = false"))
    with pytest.raises(RecipeError, match="anyone log in as anyone") as caught:
        _ = hub.HubFolder(folder).settings
    assert caught.value.path == settings_file


def test_mirror_registry_and_compose_rewrites_apply(tmp_path, make_project):
    folder, _ = _init(tmp_path, make_project, mirror=load_mirror("daocloud", REPO), proxy_domain="hub.example.org")
    compose = yaml.safe_load((folder / "compose.yml").read_text())
    assert compose["services"]["db"]["image"] == "docker.m.daocloud.io/library/postgres:16"
    assert compose["services"]["proxy"]["image"] == "docker.m.daocloud.io/library/caddy:2"
    assert "https://files.m.daocloud.io/github.com/docker/compose/releases/download/" in (folder / "get-compose.sh").read_text()


def test_a_typo_in_hub_settings_names_the_key(tmp_path, make_project):
    folder, _ = _init(tmp_path, make_project)
    (folder / "hub.toml").write_text((folder / "hub.toml").read_text().replace("[limits]\nmemory", "[limits]\nmemroy"))
    with pytest.raises(RecipeError, match=r"\[limits\].memroy: unknown key"):
        _ = hub.HubFolder(folder).settings


@pytest.mark.parametrize("text", ["aiidalab", "aiidalab:", ":2026-11-22"])
def test_selection_arguments_are_name_and_tag(text):
    with pytest.raises(RecipeError, match="NAME:TAG"):
        hub.Wanted.parse(text)


def test_z2jh_profile_list_has_the_chart_structure():
    selection = hub.Selection(
        images=[
            hub.SelectedImage(
                label="aiidalab 2026-11-22", image="aiidalab", tag="2026-11-22", ref="r/i/aiidalab@sha256:a", digest="sha256:a"
            ),
            hub.SelectedImage(
                label="pyiron 2026-11-20", image="pyiron", tag="2026-11-20", ref="r/i/pyiron@sha256:b", digest="sha256:b"
            ),
        ]
    )
    values = yaml.safe_load(hub.render_z2jh(selection))
    assert list(values) == ["singleuser"] and list(values["singleuser"]) == ["profileList"]
    profiles = values["singleuser"]["profileList"]
    allowed = {"display_name", "description", "default", "slug", "kubespawner_override", "profile_options"}
    for profile in profiles:
        assert set(profile) <= allowed and isinstance(profile["display_name"], str)
        assert set(profile["kubespawner_override"]) == {"image"}
    assert [p["default"] for p in profiles] == [True, False]
    assert profiles[1]["kubespawner_override"]["image"] == "r/i/pyiron@sha256:b"
    with pytest.raises(RecipeError, match="no images are selected"):
        hub.render_z2jh(hub.Selection())
