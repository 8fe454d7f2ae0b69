"""The settings of one run, resolved once by the command line and passed down.

Flags, the environment and imagebuild.toml are read here and nowhere below: which project,
which mirror profile, the one CA bundle every download trusts, the credentials of the
mirror's hosts and of the registry, the Debian archive, the registry, offline or not, and the
cache folder. Every command that names an image by its content hash resolves the same
`RunOptions` the same way, so `build --mirror X` and `push` (with IMAGEBUILD_MIRROR=X or the
same flag) find the same image.
"""

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import certifi

from imagebuild.errors import RecipeError
from imagebuild.model.mirror import Mirror, selected_mirror
from imagebuild.model.names import builder_name, registry_host
from imagebuild.model.project import Project, load_project
from imagebuild.system import cache_dir

HOST_CA_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")
"""Where the host names its CA bundle, first found wins (pip's and requests' own variables)."""
REGISTRY_USER, REGISTRY_PASSWORD = "IMAGEBUILD_REGISTRY_USER", "IMAGEBUILD_REGISTRY_PASSWORD"
MIRROR_VARIABLE, REGISTRY_VARIABLE = "IMAGEBUILD_MIRROR", "IMAGEBUILD_REGISTRY"
_BEGIN = re.compile(rb"-----BEGIN (?:TRUSTED )?CERTIFICATE-----")
_CERTIFICATE = re.compile(
    rb"-----BEGIN (?:TRUSTED )?CERTIFICATE-----\s(?:(?!-----BEGIN).)*?-----END (?:TRUSTED )?CERTIFICATE-----", re.DOTALL
)

DEFAULT_ARCHIVE = "http://deb.debian.org/debian"
"""The archive a host without Debian apt sources bootstraps from."""

Logins = Mapping[str, tuple[str, str]]
"""Host -> (user, password) of the mirrors and registries a run logs in to."""


def host_archive(sources: Path = Path("/etc/apt")) -> str:
    """The first Debian archive (not the security one) named by the host's apt sources."""
    candidates: list[str] = []
    for path in sorted(sources.glob("sources.list.d/*.sources")):
        candidates += re.findall(r"^URIs:\s*(\S+)", path.read_text(), flags=re.MULTILINE)
    listing = sources / "sources.list"
    if listing.is_file():
        candidates += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", listing.read_text(), flags=re.MULTILINE)
    archives = [url for url in candidates if "security" not in url and "/debian" in url]
    return archives[0].rstrip("/") if archives else DEFAULT_ARCHIVE


@dataclass(frozen=True)
class RunOptions:
    """What the command line says about a run (the shared options of every image command)."""

    mirror: str | None = None
    ca_cert: Path | None = None
    offline: bool = False
    registry: str | None = None
    builder: str | None = None
    """`build` and `nightly` only: --builder (default: [build].builder)."""
    jobs: int | None = None
    """`build` and `nightly` only: --jobs (default: [build].jobs, else the host's cores)."""


@dataclass(frozen=True)
class TrustBundle:
    """The one CA bundle of a run: its PEM text, and the file holding it for programs that
    want a path (pip, uv, git, requests). The file is named by its content, so it is written
    once and a second run with the same trust reuses it."""

    pem: bytes
    file: Path

    @classmethod
    def write(cls, pem: bytes, folder: Path) -> "TrustBundle":
        file = folder / f"ca-{hashlib.sha256(pem).hexdigest()[:16]}.pem"
        if not file.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            staging = file.with_name(f".{file.name}.{os.getpid()}")
            staging.write_bytes(pem)
            staging.replace(file)
        return cls(pem, file)


def _complete_der(block: bytes) -> bool:
    """Whether a PEM block's body is one whole DER structure: base64 that decodes, and as many
    bytes as its outer SEQUENCE says (a block cut short and closed again is not)."""
    body = b"".join(line for line in block.splitlines()[1:-1] if b":" not in line)
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error:
        return False
    if len(der) < 2 or der[0] != 0x30:
        return False
    if der[1] < 0x80:
        return len(der) == 2 + der[1]
    size = der[1] & 0x7F
    return len(der) == 2 + size + int.from_bytes(der[2 : 2 + size], "big")


def _certificates(path: Path, named_by: str) -> list[bytes]:
    """Every certificate of a PEM bundle; a bundle with a block cut off (a BEGIN without its END)
    is refused at that block's line rather than read without it."""
    if path.is_dir():
        raise RecipeError(f"{named_by}: '{path}' is a folder, not a CA bundle", hint="name the PEM file in it, e.g. ca-certificates.crt")
    if not path.is_file():
        raise RecipeError(f"{named_by}: CA bundle '{path}' not found", hint="name an existing PEM file")
    data = path.read_bytes()
    blocks = list(_CERTIFICATE.finditer(data))
    if not blocks:
        raise RecipeError(
            f"{named_by}: '{path}' holds no PEM certificate", path=path, hint="give a file with '-----BEGIN CERTIFICATE-----' blocks"
        )
    whole = {match.start(): _complete_der(match.group(0)) for match in blocks}
    broken = next((match.start() for match in _BEGIN.finditer(data) if not whole.get(match.start())), None)
    if broken is not None:
        line = data.count(b"\n", 0, broken) + 1
        raise RecipeError(
            f"{named_by}: the certificate that begins at line {line} of '{path}' is cut off or damaged",
            path=path,
            hint="copy the bundle again, or remove that block",
        )
    return [match.group(0) for match in blocks]


def host_bundle(environ: Mapping[str, str]) -> tuple[Path, str] | None:
    """The host's own bundle, as the first of SSL_CERT_FILE, PIP_CERT, REQUESTS_CA_BUNDLE that
    names a file, with the variable that named it."""
    for variable in HOST_CA_VARIABLES:
        value = environ.get(variable)
        if value and Path(value).is_file():
            return Path(value), variable
    return None


def merged_trust(environ: Mapping[str, str], ca_cert: Path | None, mirror: Mirror | None) -> bytes | None:
    """The one bundle a run trusts: the host's (its variable's file, else certifi's public CAs),
    plus `--ca-cert`, plus the profile's `ca_cert`; each certificate once, in that order.

    None when nothing beyond the defaults is asked for: programs then keep their own trust.
    """
    host = host_bundle(environ)
    extras = [(ca_cert, "--ca-cert"), (mirror.ca_cert if mirror else None, f"ca_cert in {mirror.path if mirror else ''}")]
    wanted = [(path, named_by) for path, named_by in extras if path is not None]
    if host is None and not wanted:
        return None
    base = [host] if host else [(Path(certifi.where()), "certifi")]
    certificates = dict.fromkeys(cert for path, named_by in [*base, *wanted] for cert in _certificates(path, named_by))
    return b"\n".join(certificates) + b"\n"


def mirror_logins(
    mirror: Mirror | None, environ: Mapping[str, str]
) -> tuple[dict[str, tuple[str, str]], tuple[tuple[str, str], ...]]:
    """The profile's [[credentials]] read from the environment: host -> (user, password), and
    (field, variable) of each variable not set (an error only once something uses the mirror)."""
    found, missing = {}, []
    for index, credential in enumerate(mirror.spec.credentials if mirror else []):
        user, password = environ.get(credential.username_env), environ.get(credential.password_env)
        for name, value in (("username_env", user), ("password_env", password)):
            if not value:
                missing.append((f"[[credentials]][{index}].{name}", str(getattr(credential, name))))
        if user and password:
            found[credential.host] = (user, password)
    return found, tuple(missing)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is configured with; built once per command by `resolve`."""

    project: Project
    mirror: Mirror | None
    trust: TrustBundle | None
    debian_archive: str
    registry: str
    offline: bool
    cache_dir: Path
    builder: str = "auto"
    """What builds: auto, buildkit, classic or a buildx builder's name (builders.py)."""
    jobs: int = 1
    """How many images build at the same time."""
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The environment the command started with, for the programs it runs (git, uv, pip)."""
    registry_login: tuple[str, str] | None = field(default=None, repr=False)
    known_logins: Logins = field(default_factory=dict, repr=False)
    missing_logins: tuple[tuple[str, str], ...] = ()

    @property
    def output_dir(self) -> Path:
        return self.project.output_dir

    @property
    def ca_pem(self) -> bytes | None:
        return self.trust.pem if self.trust else None

    @property
    def ca_file(self) -> Path | None:
        return self.trust.file if self.trust else None

    def logins(self) -> Logins:
        """The mirror's credentials (none without a mirror), for a step that uses the mirror; a
        variable the profile names but the environment lacks is an error only here."""
        if self.missing_logins:
            assert self.mirror is not None
            where, variable = self.missing_logins[0]
            raise RecipeError(
                f"{where}: environment variable {variable} is not set",
                path=self.mirror.path,
                hint=f"export {variable}=... before using mirror '{self.mirror.name}'",
            )
        return self.known_logins


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be 1 or more, got {value}")
    return value


def resolve(options: RunOptions, environ: Mapping[str, str] = os.environ, project: Project | None = None) -> RunConfig:
    """The run's configuration from the command line's `options`, the environment and the
    project's imagebuild.toml (the project is found from the working folder unless given).
    IMAGEBUILD_MIRROR and IMAGEBUILD_REGISTRY count for every command, with the flag or without
    (`hub up` builds with the mirror `build` used)."""
    project = project or load_project()
    options = replace(
        options,
        mirror=options.mirror or environ.get(MIRROR_VARIABLE),
        registry=options.registry or environ.get(REGISTRY_VARIABLE),
    )
    checks: list[tuple[str, Callable[[], object], str]] = [
        ("--builder", lambda: options.builder and builder_name(options.builder), "e.g. --builder auto, or a name 'docker buildx ls' shows"),
        ("--registry", lambda: options.registry and registry_host(options.registry), f"give HOST[:PORT] (also in {REGISTRY_VARIABLE})"),
        ("--jobs", lambda: options.jobs is None or _at_least_one(options.jobs), "e.g. --jobs 2; without it, as many as the host has cores"),
    ]
    for flag, check, hint in checks:
        try:
            check()
        except ValueError as error:
            raise RecipeError(f"{flag}: {error}", hint=hint) from None
    mirror = selected_mirror(options.mirror, project.config.build.mirror, project.root)
    return configure(project, mirror, options, environ, merged_trust(environ, options.ca_cert, mirror))


def configure(
    project: Project, mirror: Mirror | None, options: RunOptions, environ: Mapping[str, str], trust: bytes | None
) -> RunConfig:
    """The configuration of a run with this mirror and exactly this CA bundle (`trust`, as
    `merged_trust` makes it; tests give the exact PEM a build must trust)."""
    cache = cache_dir(environ)
    known, missing = mirror_logins(mirror, environ)
    user, password = environ.get(REGISTRY_USER), environ.get(REGISTRY_PASSWORD)
    return RunConfig(
        project=project,
        mirror=mirror,
        trust=TrustBundle.write(trust, cache / "trust") if trust else None,
        debian_archive=project.config.bootstrap.archive or host_archive(),
        registry=options.registry or project.config.publish.registry,
        offline=options.offline,
        cache_dir=cache,
        builder=options.builder or project.config.build.builder,
        jobs=options.jobs or project.config.build.jobs or os.cpu_count() or 1,
        environ=dict(environ),
        registry_login=(user, password) if user and password else None,
        known_logins=known,
        missing_logins=missing,
    )
