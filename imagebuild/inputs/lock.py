"""`imagebuild lock`: per image, a fully pinned Python lock with hashes and the commit of
every dev package, written to images/<name>/image.lock and used by builds until the next lock.

A child is locked on top of its ancestors' locks (their pins are constraints), so a child
never changes a parent's pins. The file is lockfile.py's; whether it is still the lock of
its recipe, and which input changed when not, is lockstate.py's.
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import parse_wheel_filename
from uv import find_uv_bin

from imagebuild.errors import LockError
from imagebuild.inputs import conda
from imagebuild.inputs.archive import package_indexes
from imagebuild.inputs.assets import DeclaredAsset
from imagebuild.inputs.devpackages import LockedDevPackage, resolve
from imagebuild.inputs.fetch import Fetcher
from imagebuild.inputs.lockfile import ImageLock, lock_path, pins_of, platform_tag, read_lock, write_lock
from imagebuild.inputs.lockstate import input_digests, inputs_digest
from imagebuild.inputs.target import debian_suite, image_target
from imagebuild.model.recipe import Recipe
from imagebuild.model.recipe_schema import DevPackageSpec
from imagebuild.plan import BuildPlan
from imagebuild.system import run

UV_TIMEOUT = 900
"""A resolution reads many index pages; a hung index fails the lock instead of blocking it."""


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
    hold = recipe.spec.python.parent_pins == "hold"
    ancestors = _ancestor_pins(item)
    with tempfile.TemporaryDirectory(prefix="imagebuild-lock-") as scratch:
        folder = Path(scratch)
        inputs = []
        if not hold:  # the parents' packages, by name: their versions are preferences below, not pins
            parents = folder / "parents.in"
            parents.write_text("".join(f"{name}\n" for name in _requested_names(item.ancestors)))
            inputs.append(str(parents))
        if recipe.requirements is not None:
            inputs.append(str(recipe.requirements))
        command = [find_uv_bin(), "pip", "compile"]
        if local_wheels:
            # also overrides: a dev package that another names by a git URL (an app's git-only
            # requirement) is taken from its locked wheel instead
            wheels = folder / "wheels.in"
            wheels.write_text("".join(f"{name} @ {path.as_uri()}\n" for name, path in local_wheels))
            inputs.append(str(wheels))
            command += ["--overrides", str(wheels)]
        output = folder / "requirements.lock"
        ancestors_file = folder / "ancestors.txt"
        ancestors_file.write_text("".join(f"{name}=={version}\n" for name, version in sorted(ancestors.items())))
        if hold:
            output.write_text(previous)
            command += ["-c", str(ancestors_file)]
        else:  # the parents' pins are preferred, as the previous lock's are (uv reads the output file so)
            kept = pins_of(previous)
            output.write_text(previous + "".join(f"{n}=={v}\n" for n, v in sorted(ancestors.items()) if n not in kept))
        command += [
            *inputs,
            "--generate-hashes", "--no-header", "--quiet", "--output-file", str(output),
            "--python-version", target.python_version,
            "--python-platform", platform_tag(target),
        ]  # fmt: skip
        for name, _ in local_wheels:
            command += ["--no-emit-package", name]
        say(f"{item.name}: resolving for {target}")
        completed = run(command, env=env, cwd=recipe.directory, timeout=UV_TIMEOUT, check=False, error=LockError)
        resolved = output.read_text().replace(f"{folder}/", "")  # annotations name '-c ancestors.txt', not a temp path
    if completed.returncode != 0:
        held = " (with its ancestors' pins held fixed)" if item.ancestors and hold else ""
        raise LockError(
            f"{item.name}: the requirements cannot be resolved{held}:\n{completed.stderr.strip()}",
            path=recipe.requirements or recipe.path,
            hint="loosen a pin here, bound the conflicting package in the parent's requirements and lock it again, "
            "or let this image move its parents' pins ([python] parent_pins = \"move\")"
            if item.ancestors and hold
            else "loosen or correct the pins named above",
        )
    return resolved


def _requested_names(ancestors: tuple[Recipe, ...]) -> list[str]:
    """What the ancestors' requirements files ask for, without versions (name, extras, marker)."""
    from packaging.requirements import Requirement  # not on the command line's start path

    names = []
    for parent in ancestors:
        if parent.requirements is None:
            continue
        for line in parent.requirements.read_text().splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith(("#", "-")):
                continue
            requirement = Requirement(line)
            extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            names.append(f"{requirement.name}{extras}" + (f"; {requirement.marker}" if requirement.marker else ""))
    return names


def _ancestor_pins(item: BuildPlan) -> dict[str, str]:
    pins: dict[str, str] = {}
    for parent in item.ancestors:
        lock = read_lock(parent)
        if lock is not None:
            pins.update(lock.pins())
    return pins


@dataclass(frozen=True)
class LockOutcome:
    """What `imagebuild lock` did to one image's lock (for the table and --json)."""

    name: str
    path: str
    written: bool
    packages: int
    dev_packages: list[dict[str, str | None]]
    changed_pins: dict[str, list[str | None]]
    moved_parent_pins: dict[str, list[str]]
    """name -> [the parents' version, this image's] where [python] parent_pins = "move" moved it."""


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
    recipe = item.recipe
    assert recipe.conda_environment is not None
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
    source = recipe.spec.git_source
    assert source is not None and recipe.source is not None
    spec = DevPackageSpec(name=recipe.name, url=recipe.source, ref=source.ref)
    locked = resolve(spec, env, what=f"{recipe.name} [source]")
    return locked.model_copy(update={"url": source.repo})


def lock_image(item: BuildPlan, fetcher: Fetcher, *, upgrade: bool = False) -> LockOutcome:
    """Resolve dev package refs to commits, build their wheels, resolve the requirements, record
    the Debian package indexes a root image installs from (the run's Debian archive, through its
    mirror and trusting its one CA bundle), write the lock.

    Pins of the previous lock are kept where they still fit, unless `upgrade`.
    """
    recipe, config = item.recipe, fetcher.config
    previous = read_lock(recipe)
    if recipe.spec.git_source is not None:
        source = lock_source(recipe, fetcher.git_env)
        lock = ImageLock(inputs=inputs_digest(item), input_digests=input_digests(item), source=source)
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
        input_digests=input_digests(item),
        python=target.python_version,
        platform=platform_tag(target),
        dev_packages=dev,
        debian=package_indexes(config.debian_archive, suite, target.machine, config.mirror, config.ca_file) if suite else {},
        requirements=requirements,
    )
    return _outcome(item, previous, lock, write_lock(item, lock) or conda_written, dev)


def _outcome(
    item: BuildPlan, previous: ImageLock | None, lock: ImageLock, written: bool, dev: list[LockedDevPackage]
) -> LockOutcome:
    """What changed from `previous` to `lock` (a source's commit is listed among the dev packages)."""
    pins, parents = lock.pins(), _ancestor_pins(item)
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
        moved_parent_pins={name: [version, pins[name]] for name, version in sorted(parents.items()) if pins.get(name, version) != version},
    )
