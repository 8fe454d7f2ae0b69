"""`imagebuild mirror ...`: inspect, probe and use mirror profiles outside a build."""

import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from imagebuild.cli.terminal import AllOption, CaOption, JsonOption, MirrorOption, Names, StatusLine, err, out, run_options
from imagebuild.config import RunConfig, RunOptions, resolve
from imagebuild.errors import MirrorError, RecipeError
from imagebuild.mirrors.check import check
from imagebuild.mirrors.rewrite import FileKind, detect_kind, rewrite_file, unrouted_entries
from imagebuild.mirrors.rewrite.buildtime import MIRROR_SECRET, run_settings
from imagebuild.mirrors.rewrite.dockerfile import unrouted_runs
from imagebuild.mirrors.rules import url_rules
from imagebuild.mirrors.serve import serve_mirror
from imagebuild.mirrors.sync import sync
from imagebuild.model.mirror import Mirror, load_mirror, profile_paths
from imagebuild.model.project import find_project
from imagebuild.model.text import read_text

mirror_app = typer.Typer(help="List, show, probe, sync and apply mirror profiles (mirrors/*.toml).", no_args_is_help=True)

ProfileArgument = Annotated[str, typer.Argument(help="profile name from mirrors/, or a path to a .toml file")]


def _sections(spec: object) -> list[str]:
    names = ("pypi", "conda", "apt", "registry", "compose", "downloads", "git", "ca_cert", "credentials")
    return [name for name in names if getattr(spec, name)]


@mirror_app.command("list")
def list_profiles(as_json: JsonOption = False) -> None:
    """The profiles in the project's mirrors/ folder and what each one covers."""
    root = find_project()
    rows: list[dict[str, Any]] = []
    for name in profile_paths(root):
        mirror = load_mirror(name, root)
        rows.append(
            {
                "name": name,
                "description": mirror.spec.description,
                "covers": _sections(mirror.spec),
                "runtime": mirror.spec.runtime,
                "path": str(mirror.path),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "description", "covers", "runtime")
    for row in rows:
        table.add_row(row["name"], row["description"], ", ".join(row["covers"]) or "-", "yes" if row["runtime"] else "no")
    out.print(table)


def _profile(profile: str, ca_cert: Path | None = None) -> tuple[RunConfig, Mirror]:
    """The run's configuration with `profile` as its mirror ('none' names no profile to act on)."""
    config = resolve(RunOptions(mirror=profile, ca_cert=ca_cert))
    if config.mirror is None:
        raise RecipeError(f"'{profile}' names no mirror profile", hint="name a profile from 'imagebuild mirror list', or a .toml path")
    return config, config.mirror


@mirror_app.command()
def show(profile: ProfileArgument, as_json: JsonOption = False) -> None:
    """Every rewrite a profile implies: upstream -> mirror, and the credentials it names."""
    config, mirror = _profile(profile)
    rules = url_rules(mirror.spec, extra_debian_upstreams=(config.debian_archive,))
    rewrites: list[dict[str, Any]] = [
        {"purpose": rule.purpose, "upstream": list(rule.upstreams), "mirror": rule.mirror} for rule in rules.rules
    ]
    rewrites += [
        {"purpose": "registry", "upstream": [registry], "mirror": prefix}
        for registry, prefix in sorted(mirror.spec.registry.items())
    ]
    credentials = [
        {
            "host": item.host,
            "username_env": item.username_env,
            "password_env": item.password_env,
            "set": item.host in config.known_logins,
        }
        for item in mirror.spec.credentials
    ]
    if as_json:
        document = {"name": mirror.name, "path": str(mirror.path), "profile": mirror.spec.model_dump()}
        print(json.dumps({**document, "rewrites": rewrites, "credentials": credentials}, indent=2))
        return
    out.print(f"[bold]{mirror.name}[/] ({mirror.path}): {mirror.spec.description}")
    out.print(f"runtime: {'the image keeps the mirror configuration' if mirror.spec.runtime else 'build time only'}")
    if mirror.ca_cert:
        out.print(f"trusted CA while building: {mirror.ca_cert}")
    table = Table("used for", "upstream", "mirror")
    for row in rewrites:
        table.add_row(row["purpose"], "\n".join(row["upstream"]), row["mirror"])
    out.print(table)
    for credential in credentials:
        state = "set" if credential["set"] else "[red]not set[/]"
        out.print(f"credentials for {credential['host']}: ${credential['username_env']} / ${credential['password_env']} ({state})")


@mirror_app.command("check")
def check_command(
    profile: ProfileArgument,
    as_json: JsonOption = False,
    ca_cert: CaOption = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each endpoint")] = 5.0,
) -> None:
    """Probe every endpoint of a profile: reachable or not, latency, what it is used for (exit 6 if any is down)."""
    config, mirror = _profile(profile, ca_cert)
    probes = check(mirror, ca_file=config.ca_file, logins=config.logins(), timeout=timeout)
    if as_json:
        print(json.dumps([asdict(probe) for probe in probes], indent=2))
    else:
        table = Table("endpoint", "used for", "reachable", "latency", "detail")
        for probe in probes:
            latency = f"{probe.latency_ms:.0f} ms" if probe.latency_ms is not None else "-"
            table.add_row(probe.url, probe.purpose, "[green]yes[/]" if probe.reachable else "[red]no[/]", latency, probe.detail)
        out.print(table)
    if not all(probe.reachable for probe in probes):
        raise typer.Exit(MirrorError.exit_code)


def _write_atomically(path: Path, text: str) -> None:
    """Replace (or create) `path` in one step, keeping its mode: an interrupted rewrite leaves the old file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
        stream.write(text)
    os.chmod(temporary, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
    os.replace(temporary, path)


@mirror_app.command()
def rewrite(
    file: Annotated[Path, typer.Argument(help="Dockerfile, compose file, environment.yml, conda-lock file, requirements.txt, pip.conf, .condarc, sources.list or *.sources")],
    mirror: MirrorOption = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="write the result back to FILE")] = False,
    kind: Annotated[FileKind | None, typer.Option(help="the file's format, when its name does not tell")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="fail (exit 2) when a Dockerfile RUN cannot be routed")] = False,
    plain: Annotated[
        bool,
        typer.Option(
            "--plain",
            help="Dockerfile: write the mirror settings into each RUN, for builders without BuildKit (they then show in docker history)",
        ),
    ] = False,
    secret_file: Annotated[
        Path | None,
        typer.Option("--secret-file", help="Dockerfile: where the RUN lines' mirror settings are written (default: FILE.mirror.sh)"),
    ] = None,
) -> None:
    """Rewrite a file imagebuild did not write so that it uses a mirror; print it, or write it back.

    A Dockerfile's RUN lines read the mirror settings from a BuildKit secret, written to
    --secret-file; the command to build it is printed on stderr."""
    text = read_text(file, missing_hint="pass the path of an existing file", keep_bom=True)
    profile = resolve(RunOptions(mirror=mirror)).mirror
    if profile is None:
        raise RecipeError("no mirror selected", hint="pass --mirror NAME (see 'imagebuild mirror list')")
    kind = kind or detect_kind(file, text)
    unrouted = unrouted_runs(text, profile.spec) if kind is FileKind.DOCKERFILE else []
    if unrouted and strict:
        raise RecipeError(
            "; ".join(unrouted), path=file, hint="write these RUN lines in shell form, or drop --strict to accept them"
        )
    for problem in unrouted + unrouted_entries(kind, text, profile.spec):
        err.print(f"warning: {file}: {problem}", markup=False, highlight=False)
    rewritten = rewrite_file(kind, text, profile.spec, source=file, plain_runs=plain)
    settings = run_settings(profile.spec) if kind is FileKind.DOCKERFILE and not plain else None
    if settings is not None:
        secret = secret_file or file.with_name(f"{file.name}.mirror.sh")
        _write_atomically(secret, settings + "\n")
        err.print(
            f"the RUN lines read mirror '{profile.name}' from {secret}; build with BuildKit:\n"
            f"  DOCKER_BUILDKIT=1 docker build --secret id={MIRROR_SECRET},src={secret} -f {file if in_place else 'REWRITTEN'} CONTEXT"
            "\n(without BuildKit, rewrite with --plain: the settings then show in docker history)",
            markup=False,
            highlight=False,
        )
    if in_place:
        if rewritten != text:
            _write_atomically(file, rewritten)
        err.print(f"{'rewrote' if rewritten != text else 'unchanged:'} {file} for mirror '{profile.name}'")
    else:
        print(rewritten, end="")


@mirror_app.command("sync")
@run_options
def sync_command(
    options: RunOptions,
    names: Names = None,
    everything: AllOption = False,
    to: Annotated[Path, typer.Option("--to", help="folder to fill with a PEP 503 index of the exact files")] = Path("wheelhouse"),
    as_json: JsonOption = False,
) -> None:
    """Download every file the images install from PyPI into a local index a 'local' profile can serve."""
    config = resolve(options)
    line = StatusLine(err)
    with line.status:
        result = sync(config, sorted(config.project.recipes) if everything else names or [], to, say=line.say)
    if as_json:
        print(json.dumps(asdict(result), indent=2, default=str))
        return
    out.print(
        f"{result.files} files ({result.new} new, {result.total_bytes / 1e6:.1f} MB) for "
        f"{len(result.packages)} packages in {result.destination}"
    )


@mirror_app.command()
def serve(profile: ProfileArgument) -> None:
    """Serve a profile's [serve] pypi folder at its [pypi].index_url until interrupted (Ctrl-C)."""
    config, mirror = _profile(profile)
    server = serve_mirror(mirror, config.logins())
    if server is None:
        raise RecipeError(
            "nothing to serve: the profile has no [serve] pypi folder (or it is already served)",
            path=mirror.path,
            hint='add [serve] pypi = "../wheelhouse" (relative to the profile) and fill it with imagebuild mirror sync NAME --to wheelhouse',
        )
    with server:
        err.print(f"serving {mirror.serve_pypi} at {mirror.spec.pypi.index_url} (access log in {mirror.serve_pypi}/access.log)")  # type: ignore[union-attr]
        while True:
            time.sleep(3600)
