"""What a Debian archive says about itself: the package indexes of a suite (its InRelease
files), so a lock can record the state of the distribution a root image is installed from."""

import re
from pathlib import Path

import requests

from imagebuild.errors import LockError, connection_reason
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import Mirror

SECURITY_ARCHIVE = "http://deb.debian.org/debian-security"
DEBIAN_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def package_indexes(archive: str, suite: str, machine: str, mirror: Mirror | None, ca_file: Path | None) -> dict[str, str]:
    """The sha256 of the main package index of the suite, its -updates and its -security, as
    their InRelease files list them (read through the mirror when there is one, trusting the
    run's one CA bundle `ca_file`, which holds the profile's ca_cert and --ca-cert). A new value
    means Debian published packages there: `lock` records these, so a root image is rebuilt,
    with `apt-get upgrade`, exactly when its distribution has updates (security fixes included)."""
    index = f"main/binary-{DEBIAN_ARCHITECTURES.get(machine, machine)}/Packages"
    rules = url_rules(mirror.spec, extra_debian_upstreams=(archive,)).only("apt") if mirror else None
    found = {}
    for name, upstream in ((suite, archive), (f"{suite}-updates", archive), (f"{suite}-security", SECURITY_ARCHIVE)):
        url = f"{upstream}/dists/{name}/InRelease"
        if rules is not None:
            url = rules.apply_line(url)
        try:
            response = requests.get(url, timeout=30, verify=str(ca_file) if ca_file else True)
            response.raise_for_status()
        except requests.RequestException as error:
            raise LockError(
                f"the Debian archive does not answer at {url}: {connection_reason(error)}",
                hint="check the network, the mirror profile's [apt] entries, and --ca-cert or the profile's ca_cert for a private CA",
            ) from None
        digest = index_digest(response.text, index)
        if digest is None:
            raise LockError(f"{url} lists no {index}", hint=f"is '{suite}' a Debian suite for {machine}?")
        found[name] = digest
    return found


def index_digest(in_release: str, index: str) -> str | None:
    """The sha256 an InRelease file's SHA256 section gives for `index` (e.g. main/binary-amd64/Packages)."""
    match = re.search(rf"^SHA256:\n(?:^ .*\n)*?^ ([0-9a-f]{{64}})\s+\d+\s+{re.escape(index)}$", in_release, flags=re.MULTILINE)
    return match.group(1) if match else None
