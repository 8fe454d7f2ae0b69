"""Dockerfile parsing for the rewriters and the dockerfile recipe check: instructions joined over
continuation lines (heredoc bodies skipped), each word with its line and columns, so a rewrite
edits the text in place."""

import re
from dataclasses import dataclass, field

from imagebuild.mirrors.rewrite.document import Document


@dataclass(frozen=True)
class Word:
    """A whitespace-separated word of an instruction; `line` is None when it spans a continuation."""

    text: str
    line: int | None
    start: int
    end: int


@dataclass(frozen=True)
class Instruction:
    keyword: str
    line: int
    words: list[Word]

    @property
    def arguments(self) -> list[Word]:
        """Its words without the options (--from=..., --mount=..., --platform=...)."""
        return [word for word in self.words if not word.text.startswith("--")]

    @property
    def stage(self) -> str | None:
        """The stage a FROM declares (FROM IMAGE AS NAME), lower-cased as Docker matches stage names."""
        arguments = self.arguments
        if self.keyword == "FROM" and len(arguments) >= 3 and arguments[1].text.lower() == "as":
            return arguments[2].text.lower()
        return None


@dataclass
class DockerfileLayout:
    escape: str = "\\"
    instructions: list[Instruction] = field(default_factory=list)
    heredoc_lines: list[int] = field(default_factory=list)


_HEREDOC = re.compile(r"(?<!<)<<(?!<)(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_ARG_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([\"']?)(.*)\2")
ARG_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _escape_character(document: Document) -> str:
    """The `# escape=` parser directive, read only from the comments that open the file."""
    for line in document.lines:
        directive = re.fullmatch(r"\s*#\s*([A-Za-z]+)\s*=\s*(\S+)\s*", line)
        if directive is None:
            break
        if directive.group(1).lower() == "escape":
            return directive.group(2)
    return "\\"


def dockerfile_layout(document: Document) -> DockerfileLayout:
    """Instructions joined over continuation lines (comments and blank lines inside dropped,
    as Docker does), and the lines of heredoc bodies, which are content, not instructions."""
    layout = DockerfileLayout(_escape_character(document))
    continuation = re.compile(re.escape(layout.escape) + r"[ \t]*$")
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


def _instruction(pieces: list[tuple[int, str]]) -> Instruction | None:
    text = "".join(piece for _, piece in pieces)
    where = [(line, column) for line, piece in pieces for column in range(len(piece))]
    words = []
    for match in re.finditer(r"\S+", text):
        (first_line, first), (last_line, last) = where[match.start()], where[match.end() - 1]
        contiguous = first_line == last_line and last - first == len(match.group()) - 1
        words.append(Word(match.group(), first_line if contiguous else None, first, last + 1))
    return Instruction(words[0].text.upper(), pieces[0][0], words[1:]) if words else None


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, each joined over its continuation lines (heredoc bodies skipped)."""
    return dockerfile_layout(Document(text)).instructions


def dockerfile_instructions(text: str) -> list[tuple[str, int, list[str]]]:
    """(keyword, first line, words) of each instruction, lines numbered from 0 as rewrite_file splits them."""
    return [(i.keyword, i.line, [word.text for word in i.words]) for i in dockerfile_layout(Document(text)).instructions]


def arg_defaults(instruction: Instruction) -> dict[str, Word]:
    """NAME -> its default value (quotes excluded) in an ARG instruction; the value's `line` is
    None when it spans a continuation."""
    found = {}
    for word in instruction.words:
        declared = _ARG_VALUE.fullmatch(word.text)
        if declared is not None:
            start = word.start + len(declared.group(1)) + 1 + len(declared.group(2))
            found[declared.group(1)] = Word(declared.group(3), word.line, start, start + len(declared.group(3)))
    return found
