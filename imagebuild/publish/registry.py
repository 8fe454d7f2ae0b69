"""The registry images are published to: a client of its HTTP API (the registry is the truth
about what is published) and, for the bundled default, a local registry on loopback.

Credentials come from the run's configuration (IMAGEBUILD_REGISTRY_USER / _PASSWORD, read by
config.py) or else from the standard Docker config (~/.docker/config.json, credential helpers
included, read by oras); they are never written anywhere or logged. Registries on loopback are spoken to over http, as the
Docker engine does; every other one over https.
"""

import io
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from imagebuild.config import REGISTRY_PASSWORD, REGISTRY_USER
from imagebuild.errors import PublishError, connection_reason
from imagebuild.system import apt_install, cache_dir, serve

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

    def __init__(self, host: str, login: tuple[str, str] | None = None) -> None:
        self.host = host
        self.scheme = "http" if is_loopback(host) else "https"
        import oras.container  # oras (and its jsonschema) only when a registry is spoken to
        import oras.provider

        self._oras = oras.provider.Registry(hostname=host, insecure=self.scheme == "http")
        if login is not None:
            self._oras.auth.set_basic_auth(*login)
        else:
            self._oras.auth.load_configs(oras.container.Container(f"{host}/probe", registry=host))

    def _request(
        self, method: str, path: str, headers: dict[str, str] | None = None, data: bytes | None = None
    ) -> requests.Response:
        """One request, answering an authentication challenge once (oras's token flow), never retried here."""
        url = f"{self.scheme}://{self.host}{path}"
        headers = dict(headers or {})
        try:
            response: requests.Response = self._oras.session.request(method, url, headers=headers, data=data, timeout=TIMEOUT)
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
                hint=f"log in with 'docker login {self.host}' or set {REGISTRY_USER} and {REGISTRY_PASSWORD}",
            )
        answer: requests.Response = response
        return answer

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
            found += _json(response, f"listing the tags of {repository}").get("tags") or []
            link = response.headers.get("Link", "")
            path = link.split(";")[0].strip("<> ") if 'rel="next"' in link else ""
        return sorted(found)

    def image(self, repository: str, tag: str) -> RemoteImage | None:
        """What `tag` names in the registry, or None when the registry has no such tag."""
        response = self._request("GET", f"/v2/{repository}/manifests/{tag}", {"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        manifest = _json(response, f"reading {repository}:{tag}")
        digest = response.headers.get("Docker-Content-Digest", "")
        config_digest = manifest.get("config", {}).get("digest", "")
        config: dict[str, Any] = {}
        if config_digest:
            blob = self._request("GET", f"/v2/{repository}/blobs/{config_digest}")
            config = _json(blob, f"reading the configuration of {repository}:{tag}")
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
            doing = f"reading layer {digest[:19]} of {repository}:{image.tag}"
            blob = self._request("GET", f"/v2/{repository}/blobs/{digest}")
            _check(blob, doing)
            try:
                with tarfile.open(fileobj=io.BytesIO(blob.content)) as layer:
                    try:
                        handle = layer.extractfile(member)
                    except KeyError:
                        continue
                    if handle is not None:
                        return handle.read()
            except (tarfile.TarError, OSError) as error:  # OSError: a layer gzip cannot read
                raise PublishError(f"{doing}: the registry sent no readable layer ({error})") from None
        return None


def _check(response: requests.Response, doing: str) -> None:
    if response.status_code >= 400:
        raise PublishError(f"{doing}: the registry answered HTTP {response.status_code}: {response.text[:200]}")


def _json(response: requests.Response, doing: str) -> dict[str, Any]:
    """A successful answer's JSON object; anything else (an error page, a proxy's HTML) is a PublishError."""
    _check(response, doing)
    try:
        answer = response.json()
    except requests.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise PublishError(
            f"{doing}: the registry answered with no JSON object: {response.text[:200]!r}",
            hint="is the host a Docker registry (and not a web server or proxy in front of one)?",
        )
    return answer



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
    return serve(["docker-registry", "serve", str(config)], ready=lambda: answers(host), timeout=30, log=log, error=PublishError)
