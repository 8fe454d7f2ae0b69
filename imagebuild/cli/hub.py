"""`imagebuild hub ...`: the bundled JupyterHub and the images it offers."""

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imagebuild.build import engine as engine_module
from imagebuild.build import host
from imagebuild.cli.terminal import (
    JsonOption,
    RegistryOption,
    StatusLine,
    err,
    host_cache,
    out,
)
from imagebuild.config import RunConfig, RunOptions, resolve
from imagebuild.errors import ImagebuildError, RecipeError
from imagebuild.hub import folder as hub_folder
from imagebuild.hub import lifecycle
from imagebuild.hub.compose import find_compose
from imagebuild.hub.z2jh import render_z2jh
from imagebuild.model.hub import HubFolder
from imagebuild.publish.push import registry_repository
from imagebuild.publish.registry import Registry

hub_app = typer.Typer(help="The bundled JupyterHub (DockerSpawner, PostgreSQL) and the images it offers.", no_args_is_help=True)
DirOption = Annotated[Path, typer.Option("--dir", help="the hub folder", show_default=True)]
DirArgument = Annotated[Path, typer.Argument(help="the hub folder", show_default=True)]


def _say(message: str) -> None:
    err.print(f"[bold blue]>[/] {message}")


@hub_app.command("init")
def hub_init(
    folder: Annotated[Path, typer.Argument(help="a new folder for the hub")],
    admin: Annotated[
        str | None, typer.Option("--admin", help="user name of the first admin (asked for on a terminal)", show_default=False)
    ] = None,
    registry: RegistryOption = None,
    hub_tag: Annotated[str, typer.Option("--hub-tag", help="tag of the hub, database and proxy images")] = "latest",
    port: Annotated[int, typer.Option("--port", help="port the hub listens on")] = 8000,
    authenticator: Annotated[
        str, typer.Option("--authenticator", help="native, github, generic (OAuth/OIDC, e.g. Keycloak) or dummy")
    ] = "native",
    development: Annotated[bool, typer.Option("--development", help="a test hub: allows the dummy authenticator")] = False,
    proxy_domain: Annotated[
        str | None, typer.Option("--proxy-domain", help="put Caddy in front, with automatic TLS for this domain")
    ] = None,
) -> None:
    """Write a ready-to-run hub: hub.toml, compose.yml, jupyterhub_config.py, images.toml and a 0600 .env."""
    if admin is None:
        if not sys.stdin.isatty():
            raise RecipeError("--admin NAME is required: the first admin approves sign-ups", hint="e.g. --admin alice")
        admin = typer.prompt("user name of the hub's first admin")
    config = resolve(RunOptions(registry=registry))
    project = config.project
    request = hub_folder.HubInit(
        folder=folder,
        registry=config.registry,
        admin=admin,
        hub_tag=hub_tag,
        port=port,
        authenticator=authenticator,
        development=development,
        proxy_domain=proxy_domain,
    )
    for path in hub_folder.init(project, request):
        out.print(f"wrote {path}")
    out.print(f"next: imagebuild hub select NAME:TAG... --dir {folder}; then imagebuild hub up {folder}")


@hub_app.command("select")
def hub_select(
    images: Annotated[list[str], typer.Argument(help="NAME:TAG of published images, e.g. aiidalab:2026-11-22")],
    folder: DirOption = Path("hub"),
) -> None:
    """Offer exactly these published tags (each pinned to its digest); the running hub applies it at the next spawn."""
    config = resolve(RunOptions())
    wanted = [hub_folder.Wanted.parse(text, config.project) for text in images]
    for item in hub_folder.select(folder, config.project, wanted, config.registry_login).images:
        out.print(f"selected {item.label}: {item.ref}")


@hub_app.command("images")
def hub_images(folder: DirOption = Path("hub"), as_json: JsonOption = False) -> None:
    """What the hub offers next to what the registry has published."""
    config = resolve(RunOptions())
    project = config.project
    hub = HubFolder(folder)
    settings = hub.settings
    chosen = {(item.image, item.tag): item for item in hub.selection.images}
    registry = Registry(settings.registry, config.registry_login)
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
        table.add_row(str(row["image"]), str(row["tag"]), "[green]yes[/]" if row["selected"] else "")
    out.print(table)
    for label in missing:
        out.print(f"[red]selected but no longer in the registry: {label}[/]")


@hub_app.command("render")
def hub_render(
    target: Annotated[str, typer.Option("--target", help="z2jh: a Zero-to-JupyterHub values file")] = "z2jh",
    folder: DirOption = Path("hub"),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """The hub for another deployment target (Zero-to-JupyterHub on Kubernetes)."""
    if target != "z2jh":
        raise RecipeError(f"--target: unknown target '{target}'", hint="the known target is z2jh")
    hub = HubFolder(folder)
    values = render_z2jh(hub.settings, hub.selection)
    if output is None:
        print(values, end="")
    else:
        output.write_text(values)
        out.print(f"wrote {output}")


@hub_app.command("check")
def hub_check(folder: DirOption = Path("hub")) -> None:
    """Validate hub.toml, images.toml and .env: what `hub up` refuses, said before anything starts."""
    settings, selection = HubFolder(folder).check()
    auth = settings.authenticator
    out.print(f"{folder}: {auth.kind} authenticator (admins: {', '.join(auth.admin_users) or 'none'}), "
              f"{len(selection.images)} image(s) offered, {settings.public_url}")


@hub_app.command("up")
def hub_up(
    folder: DirArgument = Path("hub"),
    as_json: JsonOption = False,
) -> None:
    """Start the hub (or apply hub.toml changes): images pulled or built, Compose run, wait until it answers."""
    settings, _selection = HubFolder(folder).check()  # refuse a missing or bad folder before the engine or Compose is touched
    try:
        config: RunConfig | None = resolve(RunOptions())
    except ImagebuildError:
        config = None  # outside the project: images must be in the engine or the registry
    line = StatusLine(err)
    with line.status:
        host.up(line.say, host_cache(), os.environ)
        request = lifecycle.UpRequest(
            folder=folder,
            compose=find_compose(line.say, host_cache()),
            project=config.project if config else None,
            config=config,
            reporter=line.reporter(),
        )
        result = lifecycle.up(request, engine_module.Engine())
    if as_json:
        print(json.dumps(asdict(result), indent=2))
        return
    out.print(f"compose: {result.compose}")
    for ref, action in result.images.items():
        out.print(f"image {ref}: {action}")
    for service, change in result.services.items():
        out.print(f"service {service}: {change}")
    out.print(f"[bold green]the hub answers at {result.url}[/] ({result.seconds} s)")
    if settings.authenticator.kind == "native":
        admin = settings.authenticator.admin_users[0]
        out.print(f"next: open {result.url}/hub/signup and sign up as '{admin}' (the admin); "
                  f"approve other users at {result.url}/hub/authorize")
    else:
        out.print(f"next: open {result.url} and log in as one of the admins: {', '.join(settings.authenticator.admin_users)}")


@hub_app.command("down")
def hub_down(folder: DirArgument = Path("hub")) -> None:
    """Stop the hub and its users' servers; every volume (database, homes) is kept."""
    stopped = lifecycle.down(folder, find_compose(_say, host_cache()), engine_module.Engine(), _say)
    out.print(f"the hub is stopped ({len(stopped)} user server(s) stopped); volumes kept")


@hub_app.command("status")
def hub_status(folder: DirArgument = Path("hub"), as_json: JsonOption = False) -> None:
    """Services and their health, the selected images, running user servers."""
    status = lifecycle.status(folder, engine_module.Engine())
    if as_json:
        print(json.dumps(asdict(status), indent=2))
        return
    out.print(f"hub '{status.name}' at {status.url}")
    services = Table("service", "state", "health", "restarts", "image", title="services")
    for row in status.services:
        services.add_row(str(row["service"]), str(row["state"]), str(row["health"]), str(row["restarts"]), str(row["image"]))
    out.print(services if status.services else "no service is running (imagebuild hub up starts them)")
    selected = Table("label", "image", title="offered images")
    for item in status.selected:
        selected.add_row(item["label"], item["ref"])
    out.print(selected if status.selected else "no image is offered (imagebuild hub select NAME:TAG...)")
    servers = Table("user", "state", "since", "image", title="user servers")
    for server in status.user_servers:
        servers.add_row(server["user"], server["state"], server["since"], server["image"])
    out.print(servers if status.user_servers else "no user server is running")


@hub_app.command("logs")
def hub_logs(
    service: Annotated[str | None, typer.Argument(help="db, hub or proxy (default: all)")] = None,
    folder: DirOption = Path("hub"),
    tail: Annotated[int, typer.Option("--tail", help="lines per service")] = 100,
) -> None:
    """The services' logs."""
    print(lifecycle.logs(folder, find_compose(_say, host_cache()), service, tail), end="")
