"""What every command shares: the two consoles, the common options, the progress line."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imagebuild import pipeline
from imagebuild.ca import find_ca_bundle
from imagebuild.inputs.fetch import Fetcher, fetcher_for
from imagebuild.model.mirror import Mirror, selected_mirror
from imagebuild.model.project import Project


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
    typer.Option("--ca-cert", help="CA bundle to trust during builds (default: SSL_CERT_FILE, PIP_CERT, REQUESTS_CA_BUNDLE)"),
]


MirrorOption = Annotated[
    str | None,
    typer.Option(
        "--mirror",
        envvar="IMAGEBUILD_MIRROR",
        help="mirror profile: a name from mirrors/, a .toml path, or 'none' (default: \\[build] mirror in imagebuild.toml)",
    ),
]


RegistryOption = Annotated[
    str | None,
    typer.Option("--registry", envvar="IMAGEBUILD_REGISTRY", help="registry HOST[:PORT] (default: \\[publish] registry)"),
]
NightlyOption = Annotated[bool, typer.Option("--nightly", help="move the 'edge' tag instead of 'latest'")]
OfflineOption = Annotated[
    bool,
    typer.Option("--offline", help="use only the host caches: fail, naming what is missing, instead of downloading"),
]


def selected(project: Project, option: str | None) -> Mirror | None:
    return selected_mirror(option, project.config.build.mirror, project.root)


def make_fetcher(
    project: Project, mirror: str | None, ca_cert: Path | None, *, offline: bool, say: Callable[[str], None] | None = None
) -> Fetcher:
    """The fetcher of a command; `say` defaults to a line on stderr."""
    return fetcher_for(
        selected(project, mirror),
        find_ca_bundle(ca_cert),
        offline=offline,
        say=say or (lambda message: err.print(f"[bold blue]>[/] {message}")),
        show_progress=err.is_terminal,
    )


class StatusLine:
    """A rich spinner with the current build step; events print above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = console.status("starting")

    def say(self, message: str) -> None:
        self.console.print(f"[bold blue]>[/] {message}")
        self.status.update(message)

    def step(self, message: str) -> None:
        self.status.update(message[:120])

    def reporter(self) -> pipeline.Reporter:
        return pipeline.Reporter(say=self.say, step=self.step)
