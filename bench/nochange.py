"""Benchmark: a run with nothing to do, imagebuild against Docker's own cache check.

    python bench/nochange.py [--rounds N] [--small | --stack]

Docker's side is `docker build` with the builder imagebuild builds with (BuildKit through the same
docker CLI and the same build-environment secret, or the classic builder with the same build
argument; host network) of the very Dockerfiles and contexts imagebuild renders
(pipeline.prepare), every step taken from the layer cache; it tags nothing. imagebuild's side is the
command a user types: `imagebuild plan` and `imagebuild build` of the same images, which render
every image, hash every input, and ask the engine for each content tag. The two sides alternate,
N rounds; the table gives the medians and their ratio. Asserts nothing.

Only images `imagebuild plan --all` reports as reused are measured, the bench never builds a
bundled image: when some would be built, it measures a throwaway copy of the project that holds
only the reused ones. `--small` measures a throwaway project instead (the bundled base and a
one-line child, built once, untimed, and removed from the engine afterwards); `--stack` one
dockerfile recipe (a two-stage Dockerfile in a git repository of its own whose context holds 400
files, half of them copied): imagebuild checks out the locked commit, checks the Dockerfile and
hashes what COPY takes, Docker's side gets the same routed Dockerfile and narrowed context.
"""

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# It runs the `imagebuild` command: from a virtual environment that is not activated
# (`.venv/bin/python bench/...`), that command is found only beside this interpreter.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

from imagebuild.build.buildenv import BUILD_ARG, BuildEnvServer
from imagebuild.build.builders import Builder, find_builder
from imagebuild.build.context import BuildContext
from imagebuild.config import RunOptions, resolve
from imagebuild.inputs.fetch import Fetcher
from imagebuild.mirrors.build import build_environment
from imagebuild.model.project import Project, load_project
from imagebuild.pipeline import prepare
from imagebuild.plan import plan

SMALL_IMAGE = "bench-nochange"
SMALL_RECIPE = 'description = "bench/nochange.py: one layer on base"\nparent = "base"\n[env]\nBENCH_NOCHANGE = "1"\n'
SMALL_NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "check", "metadata": {}, "outputs": [],
               "source": 'import os\nassert os.environ["BENCH_NOCHANGE"] == "1"'}],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
}  # fmt: skip


STACK_IMAGE, STACK_FILES = "bench-stack", 400
STACK_RECIPE = 'dockerfile = {{ repo = "{repository}", args = {{ SUITE = "bookworm" }} }}\n'
STACK_DOCKERFILE = "ARG SUITE\nFROM debian:${SUITE} AS build\nCOPY src/ /src/\nRUN cat /src/* | wc -c > /size\nFROM debian:${SUITE}\nCOPY --from=build /size /size\n"

# As on a user's machine, Python caches the bytecode it compiles (a shell may have turned that off).
USER_ENVIRONMENT = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def imagebuild(root: Path, *args: str) -> list[dict]:
    """A `--json` CLI call's parsed output. Its messages are shown only when it fails; a round
    that waited for another imagebuild's build lock says so (its figure is not the command's own)."""
    completed = subprocess.run(
        ["imagebuild", *args, "--json"], cwd=root, capture_output=True, text=True, check=False, env=USER_ENVIRONMENT
    )
    if completed.returncode != 0:
        raise SystemExit(f"'imagebuild {shlex.join(args)}' exited with {completed.returncode}:\n{completed.stderr}")
    if "waiting for another imagebuild" in completed.stderr:
        print(f"warning: 'imagebuild {shlex.join(args)}' waited for another imagebuild's lock", file=sys.stderr)
    return json.loads(completed.stdout)


def timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def docker_build(context: BuildContext, builder: Builder, build_env: str, secret: Path | None, *, cached: bool) -> None:
    """One `docker build` of a rendered context; with `cached`, a step not taken from the cache is an error.

    The warm-up round may build: the classic builder's cache keys hold the build argument, and
    imagebuild's build may have served its environment on another port (its reuse goes by content hash)."""
    if builder.uses_buildkit:
        arguments = [f"{name}={value}" for name, value in context.rendered.build_args]
        command = [builder.cli, "build", "--progress=plain", "--network", "host", *(f"--build-arg={a}" for a in arguments)]
        command += [f"--secret=id=imagebuild,src={secret}"] if secret else []
        sent, env = context.tar, {**os.environ, "DOCKER_BUILDKIT": "1"}
    else:
        arguments = [f"{name}={value}" for name, value in (*context.rendered.build_args, (BUILD_ARG, build_env))]
        command = ["docker", "build", "--network", "host", *(f"--build-arg={argument}" for argument in arguments)]
        sent, env = context.classic_tar(), {**os.environ, "DOCKER_BUILDKIT": "0"}
    completed = subprocess.run([*command, "-"], input=sent, capture_output=True, check=False, env=env)
    output = completed.stdout.decode(errors="replace") + completed.stderr.decode(errors="replace")
    steps = set(re.findall(r"^#(\d+) \[(?!internal)[^\]]*\] (?!FROM )", output, re.MULTILINE))  # FROM resolves, never "CACHED"
    uncached = steps - set(re.findall(r"^#(\d+) CACHED", output, re.MULTILINE)) if builder.uses_buildkit else set()
    if completed.returncode != 0 or (cached and ("Running in " in output or uncached)):
        name = context.rendered.plan.name
        raise SystemExit(f"docker build of {name} was not a cache hit (exit {completed.returncode}):\n{output[-2000:]}")


@dataclass(frozen=True)
class Comparison:
    """One row: imagebuild's command and Docker's cache check of the same images, seconds per round."""

    label: str
    ours: list[float]
    docker: list[float]

    def markdown(self) -> str:
        """Medians with the range, and two ratios: of the medians, and of the fastest rounds (the
        figure least disturbed by other work on the machine)."""
        ours, docker = statistics.median(self.ours), statistics.median(self.docker)
        ratios = f"{ours / docker:.2f}x | {min(self.ours) / min(self.docker):.2f}x"
        return f"| {self.label} | {ours:.2f} ({_range(self.ours)}) | {docker:.2f} ({_range(self.docker)}) | {ratios} |"


def _range(figures: list[float]) -> str:
    return f"{min(figures):.2f}-{max(figures):.2f}"


def compare(label: str, ours: Callable[[], None], docker: Callable[[bool], None], rounds: int) -> Comparison:
    """Both sides once untimed (warm file and engine caches, Docker's own layer cache), then
    `rounds` alternating rounds."""
    ours()
    docker(False)
    figures: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        figures[0].append(timed(ours))
        figures[1].append(timed(lambda: docker(True)))
    return Comparison(label, *figures)


def measure(project: Project, names: list[str], everything: bool, rounds: int, *, with_build: bool) -> list[Comparison]:
    """`imagebuild plan` (and `build`) of `names` against `docker build` of their rendered contexts."""
    config = resolve(RunOptions(offline=True), project=project)
    contexts = prepare(Fetcher(config, lambda message: print(message, file=sys.stderr)), plan(project, names, everything=everything))
    environment = build_environment(None, {}, config.ca_pem, config.debian_archive)
    selection = ["--all"] if everything else names
    shown = shlex.join(selection)
    builder = find_builder(config.builder, os.environ)
    print(f"both sides build with {builder.describe()}", file=sys.stderr)
    with BuildEnvServer(environment, project.config.build.env_port) as server:
        build_env = "" if builder.uses_buildkit else server.url()  # the classic builder: imagebuild's usual port, the same cache keys
        secret = server.secret_file() if builder.uses_buildkit else None

        def docker_side(cached: bool) -> None:
            for context in contexts:
                docker_build(context, builder, build_env, secret, cached=cached)

        def plan_side() -> None:
            imagebuild(project.root, "plan", *selection)

        def build_side() -> None:
            outcomes = imagebuild(project.root, "build", *selection)
            if any(outcome["action"] != "reused" for outcome in outcomes):
                raise SystemExit(f"'imagebuild build {shown}' built something: {outcomes}")

        docker = f"`docker build` x{len(contexts)}"
        rows = [compare(f"`imagebuild plan {shown}` / {docker}", plan_side, docker_side, rounds)]
        if with_build:
            rows.append(compare(f"`imagebuild build {shown}` / {docker}", build_side, docker_side, rounds))
    return rows


def reusable(project: Project) -> tuple[list[str], list[dict]]:
    """The project's images `imagebuild plan --all` would reuse, and the rows of the others."""
    rows = imagebuild(project.root, "plan", "--all")
    return [row["image"] for row in rows if row["action"] == "reuse"], [row for row in rows if row["action"] != "reuse"]


@contextmanager
def reused_only(project: Project, names: list[str]) -> Iterator[Project]:
    """A throwaway copy of the project holding only the images `plan` reuses (a reused image's
    parents are reused too: its FROM names their content hashes), so `build --all` has nothing to do."""
    with tempfile.TemporaryDirectory(prefix="bench-nochange-") as scratch:
        root = Path(scratch)
        for name in names:
            shutil.copytree(project.recipes[name].directory, root / project.config.images / name)
        if (project.root / "imagebuild.toml").is_file():
            shutil.copy2(project.root / "imagebuild.toml", root / "imagebuild.toml")
        yield load_project(root)


@contextmanager
def built_once(root: Path, name: str) -> Iterator[Project]:
    """The throwaway project at `root` with `name` built once, untimed; its tags removed afterwards."""
    project = load_project(root)
    print(f"building {name} of a throwaway project once, untimed", file=sys.stderr)
    outcomes = imagebuild(root, "build", name)
    try:
        yield project
    finally:
        refs = [outcome["ref"] for outcome in outcomes if outcome["name"] == name]
        refs.append(f"{project.config.build.repository}/{name}:latest")
        subprocess.run(["docker", "rmi", *refs], capture_output=True, check=False)


@contextmanager
def small_project() -> Iterator[Project]:
    """The bundled base and a one-line child."""
    with tempfile.TemporaryDirectory(prefix="bench-nochange-") as scratch:
        root = Path(scratch)
        shutil.copytree(REPO / "images" / "base", root / "images" / "base")
        folder = root / "images" / SMALL_IMAGE
        (folder / "smoke").mkdir(parents=True)
        (folder / "image.toml").write_text(SMALL_RECIPE)
        (folder / "smoke" / "check.ipynb").write_text(json.dumps(SMALL_NOTEBOOK))
        with built_once(root, SMALL_IMAGE) as project:
            yield project


@contextmanager
def stack_project() -> Iterator[Project]:
    """A dockerfile recipe: a two-stage Dockerfile in a git repository of its own (locked), whose
    context holds STACK_FILES files, half of them copied."""
    with tempfile.TemporaryDirectory(prefix="bench-nochange-") as scratch:
        root, repository = Path(scratch), Path(scratch) / "stack"
        for index in range(STACK_FILES):
            path = repository / ("src" if index % 2 else "docs") / f"file{index}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"file {index}\n" * 100)
        (repository / "Dockerfile").write_text(STACK_DOCKERFILE)
        identity = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        for command in (["init", "--quiet"], ["add", "-A"], [*identity, "commit", "--quiet", "-m", "stack"]):
            subprocess.run(["git", "-C", str(repository), *command], check=True, capture_output=True)
        (root / "images" / STACK_IMAGE).mkdir(parents=True)
        (root / "images" / STACK_IMAGE / "image.toml").write_text(STACK_RECIPE.format(repository=repository))
        imagebuild(root, "lock", STACK_IMAGE)
        with built_once(root, STACK_IMAGE) as project:
            yield project


def header(rounds: int) -> None:
    revision = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    version = subprocess.run(["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True, check=False)
    print(f"# Doing nothing, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"- machine: {len(os.sched_getaffinity(0))} CPUs, Docker {version.stdout.strip() or 'unknown'}")
    print(f"- project: commit {revision.stdout.strip() or 'unknown'}")
    print(f"- command: {shlex.join(['python', *sys.argv])} (median of {rounds} rounds, range in brackets)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per side (default: 5)")
    parser.add_argument(
        "--small", action="store_true", help="a throwaway project (base and a one-line child), not the bundled images"
    )
    parser.add_argument("--stack", action="store_true", help="a throwaway project with one dockerfile recipe from a git repository")
    args = parser.parse_args()
    header(args.rounds)
    if args.small or args.stack:
        throwaway, name = (small_project, SMALL_IMAGE) if args.small else (stack_project, STACK_IMAGE)
        with throwaway() as project:
            rows = measure(project, [name], False, args.rounds, with_build=True)
    else:
        project = load_project(REPO)
        names, others = reusable(project)
        if not others:
            rows = measure(project, [], True, args.rounds, with_build=True)
        else:
            for row in others:
                print(f"- left out, in a copy of the project with the reused images only: {row['image']} ({row['why']})")
            with reused_only(project, names) as copy:
                rows = measure(copy, [], True, args.rounds, with_build=True)
    print(
        "\n| imagebuild's command / Docker's cache check | imagebuild (s) | Docker (s) | imagebuild / Docker | fastest / fastest |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(row.markdown(), flush=True)
    print(f"\nFixed start of every command (median of {args.rounds}): {startup(args.rounds)}")


def startup(rounds: int) -> str:
    """What any command pays before it does anything: Python, and the import of the command line."""

    def python(code: str) -> Callable[[], None]:
        return lambda: subprocess.run([sys.executable, "-c", code], check=True, env=USER_ENVIRONMENT)

    alone, imported = python("pass"), python("import imagebuild.cli.main")
    imported()  # writes the bytecode cache, as a user's first run does
    shown = []
    for run in (alone, imported):
        figures = [timed(run) for _ in range(rounds)]
        shown.append(f"{statistics.median(figures):.2f} s (fastest {min(figures):.2f} s)")
    return f"Python alone {shown[0]}, with the import of imagebuild's command line {shown[1]}."


if __name__ == "__main__":
    main()
