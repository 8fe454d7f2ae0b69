"""Step 4 for a dockerfile recipe, read: the admin's own Dockerfile and the context files it copies.

The Dockerfile is checked before anything is built (every problem is one line naming the file
and the line), its FROM build arguments are resolved with the recipe's `args`, and it is cut
after the `target` stage (the classic builder builds nothing after it). The context is what
`docker build` would send (.dockerignore honoured), narrowed to the files COPY and ADD take,
so the content hash covers exactly those. The result is a RenderedImage like a captured Binder
context: the mirror step routes its FROM images and RUN lines (mirrors/captured.py).
"""

import difflib
import fnmatch
import json
import posixpath
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imagebuild.build.engine import context_tar
from imagebuild.build.render import RenderedImage, context_files, source_label
from imagebuild.errors import RecipeError
from imagebuild.inputs.devpackages import LockedDevPackage, checkout
from imagebuild.mirrors.rewrite.dockerfile import Instruction, arg_defaults, parse_dockerfile
from imagebuild.model.external_schema import DockerfileSpec
from imagebuild.model.text import read_text
from imagebuild.plan import BuildPlan

KEYWORDS = ["FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"]
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_REMOTE = ("http://", "https://", "git@", "git://")


@dataclass(frozen=True)
class Stack:
    """A checked Dockerfile: FROM images resolved, cut after the target stage; `copies` are the
    context paths COPY and ADD take (None when a variable names one: then the whole context)."""

    dockerfile: str
    copies: tuple[str, ...] | None


def read_stack(item: BuildPlan, source: LockedDevPackage | None, cache: Path, git_env: dict[str, str]) -> RenderedImage:
    """The dockerfile recipe `item` as a build context: from its folder, or its repository at the locked commit."""
    spec = item.recipe.spec.dockerfile
    assert spec is not None
    with _folder(item, source, cache, git_env) as (folder, where):
        dockerfile, context = folder / spec.path, folder / spec.context
        if not dockerfile.is_file() or not context.is_dir():
            missing = f"file '{spec.path}'" if not dockerfile.is_file() else f"context folder '{spec.context}'"
            raise RecipeError(
                f"dockerfile: {missing} not found in {where}",
                path=item.recipe.path,
                hint="paths are relative to the repository's top; correct dockerfile.path or dockerfile.context",
            )
        shown = dockerfile if source is None else f"{where}:{spec.path}"
        stack = check_stack(read_text(dockerfile), spec, where=shown, recipe=item.recipe.path)
        files = context_files(context_tar(context, None), where=f"dockerfile.context {spec.context}")
    copied = tuple(item for item in files if stack.copies is None or copied_by(item.arcname, stack.copies))
    label = source_label(source) if source is not None else ""
    return RenderedImage(
        plan=item,
        base_ref="",  # the mirror step routes the FROM images and records the last here (mirrors/captured.py)
        dockerfile=stack.dockerfile.rstrip("\n") + "\n" + label,
        files=copied,
        build_args=tuple(sorted(spec.args.items())),
    )


@contextmanager
def _folder(
    item: BuildPlan, source: LockedDevPackage | None, cache: Path, git_env: dict[str, str]
) -> Iterator[tuple[Path, str]]:
    """(folder the recipe's paths are relative to, how to name it): the recipe's, or a checkout."""
    if source is None:
        yield item.recipe.directory, str(item.recipe.directory)
        return
    with tempfile.TemporaryDirectory(prefix="imagebuild-stack-") as scratch:
        located = source.model_copy(update={"url": item.recipe.source or source.url})  # a folder as file://
        checkout(located, cache, git_env, Path(scratch) / "checkout")
        yield Path(scratch) / "checkout", f"{source.url}@{source.commit[:12]}"


def check_stack(text: str, spec: DockerfileSpec, *, where: Path | str, recipe: Path) -> Stack:
    """The Dockerfile `text` checked and resolved for `spec`; a problem is a RecipeError naming `where` and the line."""
    instructions = parse_dockerfile(text)
    lines = text.splitlines(keepends=True)
    global_args: dict[str, str | None] = {}
    declared: set[str] = set()
    stages: list[str | None] = []
    starts: list[int] = []
    copies: list[str] | None = []
    for instruction in instructions:
        number, words = instruction.line + 1, [word.text for word in instruction.words]
        problem = _problem(instruction, words, stages)
        if problem is not None:
            raise RecipeError(f"line {number}: {problem[0]}", path=where, hint=problem[1])
        if instruction.keyword == "ARG":
            declared |= {word.split("=", 1)[0] for word in words}
        if instruction.keyword == "ARG" and not stages:
            global_args.update({word: None for word in words if "=" not in word})  # declared without a default
            global_args.update({name: value.text for name, value in arg_defaults(instruction).items()})
        elif instruction.keyword == "FROM":
            given = {name: value for name, value in spec.args.items() if name in global_args}  # as docker: declared ones
            _resolve_from(instruction, lines, {**global_args, **given}, where)
            stages.append(instruction.stage)
            starts.append(instruction.line)
        elif instruction.keyword in ("COPY", "ADD") and copies is not None:
            copies = _sources(instruction, copies)
    if not stages:
        raise RecipeError("no FROM instruction", path=where, hint="a Dockerfile starts with FROM IMAGE (after global ARGs)")
    for name in sorted(set(spec.args) - declared):
        close = difflib.get_close_matches(name, sorted(declared), n=1)
        raise RecipeError(
            f"dockerfile.args.{name}: {where} declares no ARG {name}, so the build would ignore it",
            path=recipe,
            hint=f"did you mean '{close[0]}'?" if close else f"its ARGs: {', '.join(sorted(declared)) or 'none'}; add ARG {name} to it or drop the key",
        )
    end = len(lines)
    if spec.target is not None:
        named = [stage for stage in stages if stage]
        if spec.target.lower() not in named:
            raise RecipeError(
                f"dockerfile.target: no stage named '{spec.target}' in {where}",
                path=recipe,
                hint=f"its stages: {', '.join(named) or '(none named; write FROM IMAGE AS NAME)'}",
            )
        following = stages.index(spec.target.lower()) + 1
        end = starts[following] if following < len(starts) else end
    return Stack("".join(lines[:end]), None if copies is None else tuple(copies))


def _problem(instruction: Instruction, words: list[str], stages: list[str | None]) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) with one instruction, or None."""
    keyword = instruction.keyword
    if keyword not in KEYWORDS:
        return f"unknown instruction '{keyword}'", "check for a missing '\\' at the end of the line before"
    if not stages and keyword not in ("ARG", "FROM"):
        return f"{keyword} before the first FROM", "only ARG may come before the first FROM"
    if any(word.startswith("<<") for word in words) and keyword in ("RUN", "COPY", "ADD"):
        return "a heredoc needs BuildKit; imagebuild builds with the engine's classic builder", (
            "put the script into a file of the context and COPY it, or write the commands on the RUN line"
        )
    arguments = instruction.arguments
    if keyword == "RUN" and arguments and arguments[0].text.startswith("["):
        return "an exec-form RUN (a JSON list) runs without a shell, so its downloads cannot go through the mirror", (
            "write it in shell form: RUN command arguments"
        )
    if keyword in ("COPY", "ADD"):
        for word in words:
            if word.startswith("--from="):
                name = word.removeprefix("--from=").lower()
                if name.isdigit() and int(name) >= len(stages):
                    return f"{keyword} --from={name}: there is no earlier stage {name}", "stages count from 0 in FROM order"
                if not name.isdigit() and not re.search(r"[:/@.]", name) and name not in stages:
                    return f"{keyword} --from={name}: no stage named '{name}' before this line", (
                        "name the stage with FROM IMAGE AS NAME before it, or give an image as NAME:TAG"
                    )
    return None


def _resolve_from(instruction: Instruction, lines: list[str], values: dict[str, str | None], where: Path | str) -> None:
    """Resolve one FROM's build arguments in `lines` (in place)."""
    arguments = instruction.arguments
    if not arguments:
        raise RecipeError(f"line {instruction.line + 1}: FROM without an image", path=where, hint="write FROM IMAGE[:TAG] [AS NAME]")
    image = arguments[0]

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        found = values.get(name)
        if match.group(2) == "-":
            return found or match.group(3)
        if match.group(2) == "+":
            return match.group(3) if found else ""
        if found is None:
            raise RecipeError(
                f"line {instruction.line + 1}: FROM {image.text}: the build argument {name} has no value",
                path=where,
                hint=f"give it a default (ARG {name}=...) before the first FROM, or set dockerfile.args.{name} in image.toml",
            )
        return found

    resolved = _VARIABLE.sub(value, image.text)
    if resolved != image.text:
        if image.line is None:
            raise RecipeError(
                f"line {instruction.line + 1}: FROM's image spans a line continuation", path=where, hint="write it on one line"
            )
        line = lines[image.line]
        lines[image.line] = line[: image.start] + resolved + line[image.end :]


def _sources(instruction: Instruction, copies: list[str]) -> list[str] | None:
    """`copies` with a COPY's or ADD's context sources added; None when one holds a variable."""
    if any(word.text.startswith("--from=") for word in instruction.words):
        return copies
    arguments = [word.text for word in instruction.arguments]
    if arguments and arguments[0].startswith("["):
        try:
            arguments = [str(part) for part in json.loads(" ".join(arguments))]
        except json.JSONDecodeError:
            return None
    sources = [source for source in arguments[:-1] if not source.startswith(_REMOTE)]
    if any("$" in source for source in sources):
        return None
    return [*copies, *sources]


def copied_by(name: str, sources: tuple[str, ...]) -> bool:
    """Whether COPY/ADD `sources` (Go filepath.Match patterns; a folder brings what is in it) take context file `name`."""
    parts = name.split("/")
    for source in sources:
        pattern = posixpath.normpath(source.lstrip("/"))
        if pattern == ".":
            return True
        wanted = pattern.split("/")
        if len(wanted) <= len(parts) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=False)):
            return True
    return False

