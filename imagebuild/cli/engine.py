"""`imagebuild engine ...`: the Docker engine of this host and the builder builds use."""

import json
import os
from dataclasses import asdict

import typer

from imagebuild.build import engine as engine_module
from imagebuild.build import host
from imagebuild.build.builders import AUTO, find_builder
from imagebuild.cli.terminal import BuilderOption, JsonOption, host_cache, out, say
from imagebuild.errors import EngineError, ImagebuildError
from imagebuild.model.project import find_project, load_project

engine_app = typer.Typer(help="Report on or start the Docker engine.", no_args_is_help=True)


def _requested_builder(flag: str | None) -> str:
    """--builder, else [build].builder of the project here, else auto (no project: a host-level question)."""
    if flag is not None:
        return flag
    try:
        root = find_project()
    except ImagebuildError:
        return AUTO
    return load_project(root).config.build.builder


@engine_app.command("status")
def engine_status(as_json: JsonOption = False, builder: BuilderOption = None) -> None:
    """Say whether a Docker engine answers (exit code 3 when none does) and which builder builds."""
    current = engine_module.status()
    chosen = find_builder(_requested_builder(builder), os.environ)
    if as_json:
        print(json.dumps({**asdict(current), "builder": asdict(chosen) | {"description": chosen.describe()}}))
    else:
        out.print(f"{'[green]up[/]' if current.reachable else '[red]down[/]'}: {current.detail} {current.version or ''}")
        out.print(f"builder: {chosen.describe()}" + (f" ({chosen.note})" if chosen.note else ""), markup=False)
    if not current.reachable:
        raise typer.Exit(EngineError.exit_code)


@engine_app.command("up")
def engine_up() -> None:
    """Use the running engine, or install (Debian/Ubuntu, root) and start one."""
    host.up(say, host_cache(), os.environ)
