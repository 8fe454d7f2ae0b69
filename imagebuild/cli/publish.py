"""`imagebuild push`, `imagebuild tags` and `imagebuild registry`: publishing to a registry."""

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from imagebuild import pipeline
from imagebuild.build.context import HASH_LABEL
from imagebuild.cli.terminal import (
    JsonOption,
    Names,
    NightlyOption,
    RegistryOption,
    StatusLine,
    err,
    out,
    run_options,
    say,
)
from imagebuild.config import RunOptions, resolve
from imagebuild.errors import PublishError, RecipeError
from imagebuild.model.project import Project
from imagebuild.publish import registry as registry_module
from imagebuild.publish.manifest import ImageFacts, published_facts
from imagebuild.publish.manifest import diff as image_diff
from imagebuild.publish.push import PublishResult, registry_repository

registry_app = typer.Typer(help="The registry images are published to.", no_args_is_help=True)


def describe_publication(result: PublishResult) -> str:
    """'6 tags at 127.0.0.1:5000' for the build table; `imagebuild tags NAME` lists them."""
    published = sum(1 for t in result.tags if t.action != "held")
    held = f", {len(result.held)} held" if result.held else ""
    return f"{published} tags at {result.registry}{held}"


@run_options
def push(options: RunOptions, names: Names = None, nightly: NightlyOption = False, as_json: JsonOption = False) -> None:
    """Publish the smoke-tested builds of images under all their tags (date, content, versions, latest/edge).

    Give the --mirror and --ca-cert the images were built with (or the same IMAGEBUILD_MIRROR):
    a runtime mirror is part of an image's content."""
    config = resolve(options)
    line = StatusLine(err)
    with line.status:
        results = pipeline.push(config, names or [], moving_tag="edge" if nightly else "latest", reporter=line.reporter())
    if as_json:
        print(json.dumps([asdict(result) for result in results], indent=2))
        return
    for result in results:
        out.print(f"[bold]{result.name}[/] {result.digest}")
        for tag in result.tags:
            out.print(f"  {tag.tag}: {tag.action}")


@run_options
def tags(options: RunOptions, name: Annotated[str, typer.Argument(help="image name")], as_json: JsonOption = False) -> None:
    """The tags the registry has for an image, with digest, date and content hash (read from the registry)."""
    config = resolve(options)
    host = config.registry
    remote = registry_module.Registry(host, config.registry_login)
    repository = registry_repository(config.project, name)
    rows: list[dict[str, Any]] = []
    for tag in remote.tags(repository):
        image = remote.image(repository, tag)
        if image is None:
            continue
        rows.append(
            {
                "tag": tag,
                "digest": image.digest,
                "image_id": image.config_digest,
                "created": image.created,
                "content_hash": image.labels.get(HASH_LABEL),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("tag", "digest", "created", "content hash", title=f"{host}/{repository}")
    for row in rows:
        table.add_row(row["tag"], (row["digest"] or "")[:19], (row["created"] or "")[:19], (row["content_hash"] or "-")[:12])
    out.print(table)


@registry_app.command("up")
def registry_up(registry: RegistryOption = None) -> None:
    """Use the registry that answers, or install (Debian/Ubuntu, root) and start Debian's docker-registry on loopback."""
    registry_module.up(resolve(RunOptions(registry=registry)).registry, say)


def _published_facts(remote: registry_module.Registry, project: Project, reference: str) -> ImageFacts:
    """NAME:TAG as the registry has it."""
    name, _, tag = reference.partition(":")
    if not name or not tag:
        raise RecipeError(f"'{reference}' is not IMAGE:TAG", hint="e.g. 'imagebuild diff aiidalab:2026-11-29 aiidalab:2026-11-30'")
    repository = registry_repository(project, name)
    image = remote.image(repository, tag)
    if image is None:
        raise PublishError(f"{remote.host}/{repository} has no tag '{tag}'", hint=f"'imagebuild tags {name}' lists the tags it has")
    return published_facts(remote, repository, name, image)


def diff(
    before: Annotated[str, typer.Argument(help="IMAGE:TAG, e.g. aiidalab:2026-11-29")],
    after: Annotated[str, typer.Argument(help="IMAGE:TAG, e.g. aiidalab:2026-11-30")],
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """What changed between two published tags (packages, dev package commits, assets, size), from the registry alone."""
    config = resolve(RunOptions(registry=registry))
    remote = registry_module.Registry(config.registry, config.registry_login)
    result = image_diff(_published_facts(remote, config.project, before), _published_facts(remote, config.project, after))
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return
    from rich.markdown import Markdown  # markdown-it: only `diff` renders Markdown

    out.print(Markdown(result.markdown()))
