"""YAML for the rewriters: validate, locate scalars by line and column, edit them in their own
quoting (PyYAML only reads; the file is never re-serialised)."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from imagebuild.mirrors.rewrite.document import LINE_BREAK, Document, line_error
from imagebuild.mirrors.rules import RuleSet
from imagebuild.model.text import TOO_DEEP, TOO_DEEP_HINT

YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml when PyYAML has it: lock files list thousands of packages."""

_PLAIN_SAFE = re.compile(r"[A-Za-z0-9][^\s#,\[\]{}'\"]*(?<!:)")
"""Values that read back as the same string when written as a YAML plain scalar."""

_YAML_HINT = "fix the YAML at that line; imagebuild edits the file in place and will not guess"


def compose(document: Document, source: Path) -> yaml.Node | None:
    """The node tree (with line and column marks) of a one-document YAML file; None if empty."""
    body = document.body
    try:
        return yaml.compose(body, Loader=YAML_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise line_error(line, f"not valid YAML: {problem}", source, _YAML_HINT) from None
    except RecursionError:
        raise line_error(1, TOO_DEEP, source, TOO_DEEP_HINT) from None
    except yaml.reader.ReaderError as exc:
        line = len(LINE_BREAK.findall(body[: exc.position])) + 1
        raise line_error(line, f"not valid YAML: {exc.reason}", source, _YAML_HINT) from None


def is_null(node: yaml.Node | None) -> bool:
    """Absent, or an empty value such as `channels:` with nothing after it."""
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null")


def as_mapping(node: yaml.Node | None, what: str, source: Path) -> yaml.MappingNode | None:
    if node is None or is_null(node):
        return None
    if isinstance(node, yaml.MappingNode):
        return node
    raise line_error(node.start_mark.line + 1, f"{what} must be a mapping", source, _YAML_HINT)


def as_sequence(node: yaml.Node | None, what: str, source: Path) -> list[yaml.Node]:
    if node is None or is_null(node):
        return []
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    raise line_error(node.start_mark.line + 1, f"{what} must be a list", source, _YAML_HINT)


def get_key(mapping: yaml.MappingNode | None, key: str) -> yaml.Node | None:
    """The value of `key`; the last one wins, as when YAML is loaded."""
    found = None
    for key_node, value in mapping.value if mapping is not None else ():
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found = value
    return found


def scalars(nodes: list[yaml.Node], what: str, source: Path) -> Iterator[yaml.ScalarNode]:
    for node in nodes:
        if not isinstance(node, yaml.ScalarNode):
            raise line_error(node.start_mark.line + 1, f"each item of {what} must be a plain value", source, _YAML_HINT)
        yield node


def on_one_line(node: yaml.ScalarNode) -> bool:
    """Block scalars and values folded over lines are left alone: URLs and names never are."""
    return node.style not in ("|", ">") and node.start_mark.line == node.end_mark.line


def yaml_scalar(value: str, style: str | None) -> str:
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not _PLAIN_SAFE.fullmatch(value):
        return json.dumps(value)  # JSON strings are YAML double-quoted scalars
    return value


def set_scalar(document: Document, node: yaml.ScalarNode, value: str) -> None:
    """Write `value` where `node` stands, in the node's quoting."""
    if value != node.value and on_one_line(node):
        start, end = node.start_mark, node.end_mark
        document.replace(start.line, start.column, end.column, yaml_scalar(value, node.style or None))


def rewrite_scalar_urls(document: Document, node: yaml.ScalarNode, rules: RuleSet) -> None:
    """URL rules on the scalar's own text, so quoting and escapes around the URL stay."""
    if on_one_line(node):
        document.rewrite_urls(node.start_mark.line, rules, node.start_mark.column, node.end_mark.column)
