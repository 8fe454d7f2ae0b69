"""`imagebuild hub ...`: the bundled JupyterHub and the images it offers."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imagebuild import hub as hub_module
from imagebuild.errors import RecipeError
from imagebuild.plan import load_project
from imagebuild.publish import registry_host, registry_repository
from imagebuild.registry import Registry
from imagebuild.terminal import JsonOption, MirrorOption, RegistryOption, out, selected

hub_app = typer.Typer(help="The bundled JupyterHub (DockerSpawner) and the images it offers.", no_args_is_help=True)
DirOption = Annotated[Path, typer.Option("--dir", help="the hub folder", show_default=True)]


@hub_app.command("init")
def hub_init(
    folder: Annotated[Path, typer.Argument(help="a new folder for the hub")],
    registry: RegistryOption = None,
    hub_tag: Annotated[str, typer.Option("--hub-tag", help="tag of the hub image to run")] = "latest",
    mirror: MirrorOption = None,
    network: Annotated[str, typer.Option("--network", help="'jupyterhub' (compose network) or 'host'")] = "jupyterhub",
    port: Annotated[int, typer.Option("--port", help="port the hub listens on")] = 8000,
    authenticator: Annotated[
        str, typer.Option("--authenticator", help="github, generic (OAuth/OIDC, e.g. Keycloak), native or dummy")
    ] = "native",
    development: Annotated[bool, typer.Option("--development", help="a test hub: allows the dummy authenticator")] = False,
    proxy_domain: Annotated[
        str | None, typer.Option("--proxy-domain", help="put Caddy in front, with automatic TLS for this domain")
    ] = None,
) -> None:
    """Write a ready-to-run hub: compose.yml, jupyterhub_config.py, hub.toml, images.toml and a 0600 .env."""
    if authenticator not in ("github", "generic", "native", "dummy"):
        raise RecipeError(f"--authenticator: unknown kind '{authenticator}'", hint="github, generic, native or dummy")
    project = load_project()
    written = hub_module.init(
        folder,
        project,
        registry_host(project, registry),
        hub_tag=hub_tag,
        mirror=selected(project, mirror),
        network=network,
        port=port,
        authenticator=authenticator,
        development=development,
        proxy_domain=proxy_domain,
    )
    for path in written:
        out.print(f"wrote {path}")
    out.print(f"next: imagebuild hub select NAME:TAG... --dir {folder}; then docker compose up -d in {folder}")


@hub_app.command("select")
def hub_select(
    images: Annotated[list[str], typer.Argument(help="NAME:TAG of published images, e.g. aiidalab:2026-11-22")],
    folder: DirOption = Path("hub"),
) -> None:
    """Offer exactly these published tags (each pinned to its digest); tags the registry lacks are refused."""
    selection = hub_module.select(folder, load_project(), [hub_module.Wanted.parse(text) for text in images])
    for item in selection.images:
        out.print(f"selected {item.label}: {item.ref}")


@hub_app.command("images")
def hub_images(folder: DirOption = Path("hub"), as_json: JsonOption = False) -> None:
    """What the hub offers next to what the registry has published."""
    project = load_project()
    hub = hub_module.HubFolder(folder)
    settings = hub.settings
    chosen = {(item.image, item.tag): item for item in hub.selection.images}
    registry = Registry(settings.registry)
    rows = []
    for name in sorted(project.recipes):
        repository = registry_repository(project, name)
        for tag in registry.tags(repository):
            ref = f"{settings.registry}/{repository}:{tag}"
            rows.append({"image": name, "tag": tag, "ref": ref, "selected": (name, tag) in chosen})
    listed = {(row["image"], row["tag"]) for row in rows}
    missing = [item.label for key, item in chosen.items() if key not in listed]
    if as_json:
        print(json.dumps({"published": rows, "selected_but_missing": missing}, indent=2))
        return
    table = Table("image", "tag", "offered", title=f"{settings.registry} (hub: {folder})")
    for row in rows:
        table.add_row(row["image"], row["tag"], "[green]yes[/]" if row["selected"] else "")
    out.print(table)
    for label in missing:
        out.print(f"[red]selected but no longer in the registry: {label}[/]")


@hub_app.command("render")
def hub_render(
    target: Annotated[str, typer.Option("--target", help="z2jh: a Zero-to-JupyterHub values file")] = "z2jh",
    folder: DirOption = Path("hub"),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """The hub's selection for another deployment target (Zero-to-JupyterHub on Kubernetes)."""
    if target != "z2jh":
        raise RecipeError(f"--target: unknown target '{target}'", hint="the known target is z2jh")
    values = hub_module.render_z2jh(hub_module.HubFolder(folder).selection)
    if output is None:
        print(values, end="")
    else:
        output.write_text(values)
        out.print(f"wrote {output}")


@hub_app.command("check")
def hub_check(folder: DirOption = Path("hub")) -> None:
    """Validate hub.toml and images.toml."""
    hub = hub_module.HubFolder(folder)
    settings, selection = hub.settings, hub.selection
    out.print(f"{folder}: {settings.authenticator.kind} authenticator, {len(selection.images)} image(s) offered")
