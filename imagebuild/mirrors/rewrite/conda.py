"""environment.yml, conda-lock files and .condarc: channels by name and URL, package URLs."""

from pathlib import Path

import yaml

from imagebuild.mirrors.rewrite.document import Document
from imagebuild.mirrors.rewrite.yamlnodes import (
    as_mapping,
    as_sequence,
    compose,
    get_key,
    on_one_line,
    rewrite_scalar_urls,
    scalars,
    set_scalar,
    yaml_scalar,
)
from imagebuild.mirrors.rules import RuleSet, url_rules
from imagebuild.model.mirror import MirrorProfile
from imagebuild.model.routes import CONDA_DEFAULTS_UPSTREAM

EXPLICIT = "@EXPLICIT"


def has_explicit_marker(text: str) -> bool:
    return any(line.strip() == EXPLICIT for line in text.splitlines())


DEFAULT_CHANNELS = ("pkgs/main", "pkgs/r")
"""What conda's `defaults` channel means on Linux and macOS (Windows adds pkgs/msys2)."""


def _channel(value: str, profile: MirrorProfile, rules: RuleSet) -> str:
    """A channel as environment.yml and .condarc name it: a URL, or a name conda resolves.

    A name the profile maps becomes its mirror URL (a label such as conda-forge/label/dev
    follows its channel); other names go through the profile's channel_alias, as conda would
    resolve them. `defaults`, `nodefaults`, pkgs/* and local paths never use channel_alias.
    """
    if "://" in value:
        return rules.apply_line(value)
    conda = profile.conda
    if conda is None:
        return value
    for name, mirror in conda.channels.items():
        if value == name or value.startswith(f"{name}/"):
            return mirror + value[len(name) :]
    resolved_elsewhere = value in ("defaults", "nodefaults") or value.startswith(("pkgs/", "/", ".", "~"))
    if conda.channel_alias and not resolved_elsewhere and ":" not in value and "\\" not in value:
        return f"{conda.channel_alias}/{value}"
    return value


def _mapped_defaults(profile: MirrorProfile) -> list[str]:
    """The URLs `defaults` stands for when the profile mirrors any pkgs/* channel, else []."""
    channels = profile.conda.channels if profile.conda is not None else {}
    if not any(name.startswith("pkgs/") for name in channels):
        return []
    return [channels.get(name, f"{CONDA_DEFAULTS_UPSTREAM}/{name}") for name in DEFAULT_CHANNELS]


def _rewrite_channels(
    document: Document, channels: yaml.Node | None, profile: MirrorProfile, source: Path, *, expand_defaults: bool
) -> None:
    rules = url_rules(profile)
    block = channels if isinstance(channels, yaml.SequenceNode) else None
    for item in scalars(as_sequence(channels, "channels", source), "channels", source):
        defaults = _mapped_defaults(profile) if expand_defaults and item.value == "defaults" else []
        listed = block is not None and bool(defaults) and on_one_line(item)
        expanded = _item_list(document, item, defaults, block) if listed and block is not None else None
        if expanded is not None:
            document.replace(item.start_mark.line, item.start_mark.column, item.end_mark.column, expanded)
        else:
            set_scalar(document, item, _channel(item.value, profile, rules))


def _item_list(document: Document, item: yaml.ScalarNode, values: list[str], sequence: yaml.SequenceNode) -> str | None:
    """`values` written as consecutive items of `sequence` in place of `item`; None when the
    item does not sit on its own `- ` line of a block list."""
    written = [yaml_scalar(value, item.style or None) for value in values]
    if sequence.flow_style:
        return ", ".join(written)
    line = document.lines[item.start_mark.line]
    dash = line.rfind("-", 0, item.start_mark.column)
    if dash < 0 or line[dash + 1 : item.start_mark.column].strip():
        return None
    prefix = " " * dash + line[dash : item.start_mark.column]
    ending = document.endings[item.start_mark.line] or document.newline
    return (ending + prefix).join(written)


def rewrite_environment(document: Document, profile: MirrorProfile, source: Path) -> str:
    """environment.yml: the `channels:` list and the URLs of the `pip:` sub-list.

    `defaults` stays as it is unless the profile mirrors a pkgs/* channel: then it becomes the
    explicit list it stands for (pkgs/main, pkgs/r), each at its mirror or, when the profile
    has none for it, at repo.anaconda.com. conda resolves `defaults` through the default_channels
    of whatever .condarc the installing machine has, so only an explicit list keeps the file
    pointing at the mirror wherever it is used.
    """
    root = as_mapping(compose(document, source), "an environment file", source)
    _rewrite_channels(document, get_key(root, "channels"), profile, source, expand_defaults=True)
    rules = url_rules(profile)
    for dependency in as_sequence(get_key(root, "dependencies"), "dependencies", source):
        if isinstance(dependency, yaml.MappingNode):
            for entry in scalars(as_sequence(get_key(dependency, "pip"), "pip", source), "pip", source):
                rewrite_scalar_urls(document, entry, rules)
    return document.text()


def rewrite_conda_lock(document: Document, profile: MirrorProfile, source: Path) -> str:
    """conda-lock.yml: package URLs through the rules (hashes stay valid: only the prefix
    changes) and the metadata's channel names as in environment.yml. An '@EXPLICIT' lock lists
    one package URL a line. The metadata keeps `defaults` as is: it only records what was
    solved against, and conda-lock installs from the package URLs."""
    rules = url_rules(profile)
    if has_explicit_marker(document.body):
        for index, line in enumerate(document.lines):
            if line.strip() and not line.lstrip().startswith(("#", "@")):
                document.rewrite_urls(index, rules)
        return document.text()
    root = as_mapping(compose(document, source), "a conda-lock file", source)
    metadata = as_mapping(get_key(root, "metadata"), "metadata", source)
    for channel in as_sequence(get_key(metadata, "channels"), "metadata.channels", source):
        url = get_key(as_mapping(channel, "each item of metadata.channels", source), "url")
        if isinstance(url, yaml.ScalarNode):
            set_scalar(document, url, _channel(url.value, profile, rules))
    for package in as_sequence(get_key(root, "package"), "package", source):
        url = get_key(as_mapping(package, "each item of package", source), "url")
        if isinstance(url, yaml.ScalarNode):
            rewrite_scalar_urls(document, url, rules)
    return document.text()


def rewrite_condarc(document: Document, profile: MirrorProfile, source: Path) -> str:
    """.condarc: channel_alias, channels (names as in environment.yml, but `defaults` stays:
    here default_channels says what it means), default_channels and custom_channels URLs.
    The profile's channel_alias, and the pkgs/* channels it mirrors as default_channels, are
    added when the file lacks that key: conda resolves channel names and `defaults` through
    them."""
    root = as_mapping(compose(document, source), "a .condarc", source)
    rules = url_rules(profile)
    alias = get_key(root, "channel_alias")
    if isinstance(alias, yaml.ScalarNode):
        rewrite_scalar_urls(document, alias, rules)
    _rewrite_channels(document, get_key(root, "channels"), profile, source, expand_defaults=False)
    default_channels = get_key(root, "default_channels")
    for item in scalars(as_sequence(default_channels, "default_channels", source), "default_channels", source):
        rewrite_scalar_urls(document, item, rules)
    custom = as_mapping(get_key(root, "custom_channels"), "custom_channels", source)
    for _, url in custom.value if custom is not None else ():
        if isinstance(url, yaml.ScalarNode):
            rewrite_scalar_urls(document, url, rules)
    added: dict[str, str | list[str]] = {}
    if profile.conda is not None and profile.conda.channel_alias and alias is None:
        added["channel_alias"] = profile.conda.channel_alias
    if default_channels is None and _mapped_defaults(profile):
        added["default_channels"] = _mapped_defaults(profile)
    _add_keys(document, root, added)
    return document.text()


def _add_keys(document: Document, root: yaml.MappingNode | None, added: dict[str, str | list[str]]) -> None:
    """Top-level keys, appended in block style, or inserted first in a flow-style mapping."""
    if not added:
        return
    if root is not None and root.flow_style:
        entries = [
            f"{key}: " + (f"[{', '.join(value)}]" if isinstance(value, list) else value) for key, value in added.items()
        ]
        start = root.start_mark
        document.replace(
            start.line, start.column + 1, start.column + 1, ", ".join(entries) + (", " if root.value else "")
        )
        return
    indent = " " * (root.start_mark.column if root is not None else 0)
    lines = []
    for key, value in added.items():
        if isinstance(value, list):
            lines += [f"{indent}{key}:", *(f"{indent}  - {item}" for item in value)]
        else:
            lines.append(f"{indent}{key}: {value}")
    document.insert_before(len(document.lines), lines)


def mirror_condarc(profile: MirrorProfile) -> str:
    """A .condarc of the profile's channel settings alone: channel_alias and default_channels as
    rewrite_condarc adds them, and each mirrored named channel as a custom channel (its mirror URL
    without the channel name), so `-c conda-forge` and a `channels:` list by name reach the mirror."""
    text = rewrite_condarc(Document(""), profile, Path(".condarc"))
    channels = profile.conda.channels if profile.conda is not None else {}
    custom = {
        name: url[: -len(name) - 1]
        for name, url in sorted(channels.items())
        if not name.startswith("pkgs/") and url.endswith(f"/{name}")
    }
    if custom:
        text += "custom_channels:\n" + "".join(f"  {name}: {base}\n" for name, base in custom.items())
    return text
