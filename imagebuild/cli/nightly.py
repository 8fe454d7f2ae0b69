"""`imagebuild nightly`: the scheduled rebuild (see nightly.py), its table and its report."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imagebuild.cli.terminal import BuilderOption, JobsOption, JsonOption, StatusLine, err, out, run_options
from imagebuild.config import RunOptions, resolve
from imagebuild.errors import RecipeError
from imagebuild.model.project import PROJECT_FILE
from imagebuild.nightly import NightlyOptions, nightly
from imagebuild.publish.retention import RetentionPolicy


@run_options
def nightly_command(
    options: RunOptions,
    push: Annotated[bool, typer.Option("--push", help="push what passed (date and content tags plus edge), then apply retention")] = False,
    promote: Annotated[bool, typer.Option("--promote", help="move 'latest' too, not only 'edge'")] = False,
    keep_locks: Annotated[
        bool, typer.Option("--keep-locks", help="build the committed locks instead of refreshing them (newest pins, current dev commits)")
    ] = False,
    report: Annotated[Path | None, typer.Option("--report", help="folder for report.json and report.md (default: build/nightly)")] = None,
    keep_daily: Annotated[int | None, typer.Option("--keep-daily", min=1, help="keep the newest image of each of the newest N days")] = None,
    keep_monthly: Annotated[int | None, typer.Option("--keep-monthly", min=0, help="and of each of the newest M months")] = None,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="delete nothing from the registry")] = False,
    hub: Annotated[
        list[Path] | None, typer.Option("--hub", help="a hub folder whose offered images are never deleted (repeatable; adds to \\[nightly] hubs)")
    ] = None,
    as_json: JsonOption = False,
    builder: BuilderOption = None,
    jobs: JobsOption = None,
) -> None:
    """Refresh every lock, rebuild and smoke-test exactly what changed, push it, prune old tags, write a report.

    Exit code 0 when every image passed or was unchanged, else that of the first failure; a failed image does not stop the others (its children are skipped).
    """
    config = resolve(replace(options, builder=builder, jobs=jobs))
    project = config.project
    settings = project.config.nightly
    for index, folder in enumerate(settings.hubs):
        if not (project.root / folder).is_dir():
            raise RecipeError(
                f"[nightly] hubs[{index}]: hub folder '{folder}' not found",
                path=project.root / PROJECT_FILE,
                hint="name a folder written by 'imagebuild hub init', relative to the project",
            )
    tonight = NightlyOptions(
        push=push,
        promote=promote,
        refresh_locks=not keep_locks,
        upgrade=settings.upgrade,
        prune=settings.prune and not no_prune,
        policy=RetentionPolicy(keep_daily or settings.keep_daily, settings.keep_monthly if keep_monthly is None else keep_monthly),
        hubs=tuple(project.root / folder for folder in settings.hubs) + tuple(hub or []),
    )
    line = StatusLine(err)
    with line.status:
        result = nightly(config, tonight, reporter=line.reporter())
    written = result.write(report or project.output_dir / "nightly")
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        table = Table("image", "action", "content tag", "seconds", "smoke", "pushed")
        for night in result.images:
            table.add_row(*night.row())
        out.print(table)
        for night in result.images:
            if night.error:
                err.print(f"[red]{night.name} {night.action}[/]: {night.error}")
        out.print(f"{result.summary()}; report: {written}")
    raise typer.Exit(result.exit_code)
