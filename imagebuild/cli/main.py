"""The `imagebuild` command. Commands are thin: parse, call the pipeline, print.

Only `main` turns errors into messages and exit codes (see errors.py for the codes).
"""

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from imagebuild import pipeline
from imagebuild.build import engine as engine_module
from imagebuild.build.context import HASH_LABEL, IMAGE_LABEL
from imagebuild.build.records import Image
from imagebuild.ci import matrix
from imagebuild.cli.ci import ci_app
from imagebuild.cli.engine import engine_app
from imagebuild.cli.hub import hub_app
from imagebuild.cli.inputs import assets_app, lock
from imagebuild.cli.mirror import mirror_app
from imagebuild.cli.nightly import nightly_command
from imagebuild.cli.publish import describe_publication, diff, push, registry_app, tags
from imagebuild.cli.terminal import (
    AllOption,
    BuilderOption,
    JobsOption,
    JsonOption,
    Names,
    NightlyOption,
    StatusLine,
    err,
    fetcher,
    out,
    run_options,
)
from imagebuild.config import RunConfig, RunOptions, resolve
from imagebuild.errors import EngineError, ImagebuildError
from imagebuild.handoff import Handoff, parse_digests
from imagebuild.inputs.fetch import Fetcher
from imagebuild.model.notebook import load_notebook
from imagebuild.plan import plan
from imagebuild.publish.manifest import input_provenance
from imagebuild.publish.registry import Registry
from imagebuild.reuse import content_ref, decide, latest_ref
from imagebuild.smoketest import smoke_image

app = typer.Typer(
    help="Build, smoke-test and publish JupyterHub single-user images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(engine_app, name="engine")
app.add_typer(mirror_app, name="mirror")
app.add_typer(assets_app, name="assets")

@app.command()
@run_options
def build(
    options: RunOptions,
    names: Names = None,
    everything: AllOption = False,
    no_smoke: Annotated[bool, typer.Option("--no-smoke", help="skip smoke notebooks (latest is not moved)")] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="build again even if present, without Docker's layer cache")
    ] = False,
    as_json: JsonOption = False,
    push: Annotated[bool, typer.Option("--push", help="publish the named images once their smoke notebooks pass")] = False,
    nightly: NightlyOption = False,
    builder: BuilderOption = None,
    jobs: JobsOption = None,
    from_registry: Annotated[
        bool,
        typer.Option(
            "--from-registry",
            help="pull images of the chain that --registry has under their content tag instead of building them (a CI matrix job)",
        ),
    ] = False,
    parent_digest: Annotated[
        list[str] | None,
        typer.Option(
            "--parent-digest",
            help="NAME=sha256:... the manifest digest NAME's job pushed; a different one is refused (implies --from-registry)",
        ),
    ] = None,
) -> None:
    """Build images and their parents (parents first, images side by side when their parents are
    done), then run their smoke notebooks (and push them, with --push)."""
    config = resolve(replace(options, builder=builder, jobs=jobs))
    digests = parse_digests(parent_digest or [])
    handoff = Handoff(Registry(config.registry, config.registry_login), digests) if from_registry or digests else None
    line = StatusLine(err)
    with line.status:
        outcomes = pipeline.build(
            config,
            names or [],
            everything=everything,
            smoke=not no_smoke,
            rebuild=no_cache,
            reporter=line.reporter(),
            push_to=config.registry if push else None,
            moving_tag="edge" if nightly else "latest",
            handoff=handoff,
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
@run_options
def render(options: RunOptions, name: Annotated[str, typer.Argument(help="image name")]) -> None:
    """Print the composed Dockerfile(s) of an image and its parents, as they would be built (from cached inputs)."""
    config = resolve(replace(options, offline=True))
    for context in pipeline.prepare(fetcher(config), plan(config.project, [name])):
        print(f"# ---- {context.rendered.plan.name} (content hash {context.content_hash})")
        print(context.rendered.dockerfile)


@app.command("plan")
@run_options
def plan_command(options: RunOptions, names: Names = None, everything: AllOption = False, as_json: JsonOption = False) -> None:
    """Show what would be built or reused, and why (content hash per image, from cached inputs).

    With --json, each image also has its place in the build graph for a CI matrix: `level` (jobs of
    a level can run at the same time), `needs` (the jobs before it) and the `command` its job runs."""
    config = resolve(replace(options, offline=True))
    project = config.project
    plans = plan(project, names or [], everything=everything)
    contexts = pipeline.prepare(fetcher(config), plans)
    jobs = {job.image: job for job in matrix(plans)}
    try:
        engine = engine_module.Engine()
    except EngineError:
        engine = None
    rows: list[dict[str, Any]] = []
    for context in contexts:
        name = context.rendered.plan.name
        if engine is None:
            ref = content_ref(project, name, context.content_hash)
            action, why = "unknown", "no engine answers; run 'imagebuild engine up'"
        else:
            decision = decide(project, engine, context)
            ref, action, why = decision.ref, decision.action, decision.why
        job = jobs[name]
        rows.append(
            {
                "image": name, "content_hash": context.content_hash, "ref": ref, "action": action, "why": why,
                "level": job.level, "needs": list(job.needs), "command": job.command(),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("image", "content hash", "action", "why")
    for row in rows:
        table.add_row(row["image"], row["content_hash"][:12], row["action"], row["why"])
    out.print(table)


@app.command()
@run_options
def smoke(
    options: RunOptions,
    name: Annotated[str, typer.Argument(help="image name")],
    notebook: Annotated[
        list[Path] | None, typer.Option("--notebook", help="an extra notebook to run (repeatable)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the smoke notebooks (and any --notebook) against the image's latest build."""
    config = resolve(replace(options, offline=True))
    project = config.project
    extra = notebook or []
    for path in extra:
        load_notebook(path)
    context = pipeline.prepare(fetcher(config), plan(project, [name]))[-1]
    engine = engine_module.Engine()
    ref = content_ref(project, name, context.content_hash)
    if engine.image(ref) is None:
        fallback = latest_ref(project, name)
        if engine.image(fallback) is None:
            raise EngineError(f"no image of '{name}' in the engine", hint=f"run 'imagebuild build {name}' first")
        ref = fallback
    line = StatusLine(err)
    with line.status:
        result = smoke_image(project, engine, context.rendered.plan, ref, extra, line.say)
    if as_json:
        print(json.dumps(asdict(result), indent=2))
        return
    for item in result.notebooks:
        if item.skipped:
            out.print(f"[yellow]skipped[/] {item.owner}/{item.notebook}: {item.skipped}")
        else:
            out.print(f"[green]passed[/] {item.owner}/{item.notebook} ({item.seconds:.1f} s)")


@app.command()
@run_options
def images(options: RunOptions, as_json: JsonOption = False) -> None:
    """List the project's images and the builds present in the engine; 'current' marks the build
    of the recipes as they are now (the content hash `build` gives with the same options)."""
    config = resolve(replace(options, offline=True))
    project = config.project
    current = _current_hashes(config)
    try:
        engine = engine_module.Engine()
        built = engine.images_with_label(IMAGE_LABEL)
    except EngineError:
        built = []
    rows: list[dict[str, Any]] = []
    for name, recipe in sorted(project.recipes.items()):
        base = recipe.spec.parent or recipe.spec.root
        builds = [
            image
            for image in built
            if (image.labels or {}).get(IMAGE_LABEL) == name
            and any(tag.startswith(f"{project.config.build.repository}/{name}:") for tag in image.tags)
        ]  # this project's repository only: other projects (and test runs) may build the same recipe
        shown: list[Image | None] = [*builds] or [None]
        for image in shown:
            rows.append(
                {
                    "image": name,
                    "base": base,
                    "tags": sorted(image.tags) if image else [],
                    "size_bytes": image.size if image else None,
                    "content_hash": (image.labels or {}).get(HASH_LABEL) if image else None,
                    "current": image is not None and (image.labels or {}).get(HASH_LABEL) == current.get(name),
                    "created": (image.labels or {}).get("org.opencontainers.image.created") if image else None,
                    **input_provenance((image.labels or {}) if image else {}),
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("image", "base", "tags", "size", "content hash", "current", "created")
    for row in rows:
        size = f"{row['size_bytes'] / 1e6:.0f} MB" if row["size_bytes"] else "-"
        table.add_row(
            row["image"], row["base"], ", ".join(row["tags"]) or "(not built)", size,
            (row["content_hash"] or "-")[:12], "yes" if row["current"] else "", row["created"] or "-",
        )
    out.print(table)


def _current_hashes(config: RunConfig) -> dict[str, str]:
    """Each image's content hash as its recipes are now, from cached inputs; an image whose
    inputs are not all here (or whose recipe chain is broken) has none."""
    found: dict[str, str] = {}
    for name in sorted(config.project.recipes):
        if name in found:
            continue
        try:
            contexts = pipeline.prepare(Fetcher(config, lambda _message: None), plan(config.project, [name]))
        except ImagebuildError:
            continue
        found |= {context.rendered.plan.name: context.content_hash for context in contexts}
    return found


app.command("lock")(lock)
app.command("push")(push)
app.command("tags")(tags)
app.command("diff")(diff)
app.command("nightly")(nightly_command)
app.add_typer(registry_app, name="registry")
app.add_typer(hub_app, name="hub")
app.add_typer(ci_app, name="ci")


def main() -> None:
    try:
        app()
    except ImagebuildError as exc:
        sys.stderr.write(f"error: {exc.render()}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
