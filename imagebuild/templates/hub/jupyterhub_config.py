# JupyterHub configuration written by `imagebuild hub init`. Edit hub.toml, not this file:
# it reads hub.toml (settings) once at start, and images.toml (the images users may start,
# written by `imagebuild hub select`) at every spawn, so a new selection needs no restart.
# Secrets are read from .env beside it (mode 0600, mounted read-only), never from variables,
# so they appear in no container's configuration.
# ruff: noqa
# type: ignore

import asyncio
import os
import sys
import time
import tomllib
from pathlib import Path
from urllib.parse import quote

import docker.errors
from dockerspawner import DockerSpawner

HUB_DIR = Path(os.environ.get("IMAGEBUILD_HUB_DIR", Path(__file__).parent))
settings = tomllib.loads((HUB_DIR / "hub.toml").read_text())
secrets = dict(
    line.split("=", 1) for line in (HUB_DIR / ".env").read_text().splitlines() if "=" in line and not line.startswith("#")
)
c = get_config()  # noqa: F821
name = settings.get("name", "hub")


def refuse(message: str) -> None:
    """Stop the hub with one line naming hub.toml (`imagebuild hub check` says the same)."""
    raise SystemExit(f"hub.toml: {message}")


def selected_images(spawner=None) -> dict:
    """label -> image reference, re-read from images.toml at each spawn."""
    selection = tomllib.loads((HUB_DIR / "images.toml").read_text())
    return {item["label"]: item["ref"] for item in selection.get("images", [])}


def options_form(spawner) -> str:
    options = "".join(f'<option value="{label}">{label}</option>' for label in selected_images())
    return f'<label for="image">Image</label><select class="form-control" name="image" required>{options}</select>'


class HubSpawner(DockerSpawner):
    """DockerSpawner for images selected by digest (name@sha256:..., which DockerSpawner would
    split as name:tag), with progress on the spawn page while a large image starts, and a stop
    that returns once the container is really gone."""

    async def pull_image(self, image):
        if "@" not in image:
            return await super().pull_image(image)
        try:
            await self.docker("inspect_image", image)
        except docker.errors.NotFound:
            repository, digest = image.split("@", 1)
            self.log.info("pulling %s", image)
            await self.docker("pull", repository, digest)

    async def remove_object(self):
        """Wait until the container is gone: with `remove`, the engine deletes a stopped container
        in the background, and the user's next server (same name) could not be created meanwhile."""
        await super().remove_object()
        for _ in range(240):
            if await self.get_object() is None:
                return
            await asyncio.sleep(0.5)
        self.log.warning("%s is still not removed after 120 s", self.object_name)

    async def progress(self):
        began = time.monotonic()
        label = self.user_options.get("image", "the image")
        while True:  # JupyterHub stops reading when the server is up or the spawn failed
            seconds = int(time.monotonic() - began)
            yield {
                "progress": min(95, 10 + seconds // 2),
                "message": f"Starting {label}: {seconds} s. A first start of a large image may take a minute.",
            }
            await asyncio.sleep(2)


c.JupyterHub.spawner_class = HubSpawner
c.DockerSpawner.allowed_images = selected_images
c.DockerSpawner.options_form = options_form
c.DockerSpawner.network_name = f"{name}-jupyterhub"
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True  # the home volume persists; the container follows the selection
c.DockerSpawner.prefix = f"{name}-user"
c.DockerSpawner.extra_create_kwargs = {"labels": {"io.imagebuild.hub": name}}  # `imagebuild hub status|down` find them
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
spawn = settings.get("spawn", {})
c.Spawner.start_timeout = int(spawn.get("start_timeout", 600))
c.Spawner.http_timeout = int(spawn.get("http_timeout", 300))
c.JupyterHub.cleanup_servers = False  # a recreated hub (hub.toml changed) leaves users' servers running

c.JupyterHub.bind_url = "http://0.0.0.0:8000"  # compose publishes it on hub.toml's bind_address and port
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = "hub"
data = Path(os.environ.get("IMAGEBUILD_HUB_DATA", HUB_DIR / "data"))
data.mkdir(parents=True, exist_ok=True)
# JupyterHub redacts the password when it logs this URL
c.JupyterHub.db_url = f"postgresql+psycopg2://jupyterhub:{quote(secrets['POSTGRES_PASSWORD'], safe='')}@db/jupyterhub"
c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(data / "jupyterhub-proxy.pid")

authenticator = settings["authenticator"]
kind = authenticator["kind"]
admins = set(authenticator.get("admin_users", []))
if kind == "dummy":
    if not settings.get("development"):
        refuse("authenticator kind 'dummy' needs development = true; never use it in production")
    print("!" * 78 + "\nWARNING: development mode: the dummy authenticator lets anyone log in as anyone.\n" + "!" * 78)
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allow_all = True
elif kind == "native":
    if not admins:
        refuse("[authenticator].admin_users is empty: nobody could approve a sign-up")
    c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
    c.NativeAuthenticator.open_signup = bool(authenticator.get("open_signup", False))
    c.Authenticator.allow_all = True  # NativeAuthenticator itself admits only approved users
elif kind in ("github", "generic"):
    named = authenticator.get("allowed_users", []) or admins
    named = named or authenticator.get("allowed_organizations" if kind == "github" else "allowed_groups", [])
    if not named and not authenticator.get("allow_all"):
        refuse(f"a {kind} hub must say who may log in (allowed_users, ...) or set allow_all = true")
    c.JupyterHub.authenticator_class = "github" if kind == "github" else "generic-oauth"
    c.OAuthenticator.client_id = secrets.get("OAUTH_CLIENT_ID", "")
    c.OAuthenticator.client_secret = secrets.get("OAUTH_CLIENT_SECRET", "")
    c.OAuthenticator.oauth_callback_url = authenticator["oauth_callback_url"]
    c.OAuthenticator.allow_all = bool(authenticator.get("allow_all", False))
    if kind == "github":
        c.GitHubOAuthenticator.allowed_organizations = set(authenticator.get("allowed_organizations", []))
    else:
        c.GenericOAuthenticator.authorize_url = authenticator["authorize_url"]
        c.GenericOAuthenticator.token_url = authenticator["token_url"]
        c.GenericOAuthenticator.userdata_url = authenticator["userdata_url"]
        c.GenericOAuthenticator.username_claim = authenticator.get("username_claim", "preferred_username")
        c.GenericOAuthenticator.scope = list(authenticator.get("scope", ["openid", "profile", "email"]))
        if authenticator.get("allowed_groups"):
            c.GenericOAuthenticator.manage_groups = True
            c.GenericOAuthenticator.auth_state_groups_key = f"oauth_user.{authenticator.get('claim_groups_key', 'groups')}"
            c.GenericOAuthenticator.allowed_groups = set(authenticator["allowed_groups"])
    c.Authenticator.allowed_users = set(authenticator.get("allowed_users", []))
c.Authenticator.admin_users = admins

# Services: `imagebuild hub status` and automation use the API token from .env; the idle culler
# stops servers nobody used for idle_timeout seconds.
c.JupyterHub.services = [{"name": "imagebuild", "api_token": secrets["IMAGEBUILD_HUB_API_TOKEN"]}]
c.JupyterHub.load_roles = [{"name": "admin", "services": ["imagebuild"]}]
idle_timeout = int(settings.get("idle_timeout", 3600))
if idle_timeout > 0:
    c.JupyterHub.services.append(
        {
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={idle_timeout}", f"--cull-every={max(10, min(300, idle_timeout // 4))}"],
        }
    )
    c.JupyterHub.load_roles.append(
        {"name": "idle-culler", "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"], "services": ["idle-culler"]}
    )
