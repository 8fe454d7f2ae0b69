"""`hub render --target z2jh`: the hub as a Zero-to-JupyterHub values file, for sites on Kubernetes.

The values say what the compose hub's jupyterhub_config.py says, in the chart's terms: the
selected images by digest (one profile each), the limits, the home and shared volumes, the
environment, the spawn timeouts, the authenticator and the idle culler. The chart's own hub
image (with KubeSpawner) is kept. Secrets (.env) are never written: the header says where
they go. tests/unit/test_z2jh.py validates the output against the chart's values schema.
"""

import re
from typing import Any
from urllib.parse import urlsplit

import yaml

from imagebuild.errors import RecipeError
from imagebuild.model.hub import HubSettings, Selection

HOME = "/home/jovyan"
# The chart's default singleuser.memory.guarantee (values.yaml); a smaller limit must lower it.
CHART_MEMORY_GUARANTEE = 1024**3
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# A PersistentVolumeClaim's name (DNS-1123 subdomain), checked with each placeholder as "x".
CLAIM_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
AUTHENTICATOR_CLASSES = {
    "native": "nativeauthenticator.NativeAuthenticator",
    "github": "github",
    "generic": "generic-oauth",
}
OAUTH_CLASSES = {"github": "GitHubOAuthenticator", "generic": "GenericOAuthenticator"}


def _memory(limit: str) -> tuple[str | int, int]:
    """hub.toml's memory as KubeSpawner's mem_limit takes it, and in bytes.

    KubeSpawner (like Docker) reads K, M, G and T as powers of 1024; a bare number of bytes
    must be an integer there, as a string it would be refused."""
    parsed = re.fullmatch(r"([0-9.]+)([KMGT]?)", limit)
    assert parsed is not None  # LimitSettings.memory has this pattern
    number, unit = parsed.groups()
    size = int(float(number) * UNITS[unit])
    return (limit if unit else size), size


DOCKER_TO_KUBE_PLACEHOLDERS = {
    "safe_username": "username",
    "raw_username": "unescaped_username",
    "raw_servername": "unescaped_servername",
}
"""DockerSpawner's volume placeholders as KubeSpawner spells them ({username} and {servername} are both's)."""


def _claim_template(settings: HubSettings, value: str) -> str | None:
    """A DockerSpawner volume name as a KubeSpawner claim name template, or None when it is no
    claim name (a host path, or characters Kubernetes refuses in a name)."""
    template = value.replace("{prefix}", f"{settings.name}-user")  # the compose hub's prefix, as a literal
    for docker_name, kube_name in DOCKER_TO_KUBE_PLACEHOLDERS.items():
        template = template.replace(f"{{{docker_name}}}", f"{{{kube_name}}}")
    if "{imagename}" in template or not CLAIM_NAME.match(re.sub(r"{[a-z_]+}", "x", template)):
        return None  # KubeSpawner has no image name to fill in
    return template


def _shared_volumes(settings: HubSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """extraVolumes and extraVolumeMounts for [volumes].shared_data (read-only) and .team."""
    volumes, mounts = [], []
    for field, name, mount_path, read_only in (
        ("shared_data", "shared-data", f"{HOME}/shared", True),
        ("team", "team", f"{HOME}/team", False),
    ):
        value = getattr(settings.volumes, field)
        if not value:
            continue
        claim = _claim_template(settings, value)
        if claim is None:
            raise RecipeError(
                f"[volumes].{field}: '{value}' cannot name a PersistentVolumeClaim on Kubernetes",
                hint="name a volume with lower-case letters, digits, '-' and '.' (a host path works with Compose only); "
                "create that claim in the hub's namespace" + (", ReadWriteMany" if not read_only else ""),
            )
        claim_source: dict[str, Any] = {"claimName": claim}
        mount: dict[str, Any] = {"name": name, "mountPath": mount_path}
        if read_only:
            claim_source["readOnly"] = True
            mount["readOnly"] = True
        volumes.append({"name": name, "persistentVolumeClaim": claim_source})
        mounts.append(mount)
    return volumes, mounts


def _singleuser(settings: HubSettings, selection: Selection) -> dict[str, Any]:
    memory_limit, memory_bytes = _memory(settings.limits.memory)
    memory: dict[str, Any] = {"limit": memory_limit}
    if memory_bytes < CHART_MEMORY_GUARANTEE:
        memory["guarantee"] = memory_limit  # a guarantee above the limit is refused by Kubernetes
    storage: dict[str, Any] = {"type": "dynamic", "homeMountPath": HOME}
    home_claim = _claim_template(settings, settings.volumes.home)
    if home_claim is not None:
        storage["dynamic"] = {"pvcNameTemplate": home_claim}
    volumes, mounts = _shared_volumes(settings)
    if volumes:
        storage["extraVolumes"] = volumes
        storage["extraVolumeMounts"] = mounts
    singleuser: dict[str, Any] = {
        "profileList": [
            {
                "display_name": item.label,
                "description": item.ref,
                "default": index == 0,
                "kubespawner_override": {"image": item.ref},
            }
            for index, item in enumerate(selection.images)
        ],
        # the image's own CMD (start-singleuser.sh runs its start hooks), as DockerSpawner does
        "cmd": None,
        "memory": memory,
        "cpu": {"limit": settings.limits.cpus},
        "storage": storage,
        "startTimeout": settings.spawn.start_timeout,
    }
    if settings.environment:
        singleuser["extraEnv"] = dict(settings.environment)
    return singleuser


def _callback_url(url: str) -> str:
    """hub.toml's OAuth callback, unless it points at this machine (useless on a cluster)."""
    host = urlsplit(url).hostname or ""
    return "" if host in ("", "localhost", "0.0.0.0") or host.startswith("127.") else url


def _authentication(settings: HubSettings) -> dict[str, Any]:
    """hub.config's authenticator part: what jupyterhub_config.py sets, without client id or secret."""
    auth = settings.authenticator
    if auth.kind == "dummy":
        raise RecipeError(
            "[authenticator].kind: 'dummy' lets anyone log in as anyone; a Zero-to-JupyterHub deployment is for production",
            hint="set kind to native, github or generic in hub.toml",
        )
    config: dict[str, Any] = {"JupyterHub": {"authenticator_class": AUTHENTICATOR_CLASSES[auth.kind]}}
    authenticator: dict[str, Any] = {"admin_users": list(auth.admin_users)}
    if auth.kind == "native":
        config["NativeAuthenticator"] = {"open_signup": auth.open_signup}
        authenticator["allow_all"] = True  # NativeAuthenticator itself admits only approved users
    else:
        oauth: dict[str, Any] = {}
        callback = _callback_url(auth.oauth_callback_url)
        if callback:
            oauth["oauth_callback_url"] = callback
        oauth["allow_all"] = auth.allow_all
        if auth.kind == "github":
            oauth["allowed_organizations"] = list(auth.allowed_organizations)
        else:
            oauth.update(
                authorize_url=auth.authorize_url,
                token_url=auth.token_url,
                userdata_url=auth.userdata_url,
                username_claim=auth.username_claim,
                scope=list(auth.scope),
            )
            if auth.allowed_groups:
                oauth.update(
                    manage_groups=True,
                    auth_state_groups_key=f"oauth_user.{auth.claim_groups_key}",
                    allowed_groups=list(auth.allowed_groups),
                )
        config[OAUTH_CLASSES[auth.kind]] = oauth
        authenticator["allowed_users"] = list(auth.allowed_users)
    config["Authenticator"] = authenticator
    return config


def _header(settings: HubSettings) -> str:
    auth = settings.authenticator
    lines = [
        "Zero-to-JupyterHub values written by `imagebuild hub render --target z2jh`, from the hub",
        f"'{settings.name}' (hub.toml and images.toml): the same images (by digest), limits, volumes,",
        "environment and authentication as its compose hub. Render again after `imagebuild hub select`.",
        "",
        "Not here, add them yourself:",
    ]
    if auth.kind in OAUTH_CLASSES:
        oauth_class = OAUTH_CLASSES[auth.kind]
        lines += [
            "- the OAuth client (OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET of the hub's .env) as",
            f"  hub.config.{oauth_class}.client_id and .client_secret, in a separate values file kept",
            "  out of version control (helm upgrade ... --values values.yaml --values secrets.yaml;",
            "  the chart keeps hub.config in a Kubernetes Secret), or through hub.existingSecret.",
        ]
        if not _callback_url(auth.oauth_callback_url):
            lines += [
                f"- hub.config.{oauth_class}.oauth_callback_url: https://YOUR-HOST/hub/oauth_callback (hub.toml",
                f"  has {auth.oauth_callback_url or 'none'}, which a cluster cannot serve); register it with the provider.",
            ]
    lines.append("- https: ingress.enabled, ingress.hosts and ingress.tls (or proxy.https with Let's Encrypt)")
    if settings.proxy.domain:
        lines.append(f"  for your host; the compose hub serves https://{settings.proxy.domain}.")
    if settings.volumes.shared_data or settings.volumes.team:
        lines.append("- the PersistentVolumeClaims of singleuser.storage.extraVolumes, in the hub's namespace.")
    lines.append(f"- imagePullSecrets, if {settings.registry} needs a login to pull the user images.")
    return "".join(f"# {line}".rstrip() + "\n" for line in "\n".join(lines).splitlines())


def render_z2jh(settings: HubSettings, selection: Selection) -> str:
    """A Zero-to-JupyterHub values file for the hub these settings and this selection describe."""
    if not selection.images:
        raise RecipeError("no images are selected", hint="run 'imagebuild hub select NAME:TAG...' first")
    hub_config = _authentication(settings)
    hub_config["Spawner"] = {"http_timeout": settings.spawn.http_timeout, "notebook_dir": HOME}
    idle = settings.idle_timeout
    cull: dict[str, Any] = {"enabled": idle > 0}
    if idle > 0:
        cull.update(timeout=idle, every=max(10, min(300, idle // 4)))  # as the compose hub's culler
    values = {
        "hub": {"config": hub_config},
        "singleuser": _singleuser(settings, selection),
        "cull": cull,
    }
    return _header(settings) + yaml.safe_dump(values, sort_keys=False)
