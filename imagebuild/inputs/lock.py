"""`imagebuild lock`: per image, a fully pinned Python lock with hashes and the commit of
every dev package, written to images/<name>/image.lock and used by builds until the next lock.

A child is locked on top of its ancestors' locks (their pins are constraints), so a child
never changes a parent's pins. Each lock records a digest of what it was made from (the
recipe's requirements, dev package refs, wheel assets, the ancestors' locks and the target);
when that changes, the lock is stale: `lock --check` fails and builds warn.
"""

import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tomli_w
from packaging.utils import parse_wheel_filename
from pydantic import Field
from uv import find_uv_bin

from imagebuild.errors import LockError
from imagebuild.inputs import conda
from imagebuild.inputs.archive import package_indexes
from imagebuild.inputs.assets import DeclaredAsset
from imagebuild.inputs.devpackages import LockedDevPackage, resolve
from imagebuild.inputs.fetch import Fetcher
from imagebuild.inputs.target import Target, debian_suite, image_target
from imagebuild.model.recipe import DevPackageSpec, Recipe, StrictModel, parse_toml
from imagebuild.plan import BuildPlan

LOCK_FILE = "image.lock"
HEADER = "# Written by `imagebuild lock`; commit it. Builds use these pins and commits until the next lock.\n"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


class ImageLock(StrictModel):
    """The schema of images/<name>/image.lock."""

    version: Literal[1] = 1
    inputs: str
    python: str = ""
    platform: str = ""
    source: LockedDevPackage | None = Field(
        default=None, description="a [source] recipe: the commit its ref named when locked; builds fetch that commit"
    )
    dev_packages: list[LockedDevPackage] = []
    debian: dict[str, str] = Field(
        default={}, description="root images: suite -> sha256 of its package index when locked; a change rebuilds with the updates"
    )
    requirements: str = ""

    def pins(self) -> dict[str, str]:
        """name -> version of every locked distribution."""
        return {match[1].lower(): match[3] for line in self.requirements.splitlines() if (match := _PIN.match(line))}


def lock_path(recipe: Recipe) -> Path:
    return recipe.directory / LOCK_FILE


def needs_lock(recipe: Recipe) -> bool:
    return (
        recipe.requirements is not None
        or recipe.spec.source is not None
        or recipe.conda_environment is not None
        or bool(recipe.spec.dev_packages)
        or any(a.wheel for a in recipe.spec.assets)
    )


def read_lock(recipe: Recipe) -> ImageLock | None:
    path = lock_path(recipe)
    return parse_toml(path, ImageLock) if path.is_file() else None


def _platform(target: Target) -> str:
    return f"{target.machine}-manylinux_{target.glibc[0]}_{target.glibc[1]}"


def inputs_digest(item: BuildPlan) -> str:
    """What a lock of `item` is made from; any change makes its lock stale."""
    recipe = item.recipe
    if recipe.spec.source is not None:
        return hashlib.sha256(json.dumps({"source": recipe.spec.source.model_dump()}, sort_keys=True).encode()).hexdigest()
    target = image_target(item)
    facts = {
        "requirements": recipe.requirements.read_text() if recipe.requirements else None,
        "dev_packages": [[p.name, p.url, p.ref] for p in recipe.spec.dev_packages],
        "wheels": sorted(a.sha256 for a in recipe.spec.assets if a.wheel),
        "ancestors": [
            hashlib.sha256(lock_path(parent).read_bytes()).hexdigest() if lock_path(parent).is_file() else None
            for parent in item.ancestors
        ],
        "target": [target.python_version, _platform(target)],
    }
    if recipe.conda_environment is not None:
        parents = [conda.conda_lock_path(p.directory) for p in item.ancestors if p.conda_environment is not None]
        facts["conda"] = [
            recipe.conda_environment.read_text(),
            recipe.spec.conda.prefix,
            [hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None for path in parents],
        ]
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class LockState:
    """Whether an image's lock matches its recipe: 'fresh', 'stale', 'missing' or 'none' (nothing to lock)."""

    name: str
    state: str
    path: Path

    def hint(self) -> str:
        return f"run 'imagebuild lock {self.name}' and commit {self.path.name}"


def lock_state(item: BuildPlan, lock: ImageLock | None = None) -> LockState:
    """`lock`: the image's lock when the caller has read it already (a lock is large: parse it once per run)."""
    recipe = item.recipe
    path = lock_path(recipe)
    if not needs_lock(recipe):
        return LockState(item.name, "none", path)
    lock = lock if lock is not None else read_lock(recipe)
    if lock is None:
        return LockState(item.name, "missing", path)
    return LockState(item.name, "fresh" if lock.inputs == inputs_digest(item) else "stale", path)


def compile_requirements(
    item: BuildPlan,
    local_wheels: list[tuple[str, Path]],
    env: dict[str, str],
    say: Callable[[str], None],
    *,
    previous: str = "",
) -> str:
    """uv's fully pinned, hashed resolution for the image's target, its ancestors' pins held fixed.

    `local_wheels` (name, file) take part in the resolution, so their dependencies are locked,
    but are not written: the build installs them from its context. The `previous` pins are
    preferred (uv reads an existing output file so), so a lock moves only what it must.
    """
    recipe = item.recipe
    target = image_target(item)
    with tempfile.TemporaryDirectory(prefix="imagebuild-lock-") as scratch:
        folder = Path(scratch)
        inputs = []
        if recipe.requirements is not None:
            inputs.append(str(recipe.requirements))
        if local_wheels:
            wheels = folder / "wheels.in"
            wheels.write_text("".join(f"{name} @ {path.as_uri()}\n" for name, path in local_wheels))
            inputs.append(str(wheels))
        output = folder / "requirements.lock"
        output.write_text(previous)
        constraints = folder / "ancestors.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(_ancestor_pins(item).items())))
        command = [
            find_uv_bin(), "pip", "compile", *inputs,
            "-c", str(constraints),
            "--generate-hashes", "--no-header", "--quiet", "--output-file", str(output),
            "--python-version", target.python_version,
            "--python-platform", _platform(target),
        ]  # fmt: skip
        for name, _ in local_wheels:
            command += ["--no-emit-package", name]
        say(f"{item.name}: resolving for {target}")
        completed = subprocess.run(command, env=env, cwd=recipe.directory, capture_output=True, text=True, check=False)
        resolved = output.read_text().replace(f"{folder}/", "")  # annotations name '-c ancestors.txt', not a temp path
    if completed.returncode != 0:
        held = " (with its ancestors' pins held fixed)" if item.ancestors else ""
        raise LockError(
            f"{item.name}: the requirements cannot be resolved{held}:\n{completed.stderr.strip()}",
            path=recipe.requirements or recipe.path,
            hint="loosen a pin here, or bound the conflicting package in the parent's requirements and lock it again"
            if item.ancestors
            else "loosen or correct the pins named above",
        )
    return resolved


def _ancestor_pins(item: BuildPlan) -> dict[str, str]:
    pins: dict[str, str] = {}
    for parent in item.ancestors:
        lock = read_lock(parent)
        if lock is not None:
            pins.update(lock.pins())
    return pins


def write_lock(item: BuildPlan, lock: ImageLock) -> bool:
    """Write the lock file; False when it already says exactly this (the file is not touched)."""
    path = lock_path(item.recipe)
    empty = {name for name in ("debian", "source", "python", "platform") if not getattr(lock, name)}
    text = HEADER + tomli_w.dumps(lock.model_dump(exclude=empty), multiline_strings=True)
    if path.is_file() and path.read_text() == text:
        return False
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    staging.replace(path)
    return True


@dataclass(frozen=True)
class LockOutcome:
    """What `imagebuild lock` did to one image's lock (for the table and --json)."""

    name: str
    path: str
    written: bool
    packages: int
    dev_packages: list[dict[str, str | None]]
    changed_pins: dict[str, list[str | None]]


def _conda_parent(item: BuildPlan) -> Recipe | None:
    """The nearest ancestor with a conda environment; a child extends it, in the same prefix."""
    parent = next((recipe for recipe in item.ancestors if recipe.conda_environment is not None), None)
    if parent is None:
        return None
    if parent.spec.conda.prefix != item.recipe.spec.conda.prefix:
        raise LockError(
            f"[conda].prefix: {item.name} installs into {item.recipe.spec.conda.prefix}, its parent {parent.name} "
            f"into {parent.spec.conda.prefix}",
            path=item.recipe.path,
            hint="a child extends its parent's environment: use the parent's prefix",
        )
    if not conda.conda_lock_path(parent.directory).is_file():
        raise LockError(f"{parent.name} has no conda lock yet", path=parent.path, hint=f"run 'imagebuild lock {item.name}'")
    return parent


def _lock_conda(item: BuildPlan, fetcher: Fetcher) -> bool:
    """conda-lock.yml beside the recipe: the environment solved for the image's platform."""
    assert item.recipe.conda_environment is not None
    recipe = item.recipe
    environment = conda.read_environment(recipe.conda_environment)
    target = image_target(item)
    pinned = []
    parent = _conda_parent(item)
    if parent is not None:  # the parent's environment, its packages held at their locked versions
        assert parent.conda_environment is not None
        environment = conda.extended(conda.read_environment(parent.conda_environment), environment)
        pinned = conda.locked_records(conda.conda_lock_path(parent.directory), conda.subdir(target))
    routes = conda.routes(environment, fetcher.mirror)
    local = [
        conda.LocalPackage(spec.file_name, fetcher.asset(DeclaredAsset(spec, recipe)), spec.urls[0] if spec.urls else "")
        for spec in recipe.spec.assets
        if spec.conda
    ]
    fetcher.say(f"{item.name}: solving {environment.path.name} for {conda.subdir(target)} with rattler")
    with tempfile.TemporaryDirectory(prefix="imagebuild-conda-") as scratch:
        carried = conda.local_channel(local, Path(scratch))
        records = conda.solve(environment, target, [*([carried] if carried else []), *routes], fetcher.mirror, pinned)
    lock = conda.lockfile(records, environment, target, routes, local)
    return conda.write(lock, conda.conda_lock_path(recipe.directory))


def _debian_pins(indexes: dict[str, str]) -> dict[str, str]:
    """Package index changes, shown among the pin changes: 'debian:bookworm-security' -> short hash."""
    return {f"debian:{suite}": digest[:12] for suite, digest in indexes.items()}


def lock_source(recipe: Recipe, env: dict[str, str]) -> LockedDevPackage:
    """The commit [source].ref names now, resolved as a dev package's ref is (through the mirror's
    git rewrites in `env`); the lock keeps the repository as the recipe writes it, not a host path."""
    assert recipe.spec.source is not None and recipe.source is not None
    spec = DevPackageSpec(name=recipe.name, url=recipe.source, ref=recipe.spec.source.ref)
    locked = resolve(spec, env, what=f"{recipe.name} [source]")
    return locked.model_copy(update={"url": recipe.spec.source.repo})


def lock_image(item: BuildPlan, fetcher: Fetcher, *, debian_archive: str, upgrade: bool = False) -> LockOutcome:
    """Resolve dev package refs to commits, build their wheels, resolve the requirements, record
    the Debian package indexes a root image installs from (`debian_archive`), write the lock.

    Pins of the previous lock are kept where they still fit, unless `upgrade`.
    """
    recipe = item.recipe
    previous = read_lock(recipe)
    if recipe.spec.source is not None:
        source = lock_source(recipe, fetcher.git_env)
        lock = ImageLock(inputs=inputs_digest(item), source=source)
        return _outcome(item, previous, lock, write_lock(item, lock), [source])
    dev = [resolve(spec, fetcher.git_env) for spec in recipe.spec.dev_packages]
    with tempfile.TemporaryDirectory(prefix="imagebuild-wheels-") as scratch:
        local = [(package.name, fetcher.dev_wheel(item, package)) for package in dev]
        for spec in (spec for spec in recipe.spec.assets if spec.wheel):
            named = Path(scratch) / spec.file_name  # resolvers read a wheel's name and version from its file name
            named.symlink_to(fetcher.asset(DeclaredAsset(spec, recipe)))
            local.append((str(parse_wheel_filename(spec.file_name)[0]), named))
        kept = previous.requirements if previous and not upgrade else ""
        requirements = ""
        if recipe.requirements is not None or local:
            requirements = compile_requirements(item, local, fetcher.git_env, fetcher.say, previous=kept)
    conda_written = _lock_conda(item, fetcher) if recipe.conda_environment is not None else False
    target = image_target(item)
    suite = debian_suite(recipe.spec.root or "")
    lock = ImageLock(
        inputs=inputs_digest(item),
        python=target.python_version,
        platform=_platform(target),
        dev_packages=dev,
        debian=package_indexes(debian_archive, suite, target.machine, fetcher.mirror) if suite else {},
        requirements=requirements,
    )
    return _outcome(item, previous, lock, write_lock(item, lock) or conda_written, dev)


def _outcome(
    item: BuildPlan, previous: ImageLock | None, lock: ImageLock, written: bool, dev: list[LockedDevPackage]
) -> LockOutcome:
    """What changed from `previous` to `lock` (a source's commit is listed among the dev packages)."""
    before = {**(previous.pins() if previous else {}), **_debian_pins(previous.debian if previous else {})}
    after = {**lock.pins(), **_debian_pins(lock.debian)}
    earlier = {package.name: package.commit for package in previous.dev_packages} if previous else {}
    if previous is not None and previous.source is not None:
        earlier[previous.source.name] = previous.source.commit
    return LockOutcome(
        name=item.name,
        path=str(lock_path(item.recipe)),
        written=written,
        packages=len(after),
        dev_packages=[{**package.model_dump(), "previous_commit": earlier.get(package.name)} for package in dev],
        changed_pins={
            name: [before.get(name), after.get(name)]
            for name in sorted(before.keys() | after.keys())
            if previous is not None and before.get(name) != after.get(name)
        },
    )
