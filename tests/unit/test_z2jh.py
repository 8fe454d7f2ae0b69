"""`hub render --target z2jh`: the values file validates against the Zero to JupyterHub chart's
own schema (as Helm checks it: the chart's defaults merged with the file) and says what the
compose hub says: images by digest, limits, volumes, environment, timeouts, authentication,
culler. No secret of .env reaches it; a dummy hub or an empty selection is refused."""

import copy

import jsonschema
import pytest
import yaml

from imagebuild.errors import RecipeError
from imagebuild.hub import folder as hub_folder
from imagebuild.hub.z2jh import render_z2jh
from imagebuild.model.hub import HubFolder, HubSettings, SelectedImage, Selection
from imagebuild.model.project import load_project
from tests.conftest import REPO

REGISTRY = "registry.example.org"
CHART = REPO.parent / "shared" / "z2jh"
DIGESTS = ("sha256:" + "a" * 64, "sha256:" + "b" * 64)
SELECTION = Selection(
    images=[
        SelectedImage(
            label=f"{name} 2026-11-22",
            image=name,
            tag="2026-11-22",
            ref=f"{REGISTRY}/imagebuild/{name}@{digest}",
            digest=digest,
        )
        for name, digest in zip(("base", "aiidalab"), DIGESTS, strict=True)
    ]
)
CLIENT_ID, CLIENT_SECRET = "client-id-4f1c9e", "client-secret-77d02b1a"


@pytest.fixture(scope="module")
def chart() -> tuple[dict, dict]:
    """The chart's values schema and its default values (shared/ lies beside every checkout, CI's too)."""
    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return schema, defaults


def _merged(defaults: dict, values: dict) -> dict:
    """What Helm validates: the defaults with the values file merged in (maps merged, lists
    replaced, null deleting a default)."""
    merged = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _errors(chart: tuple[dict, dict], values: dict) -> list[str]:
    schema, defaults = chart
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_merged(defaults, values))]


def _init(tmp_path, make_project, **options):
    folder = tmp_path / "myhub"
    request = hub_folder.HubInit(folder=folder, registry=REGISTRY, admin="alice", **options)
    hub_folder.init(load_project(make_project.root), request)
    secrets = folder / ".env"  # an OAuth hub's client, as its admin fills it in
    text = secrets.read_text().replace("OAUTH_CLIENT_ID=\n", f"OAUTH_CLIENT_ID={CLIENT_ID}\n")
    secrets.write_text(text.replace("OAUTH_CLIENT_SECRET=\n", f"OAUTH_CLIENT_SECRET={CLIENT_SECRET}\n"))
    return folder


def _edit(folder, old: str, new: str) -> None:
    path = folder / "hub.toml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


def _render(folder, chart) -> tuple[str, dict]:
    """The values file of this hub folder, checked against the schema and for leaked secrets."""
    hub = HubFolder(folder)
    text = render_z2jh(hub.settings, SELECTION)
    values = yaml.safe_load(text)
    assert _errors(chart, values) == []
    for value in hub.secrets.values():
        assert not value or value not in text
    return text, values


def test_a_native_hub_is_valid_values_with_the_selected_digests_limits_and_home(tmp_path, make_project, chart):
    folder = _init(tmp_path, make_project)
    text, values = _render(folder, chart)
    assert text.startswith("# Zero-to-JupyterHub values written by `imagebuild hub render --target z2jh`")
    assert set(values) == {"hub", "singleuser", "cull"}  # the chart's own hub image is kept
    singleuser = values["singleuser"]
    profiles = singleuser["profileList"]
    assert [p["kubespawner_override"]["image"] for p in profiles] == [item.ref for item in SELECTION.images]
    assert all("@sha256:" in p["kubespawner_override"]["image"] for p in profiles)
    assert [p["default"] for p in profiles] == [True, False]
    assert singleuser["memory"] == {"limit": "4G"} and singleuser["cpu"] == {"limit": 2.0}
    assert singleuser["storage"] == {
        "type": "dynamic",
        "homeMountPath": "/home/jovyan",
        "dynamic": {"pvcNameTemplate": "myhub-user-{username}"},
    }
    assert "cmd" in singleuser and singleuser["cmd"] is None  # the image's start-singleuser.sh, as with DockerSpawner
    assert "extraEnv" not in singleuser
    assert singleuser["startTimeout"] == 600
    config = values["hub"]["config"]
    assert config["JupyterHub"] == {"authenticator_class": "nativeauthenticator.NativeAuthenticator"}
    assert config["NativeAuthenticator"] == {"open_signup": False}
    assert config["Authenticator"] == {"admin_users": ["alice"], "allow_all": True}
    assert config["Spawner"]["http_timeout"] == 300
    assert values["cull"] == {"enabled": True, "timeout": 3600, "every": 300}
    assert "client_id" not in text and "oauth_callback_url" not in text  # no OAuth client to ask for


def test_a_github_hub_names_its_organizations_and_leaves_the_client_to_a_secret(tmp_path, make_project, chart):
    folder = _init(tmp_path, make_project, authenticator="github", proxy_domain="hub.example.org")
    _edit(folder, "allowed_organizations = []", 'allowed_organizations = ["my-org", "other-org"]')
    _edit(folder, "allowed_users = []", 'allowed_users = ["bob"]')
    text, values = _render(folder, chart)
    config = values["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "github"
    assert config["GitHubOAuthenticator"] == {
        "oauth_callback_url": "https://hub.example.org/hub/oauth_callback",
        "allow_all": False,
        "allowed_organizations": ["my-org", "other-org"],
    }
    assert config["Authenticator"] == {"admin_users": ["alice"], "allowed_users": ["bob"]}
    assert CLIENT_ID not in text and CLIENT_SECRET not in text
    assert "client_id" not in yaml.safe_dump(values)  # only the header says where the client goes
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    assert "hub.config.GitHubOAuthenticator.client_id" in header and "hub.existingSecret" in header
    assert "https://hub.example.org" in header and "ingress" in header


def test_a_generic_hub_manages_groups_as_the_compose_hub_does(tmp_path, make_project, chart):
    folder = _init(tmp_path, make_project, authenticator="generic")
    realm = "https://id.example.org/realms/lab/protocol/openid-connect"
    _edit(folder, 'authorize_url = ""', f'authorize_url = "{realm}/auth"')
    _edit(folder, 'token_url = ""', f'token_url = "{realm}/token"')
    _edit(folder, 'userdata_url = ""', f'userdata_url = "{realm}/userinfo"')
    _edit(folder, "allowed_groups = []", 'allowed_groups = ["lab-members"]')
    _edit(folder, 'claim_groups_key = "groups"', 'claim_groups_key = "roles"')
    text, values = _render(folder, chart)
    config = values["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "generic-oauth"
    generic = config["GenericOAuthenticator"]
    assert generic["authorize_url"] == f"{realm}/auth" and generic["token_url"] == f"{realm}/token"
    assert generic["userdata_url"] == f"{realm}/userinfo" and generic["username_claim"] == "preferred_username"
    assert generic["allowed_groups"] == ["lab-members"] and generic["manage_groups"] is True
    assert generic["auth_state_groups_key"] == "oauth_user.roles"
    # hub.toml's callback is the compose hub's loopback address: left out, and the header says so
    assert "oauth_callback_url" not in generic and "hub.config.GenericOAuthenticator.oauth_callback_url" in text
    assert CLIENT_SECRET not in text


def test_shared_volumes_environment_and_limits_reach_the_user_pods(tmp_path, make_project, chart):
    folder = _init(tmp_path, make_project)
    _edit(folder, 'shared_data = ""', 'shared_data = "datasets"')
    _edit(folder, 'team = ""', 'team = "myhub-team"')
    _edit(folder, "# extra environment of every user container, e.g. AIIDALAB_REGISTRY = \"...\"",
          'AIIDALAB_REGISTRY = "https://aiidalab.example.org"\nOMP_NUM_THREADS = "2"')
    _edit(folder, 'memory = "4G"', 'memory = "512M"')
    _edit(folder, "cpus = 2.0", "cpus = 0.5")
    _edit(folder, "start_timeout = 600", "start_timeout = 900")
    _edit(folder, "http_timeout = 300", "http_timeout = 120")
    _, values = _render(folder, chart)
    singleuser = values["singleuser"]
    storage = singleuser["storage"]
    assert storage["extraVolumes"] == [
        {"name": "shared-data", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}},
        {"name": "team", "persistentVolumeClaim": {"claimName": "myhub-team"}},
    ]
    assert storage["extraVolumeMounts"] == [
        {"name": "shared-data", "mountPath": "/home/jovyan/shared", "readOnly": True},
        {"name": "team", "mountPath": "/home/jovyan/team"},
    ]
    assert singleuser["extraEnv"] == {"AIIDALAB_REGISTRY": "https://aiidalab.example.org", "OMP_NUM_THREADS": "2"}
    # below the chart's 1G guarantee, the guarantee follows the limit (else Kubernetes refuses the pod)
    assert singleuser["memory"] == {"limit": "512M", "guarantee": "512M"} and singleuser["cpu"] == {"limit": 0.5}
    assert singleuser["startTimeout"] == 900 and values["hub"]["config"]["Spawner"]["http_timeout"] == 120


def test_idle_timeout_zero_disables_the_culler(tmp_path, make_project, chart):
    folder = _init(tmp_path, make_project)
    _edit(folder, "idle_timeout = 3600", "idle_timeout = 0")
    _, values = _render(folder, chart)
    assert values["cull"] == {"enabled": False}


def test_a_memory_limit_in_bytes_is_an_integer(tmp_path, make_project, chart):
    folder = _init(tmp_path, make_project)
    _edit(folder, 'memory = "4G"', 'memory = "2147483648"')
    _, values = _render(folder, chart)
    assert values["singleuser"]["memory"] == {"limit": 2147483648}  # KubeSpawner refuses a bare number as a string


def test_a_home_that_is_no_claim_name_keeps_the_charts_claim(tmp_path, make_project, chart):
    folder = _init(tmp_path, make_project)
    _edit(folder, 'home = "myhub-user-{username}"', 'home = "/srv/homes/{username}"')
    _, values = _render(folder, chart)
    assert values["singleuser"]["storage"] == {"type": "dynamic", "homeMountPath": "/home/jovyan"}


def test_a_host_path_cannot_be_a_shared_claim(tmp_path, make_project):
    folder = _init(tmp_path, make_project)
    _edit(folder, 'shared_data = ""', 'shared_data = "/srv/data"')
    hub = HubFolder(folder)
    with pytest.raises(RecipeError, match=r"\[volumes\]\.shared_data"):
        render_z2jh(hub.settings, SELECTION)


def test_an_empty_selection_and_the_dummy_authenticator_are_refused(tmp_path, make_project):
    settings = HubFolder(_init(tmp_path, make_project)).settings
    with pytest.raises(RecipeError, match="no images are selected"):
        render_z2jh(settings, Selection())
    dummy = HubSettings(
        registry=REGISTRY,
        hub_image=f"{REGISTRY}/imagebuild/hub:latest",
        database_image=f"{REGISTRY}/imagebuild/postgres:latest",
        development=True,
        authenticator={"kind": "dummy"},
    )
    with pytest.raises(RecipeError, match="production"):
        render_z2jh(dummy, SELECTION)


def test_the_schema_refuses_a_wrong_document(tmp_path, make_project, chart):
    """The validation bites: values the chart would refuse fail here too."""
    _, values = _render(_init(tmp_path, make_project), chart)
    wrong_memory = copy.deepcopy(values)
    wrong_memory["singleuser"]["memory"]["limit"] = {"size": "4G"}
    assert any(error.startswith("singleuser.memory.limit") for error in _errors(chart, wrong_memory))
    unknown_key = copy.deepcopy(values)
    unknown_key["singleuser"]["memoryLimit"] = "4G"
    assert any("memoryLimit" in error for error in _errors(chart, unknown_key))
    wrong_storage = copy.deepcopy(values)
    wrong_storage["singleuser"]["storage"]["type"] = "pvc"
    assert _errors(chart, wrong_storage)
    wrong_timeout = copy.deepcopy(values)
    wrong_timeout["singleuser"]["startTimeout"] = "600"
    assert _errors(chart, wrong_timeout)


def test_dockerspawners_placeholders_become_kubespawners(tmp_path, make_project, chart):
    """{raw_username} is KubeSpawner's {unescaped_username}; {imagename} has no KubeSpawner twin."""
    folder = _init(tmp_path, make_project)
    _edit(folder, 'team = ""', 'team = "team-{raw_username}"')
    _, values = _render(folder, chart)
    assert values["singleuser"]["storage"]["extraVolumes"][0]["persistentVolumeClaim"]["claimName"] == "team-{unescaped_username}"
    _edit(folder, 'team = "team-{raw_username}"', 'team = "team-{imagename}"')
    with pytest.raises(RecipeError, match=r"\[volumes\]\.team"):
        render_z2jh(HubFolder(folder).settings, SELECTION)


def test_a_placeholder_dockerspawner_does_not_fill_in_is_refused(tmp_path, make_project):
    folder = _init(tmp_path, make_project)
    _edit(folder, 'home = "myhub-user-{username}"', 'home = "myhub-user-{user_id}"')
    with pytest.raises(RecipeError, match=r"unknown placeholder \{user_id\}; DockerSpawner fills in") as caught:
        HubFolder(folder).check()
    assert "{raw_username}" in caught.value.message
