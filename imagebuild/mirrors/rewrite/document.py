"""Editing text by line and column: untouched text stays byte-identical, so a rewrite with an
empty profile returns its input and a second rewrite changes nothing."""

import re
from pathlib import Path

from imagebuild.errors import RecipeError
from imagebuild.mirrors.rules import RuleSet

LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
"""YAML's line breaks, so a YAML mark's line and column address the same character here."""


class Document:
    """A text as lines, edited by (line, column) of the original; untouched text stays as it was."""

    def __init__(self, text: str) -> None:
        self.bom = "\ufeff" if text.startswith("\ufeff") else ""
        body = text[len(self.bom) :]
        self.lines: list[str] = []
        self.endings: list[str] = []
        start = 0
        for match in LINE_BREAK.finditer(body):
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


def line_error(line: int, problem: str, source: Path, hint: str) -> RecipeError:
    return RecipeError(f"line {line}: {problem}", path=source, hint=hint)
