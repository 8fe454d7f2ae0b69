"""apt sources: one-line `deb` entries and deb822 `URIs:` fields through the apt rules."""

import re
from pathlib import Path
from urllib.parse import urlsplit

from imagebuild.mirrors.rewrite.document import Document
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import MirrorProfile


def rewrite_apt_sources(document: Document, profile: MirrorProfile, source: Path) -> str:
    """One-line `deb [opts] URI suite components` entries and deb822 `URIs:` fields (with their
    continuation lines) through the apt rules only; comments and other fields, such as an
    inline Signed-By key, stay as they are."""
    rules = url_rules(profile).only("apt")
    field_name = None
    for index, line in enumerate(document.lines):
        if not line.strip():
            field_name = None
            continue
        if line.lstrip().startswith("#"):
            continue
        if re.match(r"\s*deb(-src)?\s", line):
            document.rewrite_urls(index, rules, 0, line.find("#") if "#" in line else len(line))
        elif not line[0].isspace():
            field_name, colon, _ = line.partition(":")
            field_name = field_name.strip().lower() if colon else None
            if field_name == "uris":
                document.rewrite_urls(index, rules, line.index(":") + 1)
        elif field_name == "uris":
            document.rewrite_urls(index, rules)
    return document.text()


_DEB_LINE = re.compile(r"\s*deb(-src)?\s+(\[[^\]]*\]\s+)?(?P<uri>\S+)")


def unrouted_apt_sources(text: str, profile: MirrorProfile) -> list[str]:
    """'line N: why' for each source the rewrite leaves where it was: a URI without a scheme
    (cdrom:, a path) or one no apt rule of the profile covers (and not the mirror's own)."""
    rules = url_rules(profile).only("apt")
    mirrors = {urlsplit(rule.mirror).netloc for rule in rules.rules}
    found, field_name = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        uris: list[str] = []
        if not line.strip():
            field_name = None
        elif line.lstrip().startswith("#"):
            continue
        elif deb := _DEB_LINE.match(line):
            uris = [deb["uri"]]
        elif not line[0].isspace():
            name, colon, value = line.partition(":")
            field_name = name.strip().lower() if colon else None
            uris = value.split() if field_name == "uris" else []
        elif field_name == "uris":
            uris = line.split()
        for uri in uris:
            if "://" not in uri:
                found.append(f"line {number}: '{uri}' has no URL scheme (http://, https://): apt reads it as it is, not routed")
            elif rules.apply_line(uri) == uri and urlsplit(uri).netloc not in mirrors:
                found.append(f"line {number}: {uri} is covered by no apt rule of the profile: apt downloads from there")
    return found
