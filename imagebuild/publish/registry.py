"""The registry images are published to: a client of its HTTP API (the registry is the truth
about what is published) and, for the bundled default, a local registry on loopback.

Credentials come from the standard Docker config (~/.docker/config.json, credential helpers
included, read by oras) or from IMAGEBUILD_REGISTRY_USER / IMAGEBUILD_REGISTRY_PASSWORD; they
are never written anywhere or logged. Registries on loopback are spoken to over http, as the
Docker engine does; every other one over https.
"""

import io
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from imagebuild.errors import PublishError, connection_reason
from imagebuild.system import apt_install, cache_dir

USER_VARIABLE, PASSWORD_VARIABLE = "IMAGEBUILD_REGISTRY_USER", "IMAGEBUILD_REGISTRY_PASSWORD"
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
TIMEOUT = 30


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in ("localhost", "[::1]") or name.startswith("127.")


def env_credentials() -> tuple[str, str] | None:
    user, password = os.environ.get(USER_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    return (user, password) if user and password else None


@dataclass(frozen=True)
class RemoteImage:
    """A tag as the registry has it: the manifest digest, and the image ID (config digest) it names."""

    tag: str
    digest: str
    config_digest: str
    labels: dict[str, str]
    created: str | None
    layers: tuple[tuple[str, int], ...] = ()  # (digest, compressed size), bottom first

    @property
    def size(self) -> int:
        """Bytes a pull transfers: the compressed layers."""
        return sum(size for _, size in self.layers)


class Registry:
    """The registry's HTTP API v2, for the few questions imagebuild asks of it."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.scheme = "http" if is_loopback(host) else "https"
        import oras.container  # oras (and its jsonschema) only when a registry is spoken to
        import oras.provider

        self._oras = oras.provider.Registry(hostname=host, insecure=self.scheme == "http")
        credentials = env_credentials()
        if credentials is not None:
            self._oras.auth.set_basic_auth(*credentials)
        else:
            self._oras.auth.load_configs(oras.container.Container(f"{host}/probe", registry=host))

    def _request(
        self, method: str, path: str, headers: dict[str, str] | None = None, data: bytes | None = None
    ) -> requests.Response:
        """One request, answering an authentication challenge once (oras's token flow), never retried here."""
        url = f"{self.scheme}://{self.host}{path}"
        headers = dict(headers or {})
        try:
            response = self._oras.session.request(method, url, headers=headers, data=data, timeout=TIMEOUT)
            if response.status_code in (401, 403):
                headers, changed = self._oras.auth.authenticate_request(response, headers)
                if changed:
                    response = self._oras.session.request(method, url, headers=headers, data=data, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise PublishError(
                f"registry {self.host} does not answer: {connection_reason(error)}",
                hint="start it ('imagebuild registry up' for the bundled one) or pass --registry HOST[:PORT]",
            ) from None
        if response.status_code in (401, 403):
            raise PublishError(
                f"registry {self.host} refused the credentials (HTTP {response.status_code})",
                hint=f"log in with 'docker login {self.host}' or set {USER_VARIABLE} and {PASSWORD_VARIABLE}",
            )
        return response

    def ping(self) -> None:
        response = self._request("GET", "/v2/")
        if response.status_code != 200:
            raise PublishError(f"{self.host} is not a registry (GET /v2/ answered HTTP {response.status_code})")

    def tags(self, repository: str) -> list[str]:
        """Every tag of `repository`, following the API's pagination."""
        found: list[str] = []
        path = f"/v2/{repository}/tags/list?n=1000"
        while path:
            response = self._request("GET", path)
            if response.status_code == 404:
                return []
            _check(response, f"listing the tags of {repository}")
            found += response.json().get("tags") or []
            link = response.headers.get("Link", "")
            path = link.split(";")[0].strip("<> ") if 'rel="next"' in link else ""
        return sorted(found)

    def image(self, repository: str, tag: str) -> RemoteImage | None:
        """What `tag` names in the registry, or None when the registry has no such tag."""
        response = self._request("GET", f"/v2/{repository}/manifests/{tag}", {"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        _check(response, f"reading {repository}:{tag}")
        manifest = response.json()
        digest = response.headers.get("Docker-Content-Digest", "")
        config_digest = manifest.get("config", {}).get("digest", "")
        config = {}
        if config_digest:
            blob = self._request("GET", f"/v2/{repository}/blobs/{config_digest}")
            _check(blob, f"reading the configuration of {repository}:{tag}")
            config = blob.json()
        return RemoteImage(
            tag=tag,
            digest=digest,
            config_digest=config_digest,
            labels=(config.get("config") or {}).get("Labels") or {},
            created=config.get("created"),
            layers=tuple((layer["digest"], layer.get("size", 0)) for layer in manifest.get("layers") or []),
        )

    def retag(self, repository: str, digest: str, tag: str) -> None:
        """Point `tag` at the manifest `digest` of the same repository, in the registry alone
        (no pull, no push of layers): how moving tags follow an image that is already published."""
        found = self._request("GET", f"/v2/{repository}/manifests/{digest}", {"Accept": ", ".join(MANIFEST_TYPES)})
        _check(found, f"reading {repository}@{digest[:19]}")
        media_type = found.headers.get("Content-Type", MANIFEST_TYPES[0])
        put = self._request("PUT", f"/v2/{repository}/manifests/{tag}", {"Content-Type": media_type}, found.content)
        _check(put, f"tagging {repository}@{digest[:19]} as {tag}")

    def delete(self, repository: str, digest: str) -> None:
        """Delete the manifest `digest` and with it every tag naming it (the registry must allow
        deletes; its garbage collection frees the layers later)."""
        response = self._request("DELETE", f"/v2/{repository}/manifests/{digest}")
        if response.status_code == 405:
            raise PublishError(
                f"registry {self.host} does not allow deleting {repository}@{digest[:19]} (HTTP 405)",
                hint="enable deletes (distribution: storage.delete.enabled: true), or set [nightly] prune = false in imagebuild.toml",
            )
        _check(response, f"deleting {repository}@{digest[:19]}")

    def read_file(self, repository: str, image: RemoteImage, path: str, *, top_layers: int = 3) -> bytes | None:
        """The file at `path` (absolute) as the image's top layers hold it, newest first; None if
        none of them has it. Reads only those (small) layer blobs, not the image."""
        member = path.lstrip("/")
        for digest, _size in reversed(image.layers[-top_layers:]):
            blob = self._request("GET", f"/v2/{repository}/blobs/{digest}")
            _check(blob, f"reading layer {digest[:19]} of {repository}:{image.tag}")
            with tarfile.open(fileobj=io.BytesIO(blob.content)) as layer:
                try:
                    handle = layer.extractfile(member)
                except KeyError:
                    continue
                if handle is not None:
                    return handle.read()
        return None


def _check(response: requests.Response, doing: str) -> None:
    if response.status_code >= 400:
        raise PublishError(f"{doing}: the registry answered HTTP {response.status_code}: {response.text[:200]}")



# -- the bundled registry ----------------------------------------------------------------------

REGISTRY_PACKAGES = ["docker-registry"]
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {address}
"""


def answers(host: str) -> bool:
    try:
        return requests.get(f"http://{host}/v2/", timeout=2).status_code in (200, 401)
    except requests.RequestException:
        return False


def up(host: str, say: Callable[[str], None], *, storage: Path | None = None) -> int | None:
    """Make a registry answer at `host` (loopback only): use a running one, or start Debian's
    docker-registry; returns the process ID of a registry it started."""
    if answers(host):
        say(f"using the registry at {host}")
        return None
    if not is_loopback(host):
        raise PublishError(f"registry {host} does not answer", hint="imagebuild starts a registry on loopback only")
    folder = cache_dir() / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "registry.log"
    if shutil.which("docker-registry") is None:
        say(f"no registry found; installing {', '.join(REGISTRY_PACKAGES)} (log: {log})")
        apt_install(REGISTRY_PACKAGES, log=log)
    config = folder / f"config-{host.replace(':', '-')}.yml"
    config.write_text(REGISTRY_CONFIG.format(storage=storage or folder / "data", address=host))
    say(f"starting docker-registry at {host} (log: {log})")
    with log.open("ab") as sink:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if answers(host):
            return process.pid
        time.sleep(0.3)
    raise PublishError(f"docker-registry did not answer at {host} within 30 s", path=log, hint="read the registry log")
