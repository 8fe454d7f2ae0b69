"""Step 3, gather inputs: everything an image takes from outside its recipe folder, on the
host and verified before any build starts: assets from the cache (fetched unless offline),
the image's lock, the wheels of its dev packages and the commit of its [source] repository.

A missing input fails here, naming each missing asset and the command that supplies it,
so a build never stops half way for want of a file.
"""

from dataclasses import dataclass
from pathlib import Path

from imagebuild.errors import AssetError, ImagebuildError, LockError
from imagebuild.inputs.assets import DeclaredAsset
from imagebuild.inputs.conda import conda_lock_path
from imagebuild.inputs.devpackages import LockedDevPackage
from imagebuild.inputs.fetch import Fetcher
from imagebuild.inputs.lockfile import ImageLock, read_lock
from imagebuild.inputs.lockstate import lock_state
from imagebuild.model.recipe_schema import AssetSpec
from imagebuild.plan import BuildPlan


@dataclass(frozen=True)
class ImageInputs:
    """What `render` adds to an image beyond its recipe folder."""

    lock: ImageLock | None = None
    assets: tuple[tuple[AssetSpec, Path], ...] = ()
    skipped: tuple[AssetSpec, ...] = ()
    dev_wheels: tuple[Path, ...] = ()
    checkouts: tuple[tuple[str, bytes], ...] = ()
    """(folder in the image, tar of the files) of dev packages with a `checkout` folder."""
    conda_lock: Path | None = None
    source: LockedDevPackage | None = None
    """The locked commit a [source] recipe's repository is captured at (binder.py)."""

    def wheels(self) -> list[tuple[str, Path]]:
        """(file name, file on the host) of every wheel the image installs: dev packages, then wheel assets."""
        return [(path.name, path) for path in self.dev_wheels] + [(s.file_name, path) for s, path in self.assets if s.wheel]


def gather(plans: list[BuildPlan], fetcher: Fetcher) -> dict[str, ImageInputs]:
    """Inputs of every image, or one error listing every asset that is missing."""
    problems: list[ImagebuildError] = []
    found: dict[str, ImageInputs] = {}
    for item in plans:
        try:
            found[item.name] = _inputs(item, fetcher, problems)
        except (AssetError, LockError) as error:
            problems.append(error)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise AssetError(
            f"{len(problems)} inputs are missing or unusable:\n" + "\n".join(f"  - {p.render()}" for p in problems),
            hint="supply each as its line says; nothing was built",
        )
    return found


def _inputs(item: BuildPlan, fetcher: Fetcher, problems: list[ImagebuildError]) -> ImageInputs:
    recipe = item.recipe
    lock = read_lock(recipe)
    state = lock_state(item, lock)
    if state.state == "stale":
        fetcher.say(f"warning: {recipe.name}'s lock is {state.explain()}; {state.hint()}")
    if recipe.spec.git_source is not None and (lock is None or lock.source is None):
        raise LockError(
            f"{recipe.name}: its repository ({recipe.spec.git_source.repo}) has no locked commit yet",
            path=recipe.path,
            hint=f"run 'imagebuild lock {recipe.name}' to pin [source].ref to a commit",
        )
    if recipe.spec.dev_packages and lock is None:
        raise LockError(
            f"{recipe.name}: dev packages have no locked commit yet",
            path=recipe.path,
            hint=f"run 'imagebuild lock {recipe.name}' to pin each ref to a commit",
        )
    conda_lock = None
    if recipe.conda_environment is not None:
        conda_lock = conda_lock_path(recipe.directory)
        if not conda_lock.is_file():
            raise LockError(
                f"{recipe.name}: the conda environment has no lock yet",
                path=recipe.conda_environment,
                hint=f"run 'imagebuild lock {recipe.name}' to solve it into {conda_lock.name}",
            )
    assets: list[tuple[AssetSpec, Path]] = []
    skipped: list[AssetSpec] = []
    wheels: list[Path] = []
    checkouts: list[tuple[str, bytes]] = []
    if lock is not None:
        locked = {package.name: package for package in lock.dev_packages}
        for spec in recipe.spec.dev_packages:
            if spec.name not in locked:
                raise LockError(f"{recipe.name}: dev package '{spec.name}' is not in its lock", path=state.path, hint=state.hint())
            wheels.append(fetcher.dev_wheel(item, locked[spec.name]))
            if spec.checkout is not None:
                checkouts.append((spec.checkout, fetcher.dev_checkout(locked[spec.name])))
    for asset in recipe.spec.assets:
        try:
            path = fetcher.asset(DeclaredAsset(asset, recipe))
        except AssetError as error:
            if not asset.optional:
                problems.append(error)
                continue
            fetcher.say(f"warning: building {recipe.name} without optional asset '{asset.name}': {error.message}")
            skipped.append(asset)
            continue
        assets.append((asset, path))
    return ImageInputs(
        lock=lock,
        assets=tuple(assets),
        skipped=tuple(skipped),
        dev_wheels=tuple(wheels),
        checkouts=tuple(checkouts),
        conda_lock=conda_lock,
        source=lock.source if lock is not None else None,
    )
