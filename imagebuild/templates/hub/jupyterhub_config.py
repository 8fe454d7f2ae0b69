# JupyterHub configuration written by `imagebuild hub init`. Edit hub.toml, not this file:
# it reads hub.toml (settings) once at start, and images.toml (the images users may start,
# written by `imagebuild hub select`) at every spawn, so a new selection needs no restart.
# Secrets come from the environment (the .env file beside it, mode 0600).
# ruff: noqa
# type: ignore

import os
import tomllib
from pathlib import Path

import docker.errors
from dockerspawner import DockerSpawner
from jupyterhub.utils import random_port

HUB_DIR = Path(os.environ.get("IMAGEBUILD_HUB_DIR", Path(__file__).parent))
settings = tomllib.loads((HUB_DIR / "hub.toml").read_text())
c = get_config()  # noqa: F821


def selected_images(spawner=None) -> dict:
    """label -> image reference, re-read from images.toml at each spawn."""
    selection = tomllib.loads((HUB_DIR / "images.toml").read_text())
    return {item["label"]: item["ref"] for item in selection.get("images", [])}


def options_form(spawner) -> str:
    options = "".join(f'<option value="{label}">{label}</option>' for label in selected_images())
    return f'<label for="image">Image</label><select class="form-control" name="image" required>{options}</select>'


class PinnedImageSpawner(DockerSpawner):
    """Pulls images selected by digest (name@sha256:...), which DockerSpawner would split as name:tag."""

    async def pull_image(self, image):
        if "@" not in image:
            return await super().pull_image(image)
        try:
            await self.docker("inspect_image", image)
        except docker.errors.NotFound:
            repository, digest = image.split("@", 1)
            self.log.info("pulling %s", image)
            await self.docker("pull", repository, digest)


class HostNetworkSpawner(PinnedImageSpawner):
    """User containers on the host's network (single-server and loopback setups): each gets a free port,
    and so does each service the bundled images run inside their containers (aiidalab's PostgreSQL,
    RabbitMQ and Erlang's port mapper), which would otherwise collide between two users' servers."""

    service_ports = ("AIIDA_POSTGRES_PORT", "AIIDA_BROKER_PORT", "RABBITMQ_DIST_PORT", "ERL_EPMD_PORT")

    async def start(self):
        self.port = random_port()
        return await super().start()

    def get_env(self):
        return {**super().get_env(), **{name: str(random_port()) for name in self.service_ports}}

    async def get_ip_and_port(self):
        return self.host_ip, self.port


network = settings.get("network", "jupyterhub")
host_network = network == "host"
c.JupyterHub.spawner_class = HostNetworkSpawner if host_network else PinnedImageSpawner
c.DockerSpawner.allowed_images = selected_images
c.DockerSpawner.options_form = options_form
c.DockerSpawner.network_name = network
c.DockerSpawner.use_internal_ip = True  # on the compose network by container IP; on host, no port bindings
c.DockerSpawner.remove = True  # the home volume persists; the container follows the selection
c.DockerSpawner.pull_policy = "ifnotpresent"
c.DockerSpawner.notebook_dir = "/home/jovyan"
c.DockerSpawner.volumes = {settings["volumes"]["home"]: "/home/jovyan"}
if settings["volumes"].get("shared_data"):
    c.DockerSpawner.read_only_volumes = {settings["volumes"]["shared_data"]: "/home/jovyan/shared"}
if settings["volumes"].get("team"):
    c.DockerSpawner.volumes[settings["volumes"]["team"]] = "/home/jovyan/team"
c.DockerSpawner.mem_limit = settings["limits"]["memory"]
c.DockerSpawner.cpu_limit = float(settings["limits"]["cpus"])
c.DockerSpawner.environment = dict(settings.get("environment", {}))

port = int(settings.get("port", 8000))
c.JupyterHub.bind_url = f"http://{'127.0.0.1' if host_network else '0.0.0.0'}:{port}"
if host_network:  # the hub's API and the proxy's API on the two ports after the public one
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = port + 1
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{port + 2}"
else:
    c.JupyterHub.hub_ip = "0.0.0.0"
    c.JupyterHub.hub_connect_ip = "hub"
tls = settings.get("tls", {})
if tls.get("certificate"):
    c.JupyterHub.ssl_cert = tls["certificate"]
    c.JupyterHub.ssl_key = tls["key"]
    c.JupyterHub.bind_url = c.JupyterHub.bind_url.replace("http://", "https://")

data = Path(os.environ.get("IMAGEBUILD_HUB_DATA", HUB_DIR / "data"))
data.mkdir(parents=True, exist_ok=True)
c.JupyterHub.db_url = os.environ.get("JUPYTERHUB_DB_URL") or f"sqlite:///{data / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(data / "jupyterhub-proxy.pid")

authenticator = settings["authenticator"]
kind = authenticator["kind"]
if kind == "dummy":
    if not settings.get("development"):
        raise SystemExit("hub.toml: authenticator kind 'dummy' needs development = true; never use it in production")
    print("!" * 78 + "\nWARNING: development mode: the dummy authenticator lets anyone log in as anyone.\n" + "!" * 78)
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allow_all = True
elif kind == "native":
    c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
elif kind in ("github", "generic"):
    c.JupyterHub.authenticator_class = "github" if kind == "github" else "generic-oauth"
    c.OAuthenticator.client_id = os.environ["OAUTH_CLIENT_ID"]
    c.OAuthenticator.client_secret = os.environ["OAUTH_CLIENT_SECRET"]
    c.OAuthenticator.oauth_callback_url = authenticator["oauth_callback_url"]
    if kind == "generic":
        c.GenericOAuthenticator.authorize_url = authenticator["authorize_url"]
        c.GenericOAuthenticator.token_url = authenticator["token_url"]
        c.GenericOAuthenticator.userdata_url = authenticator["userdata_url"]
        c.GenericOAuthenticator.username_claim = authenticator.get("username_claim", "preferred_username")
    c.OAuthenticator.allow_all = not authenticator.get("allowed_users")
c.Authenticator.admin_users = set(authenticator.get("admin_users", []))
c.Authenticator.allowed_users = set(authenticator.get("allowed_users", []))

admin_token = os.environ.get("IMAGEBUILD_HUB_ADMIN_TOKEN")
if admin_token:  # for automation (and imagebuild's own tests): an admin service with this token
    c.JupyterHub.services = [{"name": "imagebuild-admin", "api_token": admin_token}]
    c.JupyterHub.load_roles = [{"name": "admin", "services": ["imagebuild-admin"]}]
