"""What every command shares: the two consoles, the common options, the run's configuration
(resolved once here, from the options, the environment and imagebuild.toml), the progress line."""

import contextlib
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from imagebuild.config import MIRROR_VARIABLE, REGISTRY_VARIABLE, RunConfig, RunOptions
from imagebuild.inputs.fetch import Fetcher, ProgressUpdate
from imagebuild.runs import Reporter
from imagebuild.system import cache_dir


def _console(*, stderr: bool) -> Console:
    """Lines and table cells kept whole when not on a terminal, so a CI log keeps URLs intact."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, soft_wrap=True, width=400)


out = _console(stderr=False)
err = _console(stderr=True)

Names = Annotated[list[str] | None, typer.Argument(help="image names (folders under images/)", show_default=False)]
AllOption = Annotated[bool, typer.Option("--all", help="every image of the project")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]
CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        help="a CA bundle (PEM) to trust besides the host's (SSL_CERT_FILE, PIP_CERT, REQUESTS_CA_BUNDLE, else certifi's)"
        " and the mirror profile's ca_cert",
    ),
]
MirrorOption = Annotated[
    str | None,
    typer.Option(
        "--mirror",
        envvar=MIRROR_VARIABLE,
        help="mirror profile: a name from mirrors/, a .toml path, or 'none' (default: \\[build] mirror in imagebuild.toml)",
    ),
]
RegistryOption = Annotated[
    str | None,
    typer.Option("--registry", envvar=REGISTRY_VARIABLE, help="registry HOST[:PORT] (default: \\[publish] registry)"),
]
BuilderOption = Annotated[
    str | None,
    typer.Option(
        "--builder",
        help="auto (buildx, else a docker CLI that builds with BuildKit, else the classic builder), buildkit, classic,"
        " or a buildx builder's name (default: \\[build] builder)",
    ),
]
JobsOption = Annotated[
    int | None, typer.Option("--jobs", "-j", help="images built at the same time (default: \\[build] jobs, else the host's cores)")
]
NightlyOption = Annotated[bool, typer.Option("--nightly", help="move the 'edge' tag instead of 'latest'")]
OfflineOption = Annotated[
    bool,
    typer.Option("--offline", help="use only the host caches: fail, naming what is missing, instead of downloading"),
]

_SHARED = (
    inspect.Parameter("mirror", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=MirrorOption),
    inspect.Parameter("ca_cert", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=CaOption),
    inspect.Parameter("offline", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=OfflineOption),
    inspect.Parameter("registry", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RegistryOption),
)
SHARED_OPTIONS = tuple(parameter.name for parameter in _SHARED)

Command = TypeVar("Command", bound=Callable[..., Any])


def run_options(command: Command) -> Command:
    """The options of every command that names an image by its content hash, declared once:
    `command` takes `options: RunOptions` and gets --mirror, --ca-cert, --offline and --registry,
    so `build`, `push`, `plan`, `smoke`, ... resolve the same configuration and hash alike."""
    signature = inspect.signature(command)
    own = [parameter for parameter in signature.parameters.values() if parameter.name != "options"]

    @functools.wraps(command)
    def with_options(*args: Any, mirror: str | None, ca_cert: Path | None, offline: bool, registry: str | None, **kwargs: Any) -> Any:
        return command(*args, options=RunOptions(mirror, ca_cert, offline, registry), **kwargs)

    with_options.__signature__ = signature.replace(parameters=[*own, *_SHARED])  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in (*own, *_SHARED)} | {"return": signature.return_annotation}
    return with_options  # type: ignore[return-value]


def host_cache() -> Path:
    """The host cache folder, for the host-level commands that have no run (engine, registry, Compose)."""
    return cache_dir(os.environ)


def say(message: str) -> None:
    err.print(f"[bold blue]>[/] {escape(message)}")


@contextlib.contextmanager
def download_bar(file_name: str) -> Iterator[ProgressUpdate]:
    """A download's bar on stderr when it is a terminal (nothing in a CI log)."""
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err, disable=not err.is_terminal, transient=True) as progress:
        task = progress.add_task(file_name, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def fetcher(config: RunConfig, report: Callable[[str], None] | None = None) -> Fetcher:
    """The fetcher of a command; `report` defaults to a line on stderr."""
    return Fetcher(config, report or say, download_bar)


class StatusLine:
    """A rich spinner with the current build step; events print above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = console.status("starting")

    def say(self, message: str) -> None:
        """A line above the spinner; `[name]` prefixes and paths print as they are, not as markup."""
        self.console.print(f"[bold blue]>[/] {escape(message)}")
        self.status.update(escape(message))

    def step(self, message: str) -> None:
        self.status.update(escape(message[:120]))

    def reporter(self) -> Reporter:
        return Reporter(say=self.say, step=self.step, progress=download_bar)
