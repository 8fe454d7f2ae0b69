"""pip as `imagebuild mirror sync` runs it: for an image's interpreter and platform, against
the index of the run's mirror (its credentials, its TLS trust), and what its output tells."""

import base64
import json
import os
import re
import ssl
import sys
import tomllib
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from imagebuild.config import Logins
from imagebuild.errors import MirrorError
from imagebuild.inputs.target import Target
from imagebuild.mirrors.hostenv import with_credentials
from imagebuild.mirrors.wheelhouse import member
from imagebuild.model.mirror import Mirror
from imagebuild.system import Completed, run

if TYPE_CHECKING:  # parsed only when pip names a missing requirement
    from packaging.requirements import Requirement

PYPI = "https://pypi.org/simple"
LEGACY_BUILD_REQUIRES = ["setuptools>=40.8.0", "wheel"]
"""What pip and uv build a source tree without [build-system] with (PEP 518)."""
PIP_TIMEOUT = 1800
"""A resolution of a large image, or a build of a source distribution, may take minutes; never hours."""

_PIP_FOR_TARGET = """\
import json, runpy, sys
from pip._vendor.packaging import markers
target = json.loads(sys.argv.pop(1))
host = markers.default_environment
markers.default_environment = lambda: {**host(), **target}
sys.argv[0] = "pip"
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""
"""pip takes tags and Requires-Python from --python-version and --platform, but evaluates
markers such as `; python_version < "3.12"` for the interpreter running it; this runs pip
with the target's marker values, so the host's Python does not change what is mirrored."""


@dataclass(frozen=True)
class Download:
    """A file pip picked: where its index has it, and the hash the index gives for it."""

    project: str
    version: str
    url: str
    sha256: str | None

    @property
    def filename(self) -> str:
        return unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])


def missing_requirement(pip_output: str) -> "Requirement | None":
    """The requirement pip found no file for, from its one stable error line."""
    from packaging.requirements import InvalidRequirement, Requirement

    found = re.findall(r"No matching distribution found for (\S+)", pip_output)
    try:
        return Requirement(found[-1]) if found else None
    except InvalidRequirement:
        return None


def tail(output: str, lines: int = 12) -> str:
    return "\n".join(output.strip().splitlines()[-lines:])


def build_requires(sdist: Path) -> list[str]:
    """The static [build-system] requires of a source distribution (PEP 518)."""
    try:
        document = tomllib.loads(member(sdist, r"[^/]+/pyproject\.toml").decode())
        requires = document.get("build-system", {}).get("requires")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        requires = None
    return list(requires) if isinstance(requires, list) else LEGACY_BUILD_REQUIRES


@dataclass
class PipSource:
    """The index pip reads and the way to fetch its files: TLS trust and credentials."""

    index_url: str = PYPI
    extra_index_urls: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)
    credentials: Logins = field(default_factory=dict)
    cert: Path | None = None

    @classmethod
    def of(cls, mirror: Mirror | None, logins: Logins, ca_file: Path | None) -> "PipSource":
        """The mirror's index (PyPI without one), trusting the run's one CA bundle `ca_file`."""
        if mirror is None or mirror.spec.pypi is None:
            return cls(cert=ca_file)
        pypi = mirror.spec.pypi
        return cls(pypi.index_url, list(pypi.extra_index_urls), list(pypi.trusted_hosts), logins, ca_file)

    def pip_options(self) -> list[str]:
        options = ["--index-url", with_credentials(self.index_url, self.credentials)]
        for url in self.extra_index_urls:
            options += ["--extra-index-url", with_credentials(url, self.credentials)]
        for host in self.trusted_hosts:
            options += ["--trusted-host", host]
        return [*options, "--cert", str(self.cert)] if self.cert else options

    def request(self, url: str) -> tuple[urllib.request.Request, ssl.SSLContext]:
        """A request for one of the index's files, with its host's credentials, and the TLS to use."""
        parts = urlsplit(url)
        request = urllib.request.Request(url)
        login = self.credentials.get(parts.netloc) or self.credentials.get(parts.hostname or "")
        if login:
            token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=self.cert)
        if parts.netloc in self.trusted_hosts or parts.hostname in self.trusted_hosts:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return request, context


def run_pip(arguments: list[str], target: Target | None, environ: Mapping[str, str]) -> Completed:
    """pip without this host's configuration (pip.conf, PIP_* variables of `environ`), for
    `target` when given; the caller reads the exit code and words the error."""
    environment = {k: v for k, v in environ.items() if not k.startswith("PIP_")}
    environment["PIP_CONFIG_FILE"] = os.devnull
    launcher = [sys.executable, "-m", "pip"]
    if target is not None:
        launcher = [sys.executable, "-c", _PIP_FOR_TARGET, json.dumps(target.markers())]
    options = ["--isolated", "--disable-pip-version-check", "--no-input", "--quiet"]
    return run([*launcher, *arguments, *options], env=environment, timeout=PIP_TIMEOUT, check=False, error=MirrorError)
