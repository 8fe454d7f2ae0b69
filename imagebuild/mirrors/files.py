"""Pure rewriters for files admins already have: `imagebuild mirror rewrite FILE --mirror NAME`.

Every rewriter edits the text in place, by line and column, and never re-serialises it: YAML
and INI writers would drop the comments, quoting and layout that admins keep in these files.
PyYAML and configparser only validate the input and locate what to edit. So a rewrite with an
empty profile returns the input unchanged, a second rewrite changes nothing, and every line no
rule concerns comes back byte-identical.
"""

import configparser
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from imagebuild.errors import RecipeError
from imagebuild.mirrors.rules import (
    CONDA_DEFAULTS_UPSTREAM,
    RuleSet,
    rewrite_image_ref,
    url_rules,
)
from imagebuild.model.mirror import MirrorProfile


class FileKind(StrEnum):
    """What `imagebuild mirror rewrite` knows how to edit; the values are what --kind takes."""

    DOCKERFILE = "dockerfile"
    COMPOSE = "compose"
    ENVIRONMENT = "environment"
    CONDA_LOCK = "conda-lock"
    REQUIREMENTS = "requirements"
    PIP_CONF = "pip-conf"
    CONDARC = "condarc"
    APT_SOURCES = "apt-sources"


_NAMES: tuple[tuple[str, FileKind], ...] = (
    ("Dockerfile", FileKind.DOCKERFILE),
    ("Containerfile", FileKind.DOCKERFILE),
    ("Dockerfile.*", FileKind.DOCKERFILE),
    ("*.Dockerfile", FileKind.DOCKERFILE),
    ("*.dockerfile", FileKind.DOCKERFILE),
    ("docker-compose*.yml", FileKind.COMPOSE),
    ("docker-compose*.yaml", FileKind.COMPOSE),
    ("compose*.yml", FileKind.COMPOSE),
    ("compose*.yaml", FileKind.COMPOSE),
    ("conda-lock.yml", FileKind.CONDA_LOCK),
    ("conda-lock.yaml", FileKind.CONDA_LOCK),
    ("*.conda-lock.yml", FileKind.CONDA_LOCK),
    ("*.conda-lock.yaml", FileKind.CONDA_LOCK),
    ("conda-*.lock", FileKind.CONDA_LOCK),
    ("environment*.yml", FileKind.ENVIRONMENT),
    ("environment*.yaml", FileKind.ENVIRONMENT),
    ("requirements*.txt", FileKind.REQUIREMENTS),
    ("constraints*.txt", FileKind.REQUIREMENTS),
    ("*.in", FileKind.REQUIREMENTS),
    ("pip.conf", FileKind.PIP_CONF),
    ("pip.ini", FileKind.PIP_CONF),
    (".condarc", FileKind.CONDARC),
    ("condarc", FileKind.CONDARC),
    ("*.condarc", FileKind.CONDARC),
    ("sources.list", FileKind.APT_SOURCES),
    ("*.list", FileKind.APT_SOURCES),
    ("*.sources", FileKind.APT_SOURCES),
)
"""File name patterns, most specific first (conda-lock.yml before environment*.yml)."""

_EXPLICIT = "@EXPLICIT"
_DOCKERFILE_START = re.compile(r"\s*(FROM|ARG)\s+\S")
_APT_LINE = re.compile(r"\s*(deb|deb-src)\s+(\[[^\]]*\]\s+)?[a-z]+://|\s*Types:\s*deb", re.IGNORECASE)
_REQUIREMENT_LINE = re.compile(
    r"\s*(-{1,2}[A-Za-z]|git\+|https?://|[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*(==|>=|<=|~=|!=|<|>|@|;|$))"
)


def detect_kind(path: Path, text: str) -> FileKind:
    """The kind of `path`: by its name when that is telling, else by what `text` holds."""
    if path.name.endswith(".txt") and _has_explicit_marker(text):
        return FileKind.CONDA_LOCK
    for pattern, kind in _NAMES:
        if fnmatchcase(path.name, pattern):
            return kind
    kind = _kind_from_content(text)
    if kind is None:
        raise RecipeError(
            "cannot tell which kind of file this is from its name or content",
            path=path,
            hint=f"pass --kind <{'|'.join(FileKind)}>",
        )
    return kind


def _has_explicit_marker(text: str) -> bool:
    return any(line.strip() == _EXPLICIT for line in text.splitlines())


def _kind_from_content(text: str) -> FileKind | None:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return None
    if _has_explicit_marker(text):
        return FileKind.CONDA_LOCK
    if _DOCKERFILE_START.match(lines[0]) and any(re.match(r"\s*FROM\s", line) for line in lines):
        return FileKind.DOCKERFILE
    if any(_APT_LINE.match(line) for line in lines):
        return FileKind.APT_SOURCES
    kind = _yaml_kind(text)
    if kind is not None:
        return kind
    if _is_pip_conf(text):
        return FileKind.PIP_CONF
    only_words = all(re.fullmatch(r"\s*[\w.-]+\s*", line) for line in lines)  # any text file could be that
    if all(_REQUIREMENT_LINE.match(line) for line in lines) and not only_words:
        return FileKind.REQUIREMENTS
    return None


def _yaml_kind(text: str) -> FileKind | None:
    try:
        root = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    keys = {key.value for key, _ in root.value if isinstance(key, yaml.ScalarNode)}
    if "services" in keys:
        return FileKind.COMPOSE
    if {"package", "metadata"} <= keys:
        return FileKind.CONDA_LOCK
    if "dependencies" in keys:
        return FileKind.ENVIRONMENT
    if keys & {"channels", "channel_alias", "default_channels", "custom_channels"}:
        return FileKind.CONDARC
    return None


def _is_pip_conf(text: str) -> bool:
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error:
        return False
    return parser.has_section("global") or any(parser.has_option(name, "index-url") for name in parser.sections())


def rewrite_file(kind: FileKind, text: str, profile: MirrorProfile, *, source: Path) -> str:
    """`text` pointed at the mirrors of `profile`; `source` only names the file in errors."""
    return _REWRITERS[kind](_Document(text), profile, source)


# --- editing text by line and column ------------------------------------------------------

_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
"""YAML's line breaks, so a YAML mark's line and column address the same character here."""


class _Document:
    """A text as lines, edited by (line, column) of the original; untouched text stays as it was."""

    def __init__(self, text: str) -> None:
        self.bom = "\ufeff" if text.startswith("\ufeff") else ""
        body = text[len(self.bom) :]
        self.lines: list[str] = []
        self.endings: list[str] = []
        start = 0
        for match in _LINE_BREAK.finditer(body):
            self.lines.append(body[start : match.start()])
            self.endings.append(match.group())
            start = match.end()
        if start < len(body):
            self.lines.append(body[start:])
            self.endings.append("")
        self.newline = self.endings[0] if self.endings and self.endings[0] else "\n"
        self._replacements: dict[int, dict[tuple[int, int], str]] = {}
        self._inserted: dict[int, list[str]] = {}

    @property
    def body(self) -> str:
        """The text without its byte order mark, as parsers should see it."""
        return "".join(line + ending for line, ending in zip(self.lines, self.endings, strict=True))

    def replace(self, line: int, start: int, end: int, new: str) -> None:
        if self.lines[line][start:end] != new:
            self._replacements.setdefault(line, {})[(start, end)] = new

    def rewrite_urls(self, line: int, rules: RuleSet, start: int = 0, end: int | None = None) -> None:
        end = len(self.lines[line]) if end is None else end
        self.replace(line, start, end, rules.apply_line(self.lines[line][start:end]))

    def insert_before(self, line: int, new_lines: list[str]) -> None:
        """Whole lines, without line endings; `line` == len(lines) appends at the end."""
        self._inserted.setdefault(line, []).extend(new_lines)

    def text(self) -> str:
        parts = [self.bom]
        for index, (line, ending) in enumerate(zip(self.lines, self.endings, strict=True)):
            parts += [new + self.newline for new in self._inserted.get(index, [])]
            for (start, end), new in sorted(self._replacements.get(index, {}).items(), reverse=True):
                line = line[:start] + new + line[end:]
            appending = index == len(self.lines) - 1 and self._inserted.get(len(self.lines))
            parts += [line, ending or (self.newline if appending else "")]
        parts += [new + self.newline for new in self._inserted.get(len(self.lines), [])]
        return "".join(parts)


def _error(line: int, problem: str, source: Path, hint: str) -> RecipeError:
    return RecipeError(f"line {line}: {problem}", path=source, hint=hint)


# --- YAML: validate, locate scalars, edit them in their own quoting ------------------------

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml when PyYAML has it: lock files list thousands of packages."""

_PLAIN_SAFE = re.compile(r"[A-Za-z0-9][^\s#,\[\]{}'\"]*(?<!:)")
"""Values that read back as the same string when written as a YAML plain scalar."""

_YAML_HINT = "fix the YAML at that line; imagebuild edits the file in place and will not guess"


def _compose(document: _Document, source: Path) -> yaml.Node | None:
    """The node tree (with line and column marks) of a one-document YAML file; None if empty."""
    body = document.body
    try:
        return yaml.compose(body, Loader=_YAML_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise _error(line, f"not valid YAML: {problem}", source, _YAML_HINT) from None
    except yaml.reader.ReaderError as exc:
        line = len(_LINE_BREAK.findall(body[: exc.position])) + 1
        raise _error(line, f"not valid YAML: {exc.reason}", source, _YAML_HINT) from None


def _is_null(node: yaml.Node | None) -> bool:
    """Absent, or an empty value such as `channels:` with nothing after it."""
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null")


def _mapping(node: yaml.Node | None, what: str, source: Path) -> yaml.MappingNode | None:
    if _is_null(node):
        return None
    if isinstance(node, yaml.MappingNode):
        return node
    raise _error(node.start_mark.line + 1, f"{what} must be a mapping", source, _YAML_HINT)


def _sequence(node: yaml.Node | None, what: str, source: Path) -> list[yaml.Node]:
    if _is_null(node):
        return []
    if isinstance(node, yaml.SequenceNode):
        return node.value
    raise _error(node.start_mark.line + 1, f"{what} must be a list", source, _YAML_HINT)


def _get(mapping: yaml.MappingNode | None, key: str) -> yaml.Node | None:
    """The value of `key`; the last one wins, as when YAML is loaded."""
    found = None
    for key_node, value in mapping.value if mapping is not None else ():
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found = value
    return found


def _scalars(nodes: list[yaml.Node], what: str, source: Path) -> Iterator[yaml.ScalarNode]:
    for node in nodes:
        if not isinstance(node, yaml.ScalarNode):
            raise _error(node.start_mark.line + 1, f"each item of {what} must be a plain value", source, _YAML_HINT)
        yield node


def _one_line(node: yaml.ScalarNode) -> bool:
    """Block scalars and values folded over lines are left alone: URLs and names never are."""
    return node.style not in ("|", ">") and node.start_mark.line == node.end_mark.line


def _yaml_scalar(value: str, style: str | None) -> str:
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not _PLAIN_SAFE.fullmatch(value):
        return json.dumps(value)  # JSON strings are YAML double-quoted scalars
    return value


def _set_scalar(document: _Document, node: yaml.ScalarNode, value: str) -> None:
    """Write `value` where `node` stands, in the node's quoting."""
    if value != node.value and _one_line(node):
        start, end = node.start_mark, node.end_mark
        document.replace(start.line, start.column, end.column, _yaml_scalar(value, node.style or None))


def _rewrite_scalar_urls(document: _Document, node: yaml.ScalarNode, rules: RuleSet) -> None:
    """URL rules on the scalar's own text, so quoting and escapes around the URL stay."""
    if _one_line(node):
        document.rewrite_urls(node.start_mark.line, rules, node.start_mark.column, node.end_mark.column)


# --- conda channels -------------------------------------------------------------------------

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
    document: _Document, channels: yaml.Node | None, profile: MirrorProfile, source: Path, *, expand_defaults: bool
) -> None:
    rules = url_rules(profile)
    for item in _scalars(_sequence(channels, "channels", source), "channels", source):
        defaults = _mapped_defaults(profile) if expand_defaults and item.value == "defaults" else []
        expanded = _item_list(document, item, defaults, channels) if defaults and _one_line(item) else None
        if expanded is not None:
            document.replace(item.start_mark.line, item.start_mark.column, item.end_mark.column, expanded)
        else:
            _set_scalar(document, item, _channel(item.value, profile, rules))


def _item_list(document: _Document, item: yaml.ScalarNode, values: list[str], sequence: yaml.Node) -> str | None:
    """`values` written as consecutive items of `sequence` in place of `item`; None when the
    item does not sit on its own `- ` line of a block list."""
    written = [_yaml_scalar(value, item.style or None) for value in values]
    if sequence.flow_style:
        return ", ".join(written)
    line = document.lines[item.start_mark.line]
    dash = line.rfind("-", 0, item.start_mark.column)
    if dash < 0 or line[dash + 1 : item.start_mark.column].strip():
        return None
    prefix = " " * dash + line[dash : item.start_mark.column]
    ending = document.endings[item.start_mark.line] or document.newline
    return (ending + prefix).join(written)


# --- the rewriters, one per kind ------------------------------------------------------------


def _rewrite_environment(document: _Document, profile: MirrorProfile, source: Path) -> str:
    """environment.yml: the `channels:` list and the URLs of the `pip:` sub-list.

    `defaults` stays as it is unless the profile mirrors a pkgs/* channel: then it becomes the
    explicit list it stands for (pkgs/main, pkgs/r), each at its mirror or, when the profile
    has none for it, at repo.anaconda.com. conda resolves `defaults` through the default_channels
    of whatever .condarc the installing machine has, so only an explicit list keeps the file
    pointing at the mirror wherever it is used.
    """
    root = _mapping(_compose(document, source), "an environment file", source)
    _rewrite_channels(document, _get(root, "channels"), profile, source, expand_defaults=True)
    rules = url_rules(profile)
    for dependency in _sequence(_get(root, "dependencies"), "dependencies", source):
        if isinstance(dependency, yaml.MappingNode):
            for entry in _scalars(_sequence(_get(dependency, "pip"), "pip", source), "pip", source):
                _rewrite_scalar_urls(document, entry, rules)
    return document.text()


def _rewrite_conda_lock(document: _Document, profile: MirrorProfile, source: Path) -> str:
    """conda-lock.yml: package URLs through the rules (hashes stay valid: only the prefix
    changes) and the metadata's channel names as in environment.yml. An '@EXPLICIT' lock lists
    one package URL a line. The metadata keeps `defaults` as is: it only records what was
    solved against, and conda-lock installs from the package URLs."""
    rules = url_rules(profile)
    if _has_explicit_marker(document.body):
        for index, line in enumerate(document.lines):
            if line.strip() and not line.lstrip().startswith(("#", "@")):
                document.rewrite_urls(index, rules)
        return document.text()
    root = _mapping(_compose(document, source), "a conda-lock file", source)
    metadata = _mapping(_get(root, "metadata"), "metadata", source)
    for channel in _sequence(_get(metadata, "channels"), "metadata.channels", source):
        url = _get(_mapping(channel, "each item of metadata.channels", source), "url")
        if isinstance(url, yaml.ScalarNode):
            _set_scalar(document, url, _channel(url.value, profile, rules))
    for package in _sequence(_get(root, "package"), "package", source):
        url = _get(_mapping(package, "each item of package", source), "url")
        if isinstance(url, yaml.ScalarNode):
            _rewrite_scalar_urls(document, url, rules)
    return document.text()


def _rewrite_condarc(document: _Document, profile: MirrorProfile, source: Path) -> str:
    """.condarc: channel_alias, channels (names as in environment.yml, but `defaults` stays:
    here default_channels says what it means), default_channels and custom_channels URLs.
    The profile's channel_alias, and the pkgs/* channels it mirrors as default_channels, are
    added when the file lacks that key: conda resolves channel names and `defaults` through
    them."""
    root = _mapping(_compose(document, source), "a .condarc", source)
    rules = url_rules(profile)
    alias = _get(root, "channel_alias")
    if isinstance(alias, yaml.ScalarNode):
        _rewrite_scalar_urls(document, alias, rules)
    _rewrite_channels(document, _get(root, "channels"), profile, source, expand_defaults=False)
    default_channels = _get(root, "default_channels")
    for item in _scalars(_sequence(default_channels, "default_channels", source), "default_channels", source):
        _rewrite_scalar_urls(document, item, rules)
    custom = _mapping(_get(root, "custom_channels"), "custom_channels", source)
    for _, url in custom.value if custom is not None else ():
        if isinstance(url, yaml.ScalarNode):
            _rewrite_scalar_urls(document, url, rules)
    added: dict[str, str | list[str]] = {}
    if profile.conda is not None and profile.conda.channel_alias and alias is None:
        added["channel_alias"] = profile.conda.channel_alias
    if default_channels is None and _mapped_defaults(profile):
        added["default_channels"] = _mapped_defaults(profile)
    _add_keys(document, root, added)
    return document.text()


def _add_keys(document: _Document, root: yaml.MappingNode | None, added: dict[str, str | list[str]]) -> None:
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


def _rewrite_compose(document: _Document, profile: MirrorProfile, source: Path) -> str:
    """docker-compose.yml: the `image:` of each service (also through `<<:` merge keys)."""
    root = _mapping(_compose(document, source), "a compose file", source)
    services = _mapping(_get(root, "services"), "services", source)
    for _, service in services.value if services is not None else ():
        image = _service_image(_mapping(service, "each service", source))
        if isinstance(image, yaml.ScalarNode):
            _set_scalar(document, image, rewrite_image_ref(image.value, profile.registry))
    return document.text()


def _service_image(service: yaml.MappingNode | None) -> yaml.Node | None:
    image = _get(service, "image")
    merged = _get(service, "<<")
    if image is not None or merged is None:
        return image
    for base in merged.value if isinstance(merged, yaml.SequenceNode) else [merged]:
        if isinstance(base, yaml.MappingNode) and (found := _service_image(base)) is not None:
            return found
    return None


# --- Dockerfile -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Word:
    """A whitespace-separated word of an instruction; `line` is None when it spans a continuation."""

    text: str
    line: int | None
    start: int
    end: int


@dataclass(frozen=True)
class _Instruction:
    keyword: str
    line: int
    words: list[_Word]


@dataclass
class _DockerfileLayout:
    instructions: list[_Instruction] = field(default_factory=list)
    heredoc_lines: list[int] = field(default_factory=list)


_HEREDOC = re.compile(r"(?<!<)<<(?!<)(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_ARG_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([\"']?)(.*)\2")
_ARG_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _escape_character(document: _Document) -> str:
    """The `# escape=` parser directive, read only from the comments that open the file."""
    for line in document.lines:
        directive = re.fullmatch(r"\s*#\s*([A-Za-z]+)\s*=\s*(\S+)\s*", line)
        if directive is None:
            break
        if directive.group(1).lower() == "escape":
            return directive.group(2)
    return "\\"


def _dockerfile_layout(document: _Document) -> _DockerfileLayout:
    """Instructions joined over continuation lines (comments and blank lines inside dropped,
    as Docker does), and the lines of heredoc bodies, which are content, not instructions."""
    continuation = re.compile(re.escape(_escape_character(document)) + r"[ \t]*$")
    layout = _DockerfileLayout()
    index, count = 0, len(document.lines)
    while index < count:
        if _is_comment_or_blank(document.lines[index]):
            index += 1
            continue
        pieces: list[tuple[int, str]] = []
        while index < count:
            line = document.lines[index]
            index += 1
            if pieces and _is_comment_or_blank(line):
                continue
            joined = continuation.search(line)
            pieces.append((index - 1, line if joined is None else line[: joined.start()]))
            if joined is None:
                break
        instruction = _instruction(pieces)
        if instruction is None:
            continue
        layout.instructions.append(instruction)
        if instruction.keyword in ("RUN", "COPY", "ADD"):
            for marker in _HEREDOC.finditer(" ".join(word.text for word in instruction.words)):
                while index < count:
                    line = document.lines[index]
                    index += 1
                    if (line.lstrip("\t") if marker.group(1) else line) == marker.group(3):
                        break
                    layout.heredoc_lines.append(index - 1)
    return layout


def _instruction(pieces: list[tuple[int, str]]) -> _Instruction | None:
    text = "".join(piece for _, piece in pieces)
    where = [(line, column) for line, piece in pieces for column in range(len(piece))]
    words = []
    for match in re.finditer(r"\S+", text):
        (first_line, first), (last_line, last) = where[match.start()], where[match.end() - 1]
        contiguous = first_line == last_line and last - first == len(match.group()) - 1
        words.append(_Word(match.group(), first_line if contiguous else None, first, last + 1))
    return _Instruction(words[0].text.upper(), pieces[0][0], words[1:]) if words else None


def rewrite_dockerfile(
    text: str, profile: MirrorProfile, *, source: Path, from_image: Callable[[str], str] | None = None
) -> str:
    """The Dockerfile rewrite, with `from_image` choosing each FROM's image instead of the registry mirrors."""
    return _rewrite_dockerfile(_Document(text), profile, source, from_image)


def dockerfile_instructions(text: str) -> list[tuple[str, int, list[str]]]:
    """(keyword, first line, words) of each instruction, lines numbered from 0 as rewrite_file splits them."""
    return [(i.keyword, i.line, [word.text for word in i.words]) for i in _dockerfile_layout(_Document(text)).instructions]


def _rewrite_dockerfile(
    document: _Document, profile: MirrorProfile, source: Path, from_image: Callable[[str], str] | None = None
) -> str:
    """FROM and COPY --from image references through the registry mirrors, skipping scratch,
    earlier stages and references with variables; `FROM ${BASE}` rewrites the default of the
    global `ARG BASE=...` instead. Every other instruction and heredoc body: URL rules. Comments
    stay as they are."""
    rules = url_rules(profile)
    route = from_image or (lambda image: rewrite_image_ref(image, profile.registry))
    layout = _dockerfile_layout(document)
    stages: set[str] = set()
    global_args: dict[str, _Word] = {}
    seen_from = False
    for instruction in layout.instructions:
        if instruction.keyword == "FROM":
            stage = _rewrite_from(document, instruction, route, stages, global_args, source)
            if stage:
                stages.add(stage.lower())
            seen_from = True
            continue
        if instruction.keyword == "ARG" and not seen_from:
            global_args.update(_arg_defaults(instruction))
        for word in instruction.words:
            if word.line is None:
                continue
            if instruction.keyword == "COPY" and word.text.startswith("--from="):
                image = word.text.removeprefix("--from=")
                if image.lower() not in stages and not image.isdigit():
                    document.replace(
                        word.line, word.start + len("--from="), word.end, rewrite_image_ref(image, profile.registry)
                    )
            else:
                document.rewrite_urls(word.line, rules, word.start, word.end)
    for line in layout.heredoc_lines:
        document.rewrite_urls(line, rules)
    return document.text()


def _rewrite_from(
    document: _Document,
    instruction: _Instruction,
    route: Callable[[str], str],
    stages: set[str],
    global_args: dict[str, _Word],
    source: Path,
) -> str | None:
    """Rewrite one FROM's image; return the stage name it declares, if any."""
    arguments = [word for word in instruction.words if not word.text.startswith("--")]
    if not arguments:
        raise _error(
            instruction.line + 1, "FROM without an image", source, "write FROM [--platform=...] IMAGE[:TAG] [AS NAME]"
        )
    image = arguments[0]
    stage = arguments[2].text if len(arguments) >= 3 and arguments[1].text.lower() == "as" else None
    reference = _ARG_REFERENCE.fullmatch(image.text)
    if reference is not None:
        image = global_args.get(reference.group(1) or reference.group(2), image)
    if image.line is not None and image.text.lower() not in stages:
        document.replace(image.line, image.start, image.end, route(image.text))
    return stage


def _arg_defaults(instruction: _Instruction) -> dict[str, _Word]:
    """NAME -> its default value (quotes excluded) in a global ARG instruction."""
    found = {}
    for word in instruction.words:
        declared = _ARG_VALUE.fullmatch(word.text)
        if declared is not None and word.line is not None:
            start = word.start + len(declared.group(1)) + 1 + len(declared.group(2))
            found[declared.group(1)] = _Word(declared.group(3), word.line, start, start + len(declared.group(3)))
    return found


# --- requirements.txt -------------------------------------------------------------------------

_REQUIREMENTS_COMMENT = re.compile(r"(^|\s)#")
_REQUIREMENTS_OPTION = re.compile(
    r"\s*(?P<flag>--index-url|--extra-index-url|--trusted-host|--no-index|-i)(?![\w-])(?:\s*=?\s*(?P<value>\S+))?"
)


def _rewrite_requirements(document: _Document, profile: MirrorProfile, source: Path) -> str:
    """URL rules on every requirement line (git+https://, -i https://pypi.org/simple, ...).

    With a PyPI mirror, a file that names no index gets `--index-url` as its first line; the
    mirror's extra indexes and trusted hosts are added whenever the file uses the mirror. A
    file that names another index (or --no-index) keeps it and gets nothing added.
    """
    rules = url_rules(profile)
    options: dict[str, list[str]] = {}
    for index, line in enumerate(document.lines):
        comment = _REQUIREMENTS_COMMENT.search(line)
        code_end = comment.start() if comment else len(line)
        document.rewrite_urls(index, rules, 0, code_end)
        option = _REQUIREMENTS_OPTION.match(line[:code_end])
        if option is not None:
            flag = "--index-url" if option["flag"] == "-i" else option["flag"]
            options.setdefault(flag, []).append(rules.apply_line(option["value"] or ""))
    pypi = profile.pypi
    if pypi is None or "--no-index" in options:
        return document.text()
    indexes = options.get("--index-url", [])
    if indexes and not any(_same_url(url, pypi.index_url) for url in indexes):
        return document.text()
    added = [] if indexes else [f"--index-url {pypi.index_url}"]
    added += [
        f"--extra-index-url {url}"
        for url in pypi.extra_index_urls
        if not any(_same_url(url, present) for present in options.get("--extra-index-url", []))
    ]
    added += [f"--trusted-host {host}" for host in pypi.trusted_hosts if host not in options.get("--trusted-host", [])]
    document.insert_before(0, added)
    return document.text()


def _same_url(first: str, second: str) -> bool:
    return first.strip().rstrip("/") == second.strip().rstrip("/")


# --- pip.conf ---------------------------------------------------------------------------------


@dataclass
class _IniOption:
    line: int
    last_line: int
    value: str


@dataclass
class _IniSection:
    name: str
    line: int
    options: dict[str, _IniOption] = field(default_factory=dict)


_PIP_CONF_HINT = "pip reads pip.conf as INI: [section] headers, then 'key = value' lines"


def _validate_ini(document: _Document, source: Path) -> None:
    """configparser as pip uses it (RawConfigParser); its errors carry the line number."""
    try:
        configparser.RawConfigParser().read_string(document.body)
    except configparser.MissingSectionHeaderError as exc:
        raise _error(exc.lineno, "a setting before any [section] header", source, _PIP_CONF_HINT) from None
    except configparser.ParsingError as exc:
        raise _error(exc.errors[0][0], "neither a [section] header nor 'key = value'", source, _PIP_CONF_HINT) from None
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as exc:
        what = f"option '{exc.option}'" if isinstance(exc, configparser.DuplicateOptionError) else "section"
        raise _error(exc.lineno, f"{what} [{exc.section}] given twice", source, _PIP_CONF_HINT) from None


def _ini_sections(document: _Document) -> list[_IniSection]:
    """Sections and their options, read as configparser reads them: a line indented deeper
    than its option continues the value; comment and blank lines end nothing."""
    sections: list[_IniSection] = []
    option: _IniOption | None = None
    indent = 0
    for index, line in enumerate(document.lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        line_indent = len(line) - len(line.lstrip())
        if option is not None and line_indent > indent:
            option.last_line, option.value = index, f"{option.value}\n{stripped}"
            continue
        indent = line_indent
        header = re.match(r"\[(.+)\]", stripped)
        if header is not None:
            sections.append(_IniSection(header.group(1), index))
            option = None
            continue
        key, _, value = re.split(r"\s*([=:])\s*", stripped, maxsplit=1)
        option = _IniOption(index, index, value)
        sections[-1].options[key.lower().replace("_", "-")] = option
    return sections


def _rewrite_pip_conf(document: _Document, profile: MirrorProfile, source: Path) -> str:
    """pip.conf / pip.ini: URL rules on every setting; with a PyPI mirror, [global] gets the
    mirror's index-url, extra-index-url and trusted-host (a [global] section is added if
    missing), and so does any other section whose index-url is now the mirror. A section that
    names another index keeps it. Missing keys go right after the section header; missing
    values are appended to a key's list."""
    _validate_ini(document, source)
    rules = url_rules(profile)
    for index, line in enumerate(document.lines):
        if not line.strip().startswith(("#", ";")):
            document.rewrite_urls(index, rules)
    if profile.pypi is None:
        return document.text()
    settings = {
        "index-url": [profile.pypi.index_url],
        "extra-index-url": profile.pypi.extra_index_urls,
        "trusted-host": profile.pypi.trusted_hosts,
    }
    sections = _ini_sections(document)
    for section in sections:
        index_url = section.options.get("index-url")
        uses_mirror = index_url is not None and _same_url(rules.apply_line(index_url.value), profile.pypi.index_url)
        if uses_mirror or (index_url is None and section.name == "global"):
            document.insert_before(section.line + 1, _pip_settings(document, section.options, settings, rules))
    if not any(section.name == "global" for section in sections):
        new_section = ["[global]", *_pip_settings(document, {}, settings, rules)]
        document.insert_before(0, new_section + ([""] if document.lines else []))
    return document.text()


def _pip_settings(
    document: _Document, options: dict[str, _IniOption], settings: dict[str, list[str]], rules: RuleSet
) -> list[str]:
    """Lines for the keys a section lacks; values it lacks are appended to its existing keys."""
    new_lines = []
    for key, values in settings.items():
        option = options.get(key)
        if option is None:
            if values:
                new_lines.append(f"{key} = {' '.join(values)}")
            continue
        present = rules.apply_line(option.value).split()
        missing = [value for value in values if not any(_same_url(value, item) for item in present)]
        if missing:
            end = len(document.lines[option.last_line])
            document.replace(option.last_line, end, end, " " + " ".join(missing))
    return new_lines


# --- apt sources ------------------------------------------------------------------------------


def _rewrite_apt_sources(document: _Document, profile: MirrorProfile, source: Path) -> str:
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


_REWRITERS: dict[FileKind, Callable[[_Document, MirrorProfile, Path], str]] = {
    FileKind.DOCKERFILE: _rewrite_dockerfile,
    FileKind.COMPOSE: _rewrite_compose,
    FileKind.ENVIRONMENT: _rewrite_environment,
    FileKind.CONDA_LOCK: _rewrite_conda_lock,
    FileKind.REQUIREMENTS: _rewrite_requirements,
    FileKind.PIP_CONF: _rewrite_pip_conf,
    FileKind.CONDARC: _rewrite_condarc,
    FileKind.APT_SOURCES: _rewrite_apt_sources,
}
