"""requirements files and pip.conf: index options and settings pointed at the PyPI mirror."""

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from imagebuild.mirrors.rewrite.document import Document, line_error
from imagebuild.mirrors.rules import RuleSet, url_rules
from imagebuild.model.mirror import MirrorProfile

_REQUIREMENTS_COMMENT = re.compile(r"(^|\s)#")
_REQUIREMENTS_OPTION = re.compile(
    r"\s*(?P<flag>--index-url|--extra-index-url|--trusted-host|--no-index|-i)(?![\w-])(?:\s*=?\s*(?P<value>\S+))?"
)


def rewrite_requirements(document: Document, profile: MirrorProfile, source: Path) -> str:
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


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s;#]+")
_DIRECT_REFERENCE = re.compile(r"^\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@\s*(?P<target>\S+)")


def unrouted_requirements(text: str, profile: MirrorProfile) -> list[str]:
    """'line N: why' for each requirement line whose download the rewrite leaves where it was:
    a URL no rule of the profile covers (and not the mirror's own), or a direct reference
    without a URL scheme (pip reads it as a local path)."""
    rules = url_rules(profile)
    mirrors = {urlsplit(url).netloc for url in [rule.mirror for rule in rules.rules] + ([profile.pypi.index_url] if profile.pypi else [])}
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        comment = _REQUIREMENTS_COMMENT.search(line)
        code = line[: comment.start()] if comment else line
        for url in _URL.findall(code):
            plain = url.split("+", 1)[1] if url.split("://")[0].count("+") else url  # git+https://... -> https://...
            if rules.apply_line(url) == url and urlsplit(plain).netloc not in mirrors:
                found.append(f"line {number}: {url} is covered by no rule of the profile: it is downloaded from there")
        reference = _DIRECT_REFERENCE.match(code)
        if reference and "://" not in reference["target"]:
            found.append(f"line {number}: '{reference['target']}' has no URL scheme: pip reads it as a local path, not routed")
    return found


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


def _validate_ini(document: Document, source: Path) -> None:
    """configparser as pip uses it (RawConfigParser); its errors carry the line number."""
    try:
        configparser.RawConfigParser().read_string(document.body)
    except configparser.MissingSectionHeaderError as exc:
        raise line_error(exc.lineno or 1, "a setting before any [section] header", source, _PIP_CONF_HINT) from None
    except configparser.ParsingError as exc:
        raise line_error(exc.errors[0][0], "neither a [section] header nor 'key = value'", source, _PIP_CONF_HINT) from None
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as exc:
        what = f"option '{exc.option}'" if isinstance(exc, configparser.DuplicateOptionError) else "section"
        raise line_error(exc.lineno or 1, f"{what} [{exc.section}] given twice", source, _PIP_CONF_HINT) from None


def _ini_sections(document: Document) -> list[_IniSection]:
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


def rewrite_pip_conf(document: Document, profile: MirrorProfile, source: Path) -> str:
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
    document: Document, options: dict[str, _IniOption], settings: dict[str, list[str]], rules: RuleSet
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
