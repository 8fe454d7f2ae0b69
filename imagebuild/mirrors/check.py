"""Does each endpoint of a mirror profile answer? (`imagebuild mirror check`, and a build's preflight)

Every endpoint gets one small request, all of them in parallel and each bounded by a short
timeout, so a dead mirror is named within seconds instead of hanging a build inside pip or apt.
Only response headers are read: probing a full PyPI index or an apt Release file costs a few
kilobytes at most.
"""

import base64
import concurrent.futures
import contextlib
import http.client
import ipaddress
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from imagebuild.config import Logins
from imagebuild.errors import MirrorError
from imagebuild.model.mirror import Mirror

DEBIAN_SUITE = "bookworm"
UBUNTU_SUITE = "noble"
APT_PROBES = {
    "debian": ("Debian archive (bootstrap, apt-get)", DEBIAN_SUITE),
    "debian_security": ("Debian security archive (apt-get)", f"{DEBIAN_SUITE}-security"),
    "ubuntu": ("Ubuntu archive (apt-get)", UBUNTU_SUITE),
    "ubuntu_security": ("Ubuntu security archive (apt-get)", f"{UBUNTU_SUITE}-security"),
}
BUILD_PURPOSES = ("pypi", "apt:debian", "apt:debian_security")
"""What building the bundled (Debian) images reaches: the bootstrap and apt-get read both
Debian archives, pip and uv the indexes. Tags as `url_rules` names them; 'apt' would mean all."""

_FIRST_BYTE = (("Range", "bytes=0-0"),)


def _success(status: int) -> bool:
    return 200 <= status < 300


def _registry_answers(status: int) -> bool:
    """A registry's /v2/ answers 200, or 401 when it wants a token first: both mean it is up."""
    return status in (200, 401)


def _server_answers(status: int) -> bool:
    """A download or git proxy may well answer 404 or 405 for its bare prefix; only 5xx is down."""
    return status < 500


@dataclass(frozen=True)
class Probe:
    """One endpoint's answer. `endpoint` is the URL the profile sets; `url` is what was fetched."""

    endpoint: str
    purpose: str
    url: str
    reachable: bool
    latency_ms: float | None
    detail: str


@dataclass(frozen=True)
class _Target:
    tag: str  # the purpose tag of rules.url_rules ('pypi', 'apt:debian', ...) or 'registry:<host>'
    endpoint: str
    purpose: str
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    answers: Callable[[int], bool] = _success


def _loopback(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _head(tag: str, prefix: str, purpose: str) -> _Target:
    """A URL prefix (download mirror, git proxy) is probed with HEAD on the prefix itself."""
    return _Target(tag, prefix, purpose, prefix, "HEAD", answers=_server_answers)


def _targets(mirror: Mirror) -> list[_Target]:
    """What to fetch for each endpoint the profile sets, in the order the profile reads."""
    spec = mirror.spec
    found: list[_Target] = []
    if spec.pypi is not None:
        found.append(_Target("pypi", spec.pypi.index_url, "pypi index (pip, uv)", f"{spec.pypi.index_url}/"))
        found += [_Target("pypi", url, "extra pypi index (pip, uv)", f"{url}/") for url in spec.pypi.extra_index_urls]
    if spec.apt is not None:
        for field, (purpose, suite) in APT_PROBES.items():
            url = getattr(spec.apt, field)
            if url:
                found.append(_Target(f"apt:{field}", url, purpose, f"{url}/dists/{suite}/Release"))
    if spec.conda is not None:
        for channel, url in sorted(spec.conda.channels.items()):
            repodata = f"{url}/noarch/repodata.json"
            found.append(_Target(f"conda:{channel}", url, f"conda channel {channel}", repodata, headers=_FIRST_BYTE))
        alias = spec.conda.channel_alias
        if alias:
            repodata = f"{alias}/conda-forge/noarch/repodata.json"
            purpose = "conda channel_alias (probed with conda-forge)"
            found.append(_Target("conda:channel_alias", alias, purpose, repodata, headers=_FIRST_BYTE))
    for registry, prefix in sorted(spec.registry.items()):
        host = prefix.split("/")[0]
        # Docker itself reaches loopback registries over plain HTTP, every other one over HTTPS.
        v2 = f"{'http' if _loopback(host) else 'https'}://{host}/v2/"
        purpose = f"registry mirror for {registry}"
        found.append(_Target(f"registry:{registry}", prefix, purpose, v2, answers=_registry_answers))
    if spec.compose:
        found.append(_head("downloads:compose", spec.compose, "docker-compose download"))
    found += [_head("downloads", prefix, f"downloads from {up}/") for up, prefix in sorted(spec.downloads.items())]
    found += [_head("git", prefix, f"git proxy for {up}/") for up, prefix in sorted(spec.git.items())]
    return found


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs, plus the run's one bundle (config.merged_trust: the host's, --ca-cert
    and the profile's ca_cert, each already checked to hold certificates)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


class _BasicAuth(urllib.request.BaseHandler):
    """Sends a profile credential to its own host only, including after a redirect to that host.

    The header is 'unredirected', so urllib never carries it to where a redirect points; this
    handler adds it again only when the new host has a credential of its own.
    """

    def __init__(self, credentials: Logins) -> None:
        self.credentials = credentials

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        parts = urlsplit(request.full_url)
        found = self.credentials.get(parts.netloc) or self.credentials.get(parts.hostname or "")
        if found is not None:
            token = base64.b64encode(f"{found[0]}:{found[1]}".encode()).decode()
            request.add_unredirected_header("Authorization", f"Basic {token}")
        return request

    https_request = http_request


def _reason(error: BaseException | str, timeout: float) -> str:
    """A short, user-facing reason for a failed connection."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason})"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, socket.gaierror):
        return "host name not found"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _probe(
    target: _Target, context: ssl.SSLContext, credentials: Logins, timeout: float
) -> Probe:
    """One request; an opener of its own, since urllib's handlers belong to one opener at a time."""
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _BasicAuth(credentials))
    request = urllib.request.Request(target.url, method=target.method, headers=dict(target.headers))
    started = time.perf_counter()

    def failed(reason: str) -> Probe:
        return Probe(target.endpoint, target.purpose, target.url, False, None, reason)

    try:
        with opener.open(request, timeout=timeout) as response:
            status, final_url = response.status, response.geturl()
    except urllib.error.HTTPError as error:
        status, final_url = error.code, error.filename or target.url
        error.close()
    except urllib.error.URLError as error:
        return failed(_reason(error.reason, timeout))
    except (OSError, http.client.HTTPException) as error:
        return failed(_reason(error, timeout))
    latency_ms = (time.perf_counter() - started) * 1000
    detail = f"HTTP {status}"
    final_host = urlsplit(final_url).netloc
    if final_host != urlsplit(target.url).netloc:
        detail += f" (redirected to {final_host})"
    return Probe(target.endpoint, target.purpose, target.url, target.answers(status), latency_ms, detail)


def _probes(
    targets: list[_Target], ca_file: Path | None, logins: Logins, timeout: float
) -> Generator[tuple[int, Probe], None, None]:
    """(index in `targets`, probe) as each answers; whatever has not answered by the deadline
    (a host name that does not resolve is not bound by the socket timeout) counts as silent."""
    if not targets:
        return
    context = _ssl_context(ca_file)
    deadline = 2 * timeout + 1  # a connect and a read may each take `timeout`
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(targets)), thread_name_prefix="mirror-check")
    futures = {pool.submit(_probe, target, context, logins, timeout): i for i, target in enumerate(targets)}
    pending = set(futures)
    try:
        for future in concurrent.futures.as_completed(futures, timeout=deadline):
            pending.discard(future)
            yield futures[future], future.result()
    except concurrent.futures.TimeoutError:
        for future in pending:
            target = targets[futures[future]]
            silent = f"no answer within {deadline:g} s"
            yield futures[future], Probe(target.endpoint, target.purpose, target.url, False, None, silent)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _explained(mirror: Mirror, probe: Probe) -> Probe:
    """A local index served by imagebuild is down between builds; say so rather than alarm."""
    pypi = mirror.spec.pypi
    if probe.reachable or mirror.serve_pypi is None or pypi is None or probe.endpoint != pypi.index_url:
        return probe
    note = " (imagebuild serves [serve].pypi only while it builds, or under 'imagebuild mirror serve')"
    return replace(probe, detail=probe.detail + note)


def check(mirror: Mirror, *, ca_file: Path | None, logins: Logins, timeout: float = 5.0) -> list[Probe]:
    """Probe every endpoint the profile sets; one Probe each, in the profile's order.

    `ca_file` is the run's one CA bundle (it holds the profile's `ca_cert`); the system's CAs
    are trusted as well. `logins` (the profile's credentials) go as basic auth to their hosts.
    """
    targets = _targets(mirror)
    found = dict(_probes(targets, ca_file, logins, timeout))
    return [_explained(mirror, found[index]) for index in range(len(targets))]


def preflight(
    mirror: Mirror,
    purposes: tuple[str, ...] = BUILD_PURPOSES,
    *,
    ca_file: Path | None,
    logins: Logins,
    timeout: float = 5.0,
) -> list[Probe]:
    """Probe only what a build will use, before it starts, and raise MirrorError at the first
    endpoint that fails, so a build never hangs on a dead mirror.

    `purposes` are tags as `url_rules` names them: 'pypi', 'apt:debian', or a whole family such
    as 'apt' or 'conda'. A profile that serves a local index must be served before this runs.
    """
    targets = [t for t in _targets(mirror) if t.tag in purposes or t.tag.split(":")[0] in purposes]
    probes = []
    answers = _probes(targets, ca_file, logins, timeout)
    with contextlib.closing(answers):  # a generator: closing it stops waiting for the other probes
        for _, probe in answers:
            if not probe.reachable:
                raise _mirror_error(mirror, probe)
            probes.append(probe)
    return probes


def _mirror_error(mirror: Mirror, probe: Probe) -> MirrorError:
    if probe.detail.startswith("TLS"):
        hint = "trust the mirror's CA: pass --ca-cert FILE, or set ca_cert in the profile"
    else:
        hint = (
            f"correct the URL in {mirror.path}, see every endpoint with 'imagebuild mirror check {mirror.name}', "
            "or build from upstream with --mirror none"
        )
    return MirrorError(
        f"mirror '{mirror.name}': {probe.purpose} does not answer at {probe.url}: {probe.detail}",
        path=mirror.path,
        hint=hint,
    )
