"""The build's CA bundle: found on the host (or named by --ca-cert or a mirror profile);
served to builds by buildenv.py, never copied into an image unless the recipe keeps it."""

import os
from pathlib import Path

from imagebuild.errors import RecipeError

CA_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")


def find_ca_bundle(explicit: Path | None = None) -> Path | None:
    """`--ca-cert`, else the first of SSL_CERT_FILE, PIP_CERT, REQUESTS_CA_BUNDLE that is set."""
    if explicit is not None:
        if not explicit.is_file():
            raise RecipeError("CA bundle not found", path=explicit, hint="pass an existing PEM file to --ca-cert")
        return explicit
    for variable in CA_VARIABLES:
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    return None


def read_ca_bundle(explicit: Path | None = None) -> bytes | None:
    """The bytes of the bundle `find_ca_bundle` picks, or None when there is none."""
    bundle = find_ca_bundle(explicit)
    return bundle.read_bytes() if bundle else None
