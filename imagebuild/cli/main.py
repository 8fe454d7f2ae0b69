"""The `imagebuild` command. Commands are thin: parse, call the pipeline, print.

Only `main` turns errors into messages and exit codes (see errors.py for the codes).
"""

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imagebuild import pipeline
from imagebuild.build import engine as engine_module
from imagebuild.build.context import HASH_LABEL, IMAGE_LABEL
from imagebuild.build.render import input_provenance
from imagebuild.cli.hub import hub_app
from imagebuild.cli.inputs import assets_app, lock
from imagebuild.cli.mirror import mirror_app
from imagebuild.cli.nightly import nightly_command
from imagebuild.cli.publish import describe_publication, diff, push, registry_app, tags
from imagebuild.cli.terminal import (
    AllOption,
    CaOption,
    JsonOption,
    MirrorOption,
    Names,
    NightlyOption,
    OfflineOption,
    RegistryOption,
    StatusLine,
    err,
    make_fetcher,
    out,
)
from imagebuild.errors import EngineError, ImagebuildError
from imagebuild.model.notebook import load_notebook
from imagebuild.model.project import load_project
from imagebuild.plan import plan
from imagebuild.publish.push import registry_host

app = typer.Typer(
    help="Build, smoke-test and publish JupyterHub single-user images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
engine_app = typer.Typer(help="Report on or start the Docker engine.", no_args_is_help=True)
app.add_typer(engine_app, name="engine")
app.add_typer(mirror_app, name="mirror")
app.add_typer(assets_app, name="assets")

@app.command()
def build(
    names: Names = None,
    everything: AllOption = False,
    no_smoke: Annotated[bool, typer.Option("--no-smoke", help="skip smoke notebooks (latest is not moved)")] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="build again even if present, without Docker's layer cache")
    ] = False,
    as_json: JsonOption = False,
    ca_cert: CaOption = None,
    mirror: MirrorOption = None,
    offline: OfflineOption = False,
    push: Annotated[bool, typer.Option("--push", help="publish the named images once their smoke notebooks pass")] = False,
    registry: RegistryOption = None,
    nightly: NightlyOption = False,
) -> None:
    """Build images and their parents in order, then run their smoke notebooks (and push them, with --push)."""
    project = load_project()
    line = StatusLine(err)
    with line.status:
        outcomes = pipeline.build(
            project,
            names or [],
            everything=everything,
            smoke=not no_smoke,
            rebuild=no_cache,
            fetcher=make_fetcher(project, mirror, ca_cert, offline=offline, say=line.say),
            reporter=line.reporter(),
            push_to=registry_host(project, registry) if push else None,
            moving_tag="edge" if nightly else "latest",
        )
    if as_json:
        print(json.dumps([asdict(outcome) for outcome in outcomes], indent=2))
        return
    table = Table("image", "action", "content tag", "seconds", "smoke", "published")
    for outcome in outcomes:
        smoke = "skipped" if no_smoke else (outcome.smoke.summary() if outcome.smoke else "passed before")
        published = describe_publication(outcome.published) if outcome.published else "-"
        table.add_row(outcome.name, outcome.action, outcome.ref, f"{outcome.seconds:.1f}", smoke, published)
    out.print(table)


@app.command()
def render(
    name: Annotated[str, typer.Argument(help="image name")], ca_cert: CaOption = None, mirror: MirrorOption = None
) -> None:
    """Print the composed Dockerfile(s) of an image and its parents, as they would be built (from cached inputs)."""
    project = load_project()
    fetcher = make_fetcher(project, mirror, ca_cert, offline=True)
    for context in pipeline.prepare(project, plan(project, [name]), fetcher):
        print(f"# ---- {context.rendered.plan.name} (content hash {context.content_hash})")
        print(context.rendered.dockerfile)


@app.command("plan")
def plan_command(
    names: Names = None, everything: AllOption = False, as_json: JsonOption = False, mirror: MirrorOption = None
) -> None:
    """Show what would be built or reused, and why (content hash per image, from cached inputs)."""
    project = load_project()
    fetcher = make_fetcher(project, mirror, None, offline=True)
    contexts = pipeline.prepare(project, plan(project, names or [], everything=everything), fetcher)
    try:
        engine = engine_module.Engine()
    except EngineError:
        engine = None
    rows = []
    for context in contexts:
        name = context.rendered.plan.name
        ref = pipeline.content_ref(project, name, context.content_hash)
        if engine is None:
            action, why = "unknown", "no engine answers; run 'imagebuild engine up'"
        elif (image := engine.image(ref)) is None:
            action, why = "build", f"no image with content hash {context.short_hash}"
        elif pipeline.smoke_passed(project, engine, name, image.id):
            action, why = "reuse", "image present, smoke passed"
        else:
            action, why = "smoke", "image present, not yet smoke-tested"
        rows.append({"image": name, "content_hash": context.content_hash, "ref": ref, "action": action, "why": why})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("image", "content hash", "action", "why")
    for row in rows:
        table.add_row(row["image"], row["content_hash"][:12], row["action"], row["why"])
    out.print(table)


@app.command()
def smoke(
    name: Annotated[str, typer.Argument(help="image name")],
    notebook: Annotated[
        list[Path] | None, typer.Option("--notebook", help="an extra notebook to run (repeatable)")
    ] = None,
    as_json: JsonOption = False,
    mirror: MirrorOption = None,
) -> None:
    """Run the smoke notebooks (and any --notebook) against the image's latest build."""
    project = load_project()
    extra = notebook or []
    for path in extra:
        load_notebook(path)
    contexts = pipeline.prepare(project, plan(project, [name]), make_fetcher(project, mirror, None, offline=True))
    context = contexts[-1]
    engine = engine_module.Engine()
    ref = pipeline.content_ref(project, name, context.content_hash)
    if engine.image(ref) is None:
        fallback = pipeline.latest_ref(project, name)
        if engine.image(fallback) is None:
            raise EngineError(f"no image of '{name}' in the engine", hint=f"run 'imagebuild build {name}' first")
        ref = fallback
    line = StatusLine(err)
    with line.status:
        result = pipeline.smoke_image(project, engine, context.rendered.plan, ref, extra, line.reporter())
    if as_json:
        print(json.dumps(asdict(result), indent=2))
        return
    for item in result.notebooks:
        if item.skipped:
            out.print(f"[yellow]skipped[/] {item.owner}/{item.notebook}: {item.skipped}")
        else:
            out.print(f"[green]passed[/] {item.owner}/{item.notebook} ({item.seconds:.1f} s)")


@app.command()
def images(as_json: JsonOption = False) -> None:
    """List the project's images and the builds present in the engine."""
    project = load_project()
    try:
        engine = engine_module.Engine()
        built = engine.images_with_label(IMAGE_LABEL)
    except EngineError:
        built = []
    rows = []
    for name, recipe in sorted(project.recipes.items()):
        base = recipe.spec.parent or recipe.spec.root
        builds = [
            image
            for image in built
            if (image.labels or {}).get(IMAGE_LABEL) == name
            and any(tag.startswith(f"{project.config.build.repository}/{name}:") for tag in image.tags)
        ]  # this project's repository only: other projects (and test runs) may build the same recipe
        for image in builds or [None]:
            rows.append(
                {
                    "image": name,
                    "base": base,
                    "tags": sorted(image.tags) if image else [],
                    "size_bytes": image.attrs.get("Size") if image else None,
                    "content_hash": (image.labels or {}).get(HASH_LABEL) if image else None,
                    "created": (image.labels or {}).get("org.opencontainers.image.created") if image else None,
                    **input_provenance((image.labels or {}) if image else {}),
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("image", "base", "tags", "size", "content hash", "created")
    for row in rows:
        size = f"{row['size_bytes'] / 1e6:.0f} MB" if row["size_bytes"] else "-"
        table.add_row(
            row["image"], row["base"], ", ".join(row["tags"]) or "(not built)", size,
            (row["content_hash"] or "-")[:12], row["created"] or "-",
        )
    out.print(table)


@engine_app.command("status")
def engine_status(as_json: JsonOption = False) -> None:
    """Say whether a Docker engine answers (exit code 3 when none does)."""
    current = engine_module.status()
    if as_json:
        print(json.dumps(asdict(current)))
    else:
        out.print(f"{'[green]up[/]' if current.reachable else '[red]down[/]'}: {current.detail} {current.version or ''}")
    if not current.reachable:
        raise typer.Exit(EngineError.exit_code)


app.command("lock")(lock)
app.command("push")(push)
app.command("tags")(tags)
app.command("diff")(diff)
app.command("nightly")(nightly_command)
app.add_typer(registry_app, name="registry")
app.add_typer(hub_app, name="hub")


@engine_app.command("up")
def engine_up() -> None:
    """Use the running engine, or install (Debian/Ubuntu, root) and start one."""
    engine_module.up(lambda message: err.print(f"[bold blue]>[/] {message}"))


def main() -> None:
    try:
        app()
    except ImagebuildError as exc:
        sys.stderr.write(f"error: {exc.render()}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
