"""apt sources: one-line `deb` entries and deb822 `URIs:` fields through the apt rules."""

import re
from pathlib import Path

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
