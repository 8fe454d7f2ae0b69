"""Dockerfiles: FROM and COPY --from images through the registry mirrors, URLs in every other
instruction and heredoc body through the URL rules, and (for `mirror rewrite`) each shell-form
RUN prefixed with the profile's build-time settings (buildtime.py); comments stay as they are."""

import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imagebuild.mirrors.rewrite.buildtime import BEGIN, END, RUNTIME_MARKER, SECRET_FLAG, run_prefix, runtime_lines
from imagebuild.mirrors.rewrite.document import Document, line_error
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import MirrorProfile
from imagebuild.model.routes import rewrite_image_ref


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
class _DockerfileLayout:
    escape: str = "\\"
    instructions: list[Instruction] = field(default_factory=list)
    heredoc_lines: list[int] = field(default_factory=list)


_HEREDOC = re.compile(r"(?<!<)<<(?!<)(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_ARG_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([\"']?)(.*)\2")
_ARG_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


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


def _dockerfile_layout(document: Document) -> _DockerfileLayout:
    """Instructions joined over continuation lines (comments and blank lines inside dropped,
    as Docker does), and the lines of heredoc bodies, which are content, not instructions."""
    layout = _DockerfileLayout(_escape_character(document))
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


def rewrite_dockerfile(
    text: str, profile: MirrorProfile, *, source: Path, from_image: Callable[[str], str] | None = None
) -> str:
    """FROM images and URLs only, with `from_image` choosing each FROM's image instead of the
    registry mirrors: for a build that routes RUN lines itself (captured.py)."""
    return rewrite_dockerfile_document(Document(text), profile, source, from_image, route_runs=False)


_POSIX_SHELLS = ("sh", "bash", "dash", "ash", "zsh", "ksh", "mksh")


@dataclass(frozen=True)
class _Run:
    """A RUN of a stage: where its command starts, or why its commands cannot be routed."""

    instruction: Instruction
    command: Word | None
    problem: str | None


def _runs(layout: _DockerfileLayout) -> list[_Run]:
    """Every RUN outside scratch stages, under the stage's SHELL (inherited from an earlier stage);
    `# escape=`` marks a Windows Dockerfile, whose default shell is cmd."""
    default = "cmd" if layout.escape == "`" else "/bin/sh"
    runs = []
    shells: dict[str, str] = {}
    shell: str | None = None  # None in scratch
    stage: str | None = None
    for instruction in layout.instructions:
        if instruction.keyword == "FROM":
            arguments = instruction.arguments
            image = arguments[0].text.lower() if arguments else "scratch"
            shell = None if image == "scratch" else shells.get(image, default)
            stage = instruction.stage
        elif instruction.keyword == "SHELL" and shell is not None:
            try:
                shell = str(json.loads(" ".join(word.text for word in instruction.words))[0])
            except (json.JSONDecodeError, IndexError, KeyError):
                shell = "unknown"
        elif instruction.keyword == "RUN" and shell is not None:
            runs.append(_run(instruction, shell))
        if stage and shell:
            shells[stage] = shell
    return runs


def _run(instruction: Instruction, shell: str) -> _Run:
    command = next(iter(instruction.arguments), None)
    if command is None:
        return _Run(instruction, None, "a RUN without a command")
    if command.text.startswith("[") and _json_list(" ".join(word.text for word in instruction.arguments)):
        return _Run(instruction, None, "an exec-form RUN (a JSON list) runs without a shell to set the mirror in")
    if command.text.startswith("<<"):
        return _Run(instruction, None, "a RUN that is only a heredoc script; write `RUN sh <<EOF` to route it")
    if posixpath.basename(shell) not in _POSIX_SHELLS:
        return _Run(instruction, None, f"a RUN under SHELL {shell}, not a POSIX shell")
    if command.line is None:
        return _Run(instruction, None, "a RUN whose first word spans a line continuation")
    return _Run(instruction, command, None)


def _json_list(text: str) -> bool:
    """Whether a RUN's text is the exec form: Docker runs text that is not a valid JSON list of
    strings as a shell command, whatever its first character."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def unrouted_runs(text: str, profile: MirrorProfile) -> list[str]:
    """'line N: why' for each RUN `mirror rewrite` leaves on upstream, when the profile has settings for RUNs."""
    if run_prefix(profile) is None:
        return []
    return [
        f"line {run.instruction.line + 1}: {run.problem}: its downloads stay on upstream"
        for run in _runs(_dockerfile_layout(Document(text)))
        if run.problem is not None
    ]


def _written_here(document: Document, word: Word) -> bool:
    """Whether an earlier rewrite wrote `word` (a RUN prefix, a runtime ENV): its git upstreams stay."""
    assert word.line is not None
    line = document.lines[word.line]
    begin = line.rfind(BEGIN, 0, word.start + 1)
    in_prefix = begin >= 0 and line.find(END, begin) + len(END) >= word.end
    return in_prefix or (word.line > 0 and document.lines[word.line - 1] == RUNTIME_MARKER)


def _route_runs(document: Document, layout: _DockerfileLayout, prefix: str, flag: str | None) -> None:
    """The prefix before each routable RUN's command (a prefix written by an earlier rewrite is
    replaced) and, for the secret form, the secret's mount `flag` after the RUN (once)."""
    for run in _runs(layout):
        if run.command is None or run.command.line is None:
            continue
        line = document.lines[run.command.line]
        start = run.command.start
        end = line.find(END, start) + len(END) + 1 if line.startswith(BEGIN, start) and END in line[start:] else start
        document.replace(run.command.line, start, end, prefix)
        keyword = re.match(r"\s*RUN", document.lines[run.instruction.line], flags=re.IGNORECASE)
        if flag and keyword and flag not in (word.text for word in run.instruction.words):
            document.replace(run.instruction.line, keyword.end(), keyword.end(), f" {flag}")


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, each joined over its continuation lines (heredoc bodies skipped)."""
    return _dockerfile_layout(Document(text)).instructions


def dockerfile_instructions(text: str) -> list[tuple[str, int, list[str]]]:
    """(keyword, first line, words) of each instruction, lines numbered from 0 as rewrite_file splits them."""
    return [(i.keyword, i.line, [word.text for word in i.words]) for i in _dockerfile_layout(Document(text)).instructions]


def rewrite_dockerfile_document(
    document: Document,
    profile: MirrorProfile,
    source: Path,
    from_image: Callable[[str], str] | None = None,
    *,
    route_runs: bool = True,
    secret_runs: bool = True,
) -> str:
    """FROM and COPY --from image references through the registry mirrors, skipping scratch,
    earlier stages and references with variables; `FROM ${BASE}` rewrites the default of the
    global `ARG BASE=...` instead. Every other instruction and heredoc body: URL rules. With
    `route_runs`, each shell-form RUN also gets the profile's build-time settings: from a
    BuildKit secret (`secret_runs`), else in its text. Comments stay as they are."""
    rules = url_rules(profile)
    route = from_image or (lambda image: rewrite_image_ref(image, profile.registry))
    layout = _dockerfile_layout(document)
    stages: set[str] = set()
    global_args: dict[str, Word] = {}
    seen_from = False
    for instruction in layout.instructions:
        if instruction.keyword == "FROM":
            _rewrite_from(document, instruction, route, stages, global_args, source)
            if instruction.stage:
                stages.add(instruction.stage)
            seen_from = True
            continue
        if instruction.keyword == "ARG" and not seen_from:
            global_args.update({name: value for name, value in arg_defaults(instruction).items() if value.line is not None})
        for word in instruction.words:
            if word.line is None:
                continue
            if instruction.keyword == "COPY" and word.text.startswith("--from="):
                image = word.text.removeprefix("--from=")
                if image.lower() not in stages and not image.isdigit():
                    document.replace(
                        word.line, word.start + len("--from="), word.end, rewrite_image_ref(image, profile.registry)
                    )
            elif not _written_here(document, word):
                document.rewrite_urls(word.line, rules, word.start, word.end)
    for line in layout.heredoc_lines:
        document.rewrite_urls(line, rules)
    prefix = run_prefix(profile, secret=secret_runs) if route_runs else None
    if prefix is not None:
        _route_runs(document, layout, prefix, SECRET_FLAG if secret_runs else None)
    kept = runtime_lines(profile) if route_runs else []
    if kept:
        _keep_in_image(document, layout, kept)
    return document.text()


def _keep_in_image(document: Document, layout: _DockerfileLayout, lines: list[str]) -> None:
    """`lines` right after each FROM but scratch, unless an earlier rewrite put them there."""
    for instruction in layout.instructions:
        arguments = instruction.arguments
        if instruction.keyword != "FROM" or not arguments or arguments[0].text.lower() == "scratch":
            continue
        after = max([instruction.line, *(word.line for word in instruction.words if word.line is not None)]) + 1
        if after >= len(document.lines) or document.lines[after] != RUNTIME_MARKER:
            document.insert_before(after, lines)


def _rewrite_from(
    document: Document,
    instruction: Instruction,
    route: Callable[[str], str],
    stages: set[str],
    global_args: dict[str, Word],
    source: Path,
) -> None:
    """Rewrite one FROM's image."""
    arguments = instruction.arguments
    if not arguments:
        raise line_error(
            instruction.line + 1, "FROM without an image", source, "write FROM [--platform=...] IMAGE[:TAG] [AS NAME]"
        )
    image = arguments[0]
    reference = _ARG_REFERENCE.fullmatch(image.text)
    if reference is not None:
        image = global_args.get(reference.group(1) or reference.group(2), image)
    if image.line is not None and image.text.lower() not in stages:
        document.replace(image.line, image.start, image.end, route(image.text))


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
