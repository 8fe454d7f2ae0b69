"""Dockerfiles: FROM and COPY --from images through the registry mirrors, URLs in every other
instruction and heredoc body through the URL rules, and (for `mirror rewrite`) each shell-form
RUN prefixed with the profile's build-time settings (buildtime.py); comments stay as they are."""

import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagebuild.mirrors.rewrite.buildtime import BEGIN, END, RUNTIME_MARKER, SECRET_FLAG, run_prefix, runtime_lines
from imagebuild.mirrors.rewrite.document import Document, line_error
from imagebuild.mirrors.rewrite.instructions import (
    ARG_REFERENCE,
    DockerfileLayout,
    Instruction,
    Word,
    arg_defaults,
    dockerfile_instructions,
    dockerfile_layout,
    parse_dockerfile,
)
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import MirrorProfile
from imagebuild.model.routes import rewrite_image_ref


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


def _runs(layout: DockerfileLayout) -> list[_Run]:
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
        for run in _runs(dockerfile_layout(Document(text)))
        if run.problem is not None
    ]


def _written_here(document: Document, word: Word) -> bool:
    """Whether an earlier rewrite wrote `word` (a RUN prefix, a runtime ENV): its git upstreams stay."""
    assert word.line is not None
    line = document.lines[word.line]
    begin = line.rfind(BEGIN, 0, word.start + 1)
    in_prefix = begin >= 0 and line.find(END, begin) + len(END) >= word.end
    return in_prefix or (word.line > 0 and document.lines[word.line - 1] == RUNTIME_MARKER)


def _route_runs(document: Document, layout: DockerfileLayout, prefix: str, flag: str | None) -> None:
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
    layout = dockerfile_layout(document)
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


def _keep_in_image(document: Document, layout: DockerfileLayout, lines: list[str]) -> None:
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
    reference = ARG_REFERENCE.fullmatch(image.text)
    if reference is not None:
        image = global_args.get(reference.group(1) or reference.group(2), image)
    if image.line is not None and image.text.lower() not in stages:
        document.replace(image.line, image.start, image.end, route(image.text))


__all__ = ["Instruction", "arg_defaults", "dockerfile_instructions", "parse_dockerfile", "rewrite_dockerfile", "unrouted_runs"]
"""What other modules take from here (the parser's names among them, from instructions.py)."""
