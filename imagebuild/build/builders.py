"""Which builder builds (BuildKit through a docker CLI, else Docker's classic builder), and a
build through a CLI.

docker-py drives only the classic builder (deprecated since Engine 23), so BuildKit goes through
a CLI: `docker buildx build` where the buildx plugin answers (a named buildx builder reaches a
kubernetes or remote one), else a docker CLI that still builds with BuildKit by itself when
DOCKER_BUILDKIT=1 (before version 23, as Debian's 20.10 on bookworm), else the classic builder
through docker-py. A CLI of version 23 or newer without buildx refuses BuildKit, so it is never
picked. The request comes from `--builder` or imagebuild.toml's [build].builder.
"""

import io
import json
import re
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imagebuild.build.buildenv import SECRET_ID
from imagebuild.build.context import BuildContext
from imagebuild.errors import BuildError, ImagebuildError, RecipeError
from imagebuild.system import Streamed, run

AUTO, CLASSIC, BUILDKIT = "auto", "classic", "buildkit"
"""`--builder` values besides a buildx builder's name: choose, force the fallback, insist on BuildKit."""
DEBIAN_CLI = Path("/usr/bin/docker")
LEGACY_BUILDKIT_BEFORE = 23
"""docker CLIs from this major version on hand BuildKit builds to buildx and refuse without it."""


@dataclass(frozen=True)
class Builder:
    kind: Literal["buildx", "buildkit", "classic"]
    cli: str = ""
    """The docker CLI that builds (none for the classic builder)."""
    name: str = ""
    """The buildx builder; empty: buildx's current one."""
    note: str = ""
    """Why this one, when a better one was passed over (one line)."""

    @property
    def uses_buildkit(self) -> bool:
        return self.kind != CLASSIC

    def describe(self) -> str:
        if self.kind == "buildx":
            return f"BuildKit through {self.cli} buildx" + (f" (builder '{self.name}')" if self.name else "")
        if self.kind == BUILDKIT:
            return f"BuildKit through {self.cli} (DOCKER_BUILDKIT=1)"
        return "Docker's classic builder (through the Docker SDK)"


@dataclass(frozen=True)
class Cli:
    """A docker CLI found on this host: its path, client version and whether buildx answers in it."""

    path: str
    version: str
    buildx: bool

    @property
    def major(self) -> int:
        try:
            return int(self.version.split(".")[0])
        except ValueError:
            return 0

    @property
    def builds_buildkit_alone(self) -> bool:
        return 0 < self.major < LEGACY_BUILDKIT_BEFORE


def _answer(command: list[str], environ: Mapping[str, str]) -> str | None:
    """The command's output, or None when it fails (a CLI without buildx, no engine, a hang)."""
    try:
        done = run(command, timeout=30, env=dict(environ), check=False)
    except ImagebuildError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def docker_clis(environ: Mapping[str, str]) -> list[Cli]:
    """Every distinct docker CLI: the ones on PATH in order, then Debian's own."""
    paths = []
    for folder in environ.get("PATH", "").split(":"):
        found = shutil.which("docker", path=folder) if folder else None
        if found:
            paths.append(str(Path(found).resolve()))
    if DEBIAN_CLI.is_file():
        paths.append(str(DEBIAN_CLI.resolve()))
    clis = []
    for path in dict.fromkeys(paths):
        version = _answer([path, "version", "--format", "{{.Client.Version}}"], environ)
        if version is None:  # no engine answers: the client's version is still printed first
            version = (_answer([path, "--version"], environ) or "").removeprefix("Docker version ").split(",")[0]
        buildx = _answer([path, "buildx", "version"], environ) is not None
        clis.append(Cli(path, version, buildx))
    return clis


def buildx_builders(cli: str, environ: Mapping[str, str]) -> list[str]:
    listing = _answer([cli, "buildx", "ls", "--format", "json"], environ)
    if listing is None:  # older buildx: a table, the name first on each builder's line
        table = _answer([cli, "buildx", "ls"], environ) or ""
        return [line.split()[0].rstrip("*") for line in table.splitlines()[1:] if line and not line[0].isspace()]
    return [json.loads(line)["Name"] for line in listing.splitlines() if line.strip()]


def choose_builder(request: str, clis: list[Cli], builders: dict[str, list[str]]) -> Builder:
    """The builder a request names, from the CLIs found and each buildx CLI's builders (pure, so
    the choice is tested without those CLIs). Raises a RecipeError (exit 2) when the request
    cannot be met: the fix is the flag or the setting."""
    with_buildx = next((cli for cli in clis if cli.buildx), None)
    alone = next((cli for cli in clis if cli.builds_buildkit_alone), None)
    refusing = [cli for cli in clis if not cli.buildx and not cli.builds_buildkit_alone]
    passed_over = "; ".join(f"{cli.path} {cli.version} refuses BuildKit without the buildx plugin" for cli in refusing)
    if request == CLASSIC:
        return Builder("classic")
    if request in (AUTO, BUILDKIT):
        if with_buildx is not None:
            return Builder("buildx", with_buildx.path)
        if alone is not None:
            return Builder("buildkit", alone.path, note=passed_over)
        if request == BUILDKIT:
            raise RecipeError(
                "--builder buildkit: no docker CLI here builds with BuildKit" + (f" ({passed_over})" if passed_over else ""),
                hint="install the buildx plugin (Debian trixie: docker-buildx) or Debian's docker.io (its /usr/bin/docker 20.10), "
                "or use --builder classic",
            )
        return Builder("classic", note=passed_over or "no docker CLI found")
    if with_buildx is None:
        raise RecipeError(
            f"--builder {request}: a named builder is a buildx builder, and no docker CLI here has buildx"
            + (f" ({passed_over})" if passed_over else ""),
            hint="install the buildx plugin (Debian trixie: docker-buildx), or use --builder auto",
        )
    known = builders.get(with_buildx.path, [])
    if request not in known:
        raise RecipeError(
            f"--builder {request}: no buildx builder of that name (builders: {', '.join(known) or 'none'})",
            hint=f"create it with 'docker buildx create --name {request} ...', or pick one of those",
        )
    return Builder("buildx", with_buildx.path, name=request)


def find_builder(request: str, environ: Mapping[str, str]) -> Builder:
    """The builder for `request` on this host (the CLIs asked with the run's environment, so
    DOCKER_HOST and DOCKER_CONFIG count as for docker-py)."""
    if request == CLASSIC:
        return Builder("classic")
    clis = docker_clis(environ)
    named = request not in (AUTO, BUILDKIT)
    builders = {cli.path: buildx_builders(cli.path, environ) for cli in clis if cli.buildx} if named else {}
    return choose_builder(request, clis, builders)


class BuilderOnce:
    """The builder of one run, chosen on first use only: asking the CLIs takes a quarter of a
    second, which a run that reuses every image never spends; parallel builds ask at once."""

    def __init__(self, request: str, environ: Mapping[str, str], say: Callable[[str], None]) -> None:
        self.request, self.environ, self.say = request, environ, say
        self.chosen: Builder | None = None
        self.lock = threading.Lock()

    def __call__(self) -> Builder:
        with self.lock:
            if self.chosen is None:
                self.chosen = find_builder(self.request, self.environ)
                self.say(f"building with {self.chosen.describe()}" + (f" ({self.chosen.note})" if self.chosen.note else ""))
            return self.chosen


def build_with_cli(
    context: BuildContext,
    builder: Builder,
    tag: str,
    labels: dict[str, str],
    buildargs: dict[str, str],
    secret: Path | None,
    nocache: bool,
    log: io.TextIOWrapper,
    on_step: Callable[[str], None],
    environ: dict[str, str],
) -> str | None:
    """`docker build` (DOCKER_BUILDKIT=1) or `docker buildx build --load`, the context tar on
    stdin, plain progress read line by line: `#N [stage i/n] STEP` starts a step."""
    command = [builder.cli, "buildx", "build", "--load"] if builder.kind == "buildx" else [builder.cli, "build"]
    if builder.name:
        command += ["--builder", builder.name]
    with tempfile.TemporaryDirectory(prefix="imagebuild-build-") as scratch:
        iidfile = Path(scratch) / "iid"
        command += ["--progress=plain", "--network=host", "--iidfile", str(iidfile), "--tag", tag]
        command += [f"--label={key}={value}" for key, value in labels.items()]
        command += [f"--build-arg={key}={value}" for key, value in buildargs.items()]
        command += [f"--secret=id={SECRET_ID},src={secret}"] if secret is not None else []
        command += ["--no-cache"] if nocache else []
        command.append("-")
        tail: deque[str] = deque(maxlen=25)
        steps: dict[str, str] = {}
        last = "(before the first step)"
        output = Streamed(command, stdin=context.tar, env={**environ, "DOCKER_BUILDKIT": "1"}, error=BuildError)
        for line in output:
            log.write(line + "\n")
            started, said = _STEP.match(line), _OUTPUT.match(line) or _ERROR.match(line)
            if started:  # shown without the mount flags: the step as the recipe reads
                steps[started.group(1)] = last = _MOUNT_FLAG.sub("", started.group(2))
                on_step(last)
            elif said:  # a step's output or its error: that step is the one that failed, if any
                last = steps.get(said.group(1), last)
                tail.append(_OUTPUT.sub("", line))
            elif line.strip() and not line.startswith("#"):  # the CLI's own closing error
                tail.append(line)
        if output.returncode != 0:
            errors = [line for line in tail if line.lower().startswith(("error", "failed to solve", "executor failed"))]
            raise build_failed(context, last, tail, errors[-1] if errors else f"{command[0]} exited with {output.returncode}", log)
        return iidfile.read_text().strip() if iidfile.is_file() else None


_STEP = re.compile(r"^#(\d+) (\[(?!internal).*?\] .*)$")
_MOUNT_FLAG = re.compile(r"--mount=\S+\s+")
_OUTPUT = re.compile(r"^#(\d+) \d+\.\d+ ")
_ERROR = re.compile(r"^#(\d+) ERROR")


def build_failed(context: BuildContext, step: str, tail: deque[str], error: str, log: io.TextIOWrapper) -> BuildError:
    """The error of a failed build: the image, the step, its last lines and the builder's error."""
    return BuildError(
        f"build of {context.rendered.plan.name} failed at {step}\n"
        + "\n".join(f"    {line}" for line in tail)
        + f"\n  error: {error.strip()}",
        path=Path(log.name),
        hint="the full log is in the file named above",
    )
