"""What a run tells programs through their environment: pip's and uv's index settings and
git's URL rewrites of a mirror profile, with the profile's credentials placed into the URLs of
their own hosts, and the run's CA bundle. Used inside builds (buildenv) and on the host (lock,
dev packages)."""

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from imagebuild.config import Logins
from imagebuild.mirrors.rewrite.buildtime import git_settings, pypi_settings
from imagebuild.model.mirror import Mirror

CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE")
"""Each program's name for the CA bundle it trusts: Python's ssl, uv and rattler (SSL_CERT_FILE),
requests, pip, git and curl. support/with-build-env exports the same names inside builds (and
points apt's Acquire::https::CaInfo at the bundle)."""


def trust_variables(ca_file: Path) -> dict[str, str]:
    """Every program's CA variable naming the run's one bundle."""
    return dict.fromkeys(CA_VARIABLES, str(ca_file))


def with_credentials(url: str, credentials: Logins) -> str:
    """`url` with the user and password of its host, when the profile has a credential for it."""
    parts = urlsplit(url)
    found = credentials.get(parts.netloc) or credentials.get(parts.hostname or "")
    if found is None:
        return url
    user, password = (quote(value, safe="") for value in found)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))


def index_variables(mirror: Mirror, credentials: Logins) -> dict[str, str]:
    """pip's and uv's index settings for the profile's [pypi], credentials inside the URLs."""
    return pypi_settings(mirror.spec, lambda url: with_credentials(url, credentials))


def git_variables(mirror: Mirror, credentials: Logins) -> dict[str, str]:
    """The profile's [git] rewrites as git's environment-only config, credentials inside the URLs."""
    return git_settings(mirror.spec, lambda url: with_credentials(url, credentials))
