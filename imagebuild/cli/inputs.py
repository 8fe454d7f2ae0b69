"""`imagebuild lock` and `imagebuild assets ...`: the offline inputs of images."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from imagebuild.cli.terminal import (
    CaOption,
    JsonOption,
    MirrorOption,
    Names,
    fetcher,
    out,
)
from imagebuild.config import RunOptions, resolve
from imagebuild.errors import AssetError, LockError
from imagebuild.inputs.assets import DeclaredAsset, declared_assets
from imagebuild.inputs.lock import lock_image
from imagebuild.inputs.lockfile import read_lock
from imagebuild.inputs.lockstate import lock_state
from imagebuild.plan import plan

assets_app = typer.Typer(help="The asset cache: files images need that are not pip packages.", no_args_is_help=True)


def lock(
    names: Names = None,
    check: Annotated[
        bool, typer.Option("--check", help="write nothing; exit 8 if a lock is missing or older than its recipe")
    ] = False,
    upgrade: Annotated[bool, typer.Option("--upgrade", help="resolve afresh instead of keeping the current pins")] = False,
    as_json: JsonOption = False,
    ca_cert: CaOption = None,
    mirror: MirrorOption = None,
) -> None:
    """Pin each image's Python packages (with hashes) and dev package refs (to commits) in images/<name>/image.lock.

    Without names: every image. Parents are locked first; a child is resolved with its
    parents' pins held fixed. Current pins are kept where they still fit (--upgrade: newest).
    """
    config = resolve(RunOptions(mirror=mirror, ca_cert=ca_cert))
    plans = plan(config.project, names or [], everything=not names)
    if check:
        states = [lock_state(item) for item in plans]
        if as_json:
            rows = [{"image": s.name, "state": s.state, "changed": list(s.changed), "path": str(s.path)} for s in states]
            print(json.dumps(rows, indent=2))
        else:
            for state in states:
                out.print(f"{state.name}: {state.explain()}" + ("" if state.state in ("fresh", "none") else f" ({state.hint()})"))
        bad = [s for s in states if s.state in ("stale", "missing")]
        if bad:
            raise typer.Exit(LockError.exit_code)
        return
    run = fetcher(config)
    outcomes = [lock_image(item, run, upgrade=upgrade) for item in plans if lock_state(item).state != "none"]
    if as_json:
        print(json.dumps([asdict(outcome) for outcome in outcomes], indent=2))
        return
    for outcome in outcomes:
        verb = "wrote" if outcome.written else "unchanged"
        out.print(f"[bold]{outcome.name}[/]: {verb} {outcome.path} ({outcome.packages} packages)")
        for package in outcome.dev_packages:
            moved = package["previous_commit"] not in (None, package["commit"])
            note = f" (was {str(package['previous_commit'])[:12]})" if moved else ""
            out.print(f"  dev package {package['name']} {package['ref']} -> {str(package['commit'])[:12]}{note}")
        for name, (before, after) in outcome.changed_pins.items():
            out.print(f"  {name}: {before or '(new)'} -> {after or '(removed)'}")
        for name, (parents, own) in outcome.moved_parent_pins.items():
            out.print(f"  moves a parent's pin: {name} {parents} -> {own}")


def _wanted(project_assets: dict[str, DeclaredAsset], names: list[str] | None) -> list[DeclaredAsset]:
    for name in names or []:
        if name not in project_assets:
            raise AssetError(
                f"no asset named '{name}'", hint=f"assets of this project: {', '.join(sorted(project_assets)) or '(none)'}"
            )
    return [project_assets[name] for name in names] if names else list(project_assets.values())


@assets_app.command("list")
def assets_list(as_json: JsonOption = False) -> None:
    """Every asset the recipes declare, and whether the cache holds it."""
    config = resolve(RunOptions(offline=True))
    cache = fetcher(config).cache
    rows: list[dict[str, Any]] = []
    for asset in declared_assets(config.project).values():
        path = cache.path(asset.spec.sha256)
        rows.append(
            {
                "name": asset.name,
                "image": asset.recipe.name,
                "file": asset.spec.file_name,
                "sha256": asset.spec.sha256,
                "present": path.is_file(),
                "size_bytes": path.stat().st_size if path.is_file() else None,
                "path": str(path),
                "optional": asset.spec.optional,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("asset", "image", "file", "sha256", "cached")
    for row in rows:
        cached = f"{row['size_bytes'] / 1e6:.1f} MB" if row["present"] else "[red]missing[/]"
        table.add_row(row["name"], row["image"], row["file"], row["sha256"][:16], cached)
    out.print(table)


@assets_app.command("add")
def assets_add(files: Annotated[list[Path], typer.Argument(help="files downloaded elsewhere and carried in")]) -> None:
    """Put files into the cache; each must have the sha256 of an asset a recipe declares."""
    config = resolve(RunOptions(offline=True))
    by_checksum = {asset.spec.sha256: asset for asset in declared_assets(config.project).values()}
    cache = fetcher(config).cache
    for file in files:
        if not file.is_file():
            raise AssetError("file not found", path=file, hint="give the path of the downloaded file")
        from_name = [a for a in by_checksum.values() if a.spec.file_name == file.name]
        expected = from_name[0].spec.sha256 if len(from_name) == 1 else None
        try:
            checksum, _ = cache.add(file, expected)
        except AssetError as error:
            error.hint = f"it is named like asset '{from_name[0].name}' but is another file: download it again"
            raise
        asset = by_checksum.get(checksum)
        if asset is None:
            cache.remove(checksum)
            raise AssetError(
                f"sha256 {checksum} is not the checksum of any declared asset; the file was not added",
                path=file,
                hint="declare it in a recipe's [[assets]] with this sha256, or check that this is the right file",
            )
        out.print(f"added {file} as asset '{asset.name}' ({checksum[:16]})")


@assets_app.command("fetch")
def assets_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="asset names (default: all)", show_default=False)] = None,
    ca_cert: CaOption = None,
    mirror: MirrorOption = None,
) -> None:
    """Download missing assets (mirror rewrites and CA applied), and build the locked dev package wheels,
    so that a later `build --offline` needs no network."""
    config = resolve(RunOptions(mirror=mirror, ca_cert=ca_cert))
    run = fetcher(config)
    for asset in _wanted(declared_assets(config.project), names):
        path = run.asset(asset)
        out.print(f"{asset.name}: {path}")
    if names:
        return
    for item in plan(config.project, [], everything=True):
        lock = read_lock(item.recipe)
        for package in lock.dev_packages if lock else []:
            out.print(f"{item.name}: dev package {package.describe()}: {run.dev_wheel(item, package).name}")


@assets_app.command("verify")
def assets_verify(
    names: Annotated[list[str] | None, typer.Argument(help="asset names (default: all)", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Check every cached asset against its sha256; a corrupt file is removed. Exit 7 if any is missing or corrupt."""
    config = resolve(RunOptions(offline=True))
    cache = fetcher(config).cache
    rows: list[dict[str, Any]] = []
    for asset in _wanted(declared_assets(config.project), names):
        present = cache.has(asset.spec.sha256)
        try:
            cache.verified(asset)
            rows.append({"name": asset.name, "state": "ok", "problem": None})
        except AssetError as error:
            rows.append({"name": asset.name, "state": "corrupt" if present else "missing", "problem": error.render()})
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            out.print(f"{row['name']}: {row['state']}" if row["state"] == "ok" else f"[red]{row['problem']}[/]")
    if any(row["state"] != "ok" for row in rows):
        raise typer.Exit(AssetError.exit_code)

