"""Step 1, load: image recipes, images/<name>/image.toml, and the files they name.

A recipe is checked whole when it is loaded: its keys and values (recipe_schema.py), the files
it names (each present, a file, UTF-8), its patterns (each matching something), its conda
environment and lock and its smoke notebooks, so a bad one is refused before anything is
fetched or built.
"""

import glob
from dataclasses import dataclass
from pathlib import Path

from imagebuild.errors import RecipeError
from imagebuild.model.environment import check_conda_lock, load_environment
from imagebuild.model.external_schema import DockerfileSpec, SourceSpec
from imagebuild.model.names import apt_package
from imagebuild.model.notebook import load_notebook
from imagebuild.model.recipe_schema import FileCopy, RecipeFile
from imagebuild.model.text import read_text
from imagebuild.model.toml import parse_toml

RECIPE_FILE = "image.toml"
CONDA_LOCK_FILE = "conda-lock.yml"


@dataclass(frozen=True)
class Recipe:
    """A validated recipe with every file it names resolved and checked to exist."""

    name: str
    path: Path
    spec: RecipeFile
    apt_packages: tuple[str, ...]
    requirements: Path | None
    post_build: Path | None
    conda_environment: Path | None
    files: tuple[tuple[Path, FileCopy], ...]
    hooks: tuple[Path, ...]
    notebooks: tuple[Path, ...]
    source: str | None = None
    """Where [source] (or a Dockerfile's repo) is fetched from: its URL, or its folder as a file:// URL
    (fetched with git at the locked commit, not as a working tree)."""

    @property
    def directory(self) -> Path:
        return self.path.parent


def _existing(directory: Path, relative: str, recipe_path: Path, field: str) -> Path:
    path = directory / relative
    if path.is_dir():
        raise RecipeError(
            f"{field}: '{relative}' is a folder, where a file is expected",
            path=recipe_path,
            hint=f"name a file inside {path}, or correct the name in {RECIPE_FILE}",
        )
    if not path.is_file():
        raise RecipeError(
            f"{field}: file '{relative}' not found",
            path=recipe_path,
            hint=f"create {path} or correct the name in {RECIPE_FILE}",
        )
    return path


def _text_file(directory: Path, relative: str, recipe_path: Path, field: str) -> Path:
    """A file the recipe names that imagebuild or a tool reads as text: it must be UTF-8."""
    path = _existing(directory, relative, recipe_path, field)
    read_text(path)
    return path


def globbed(directory: Path, patterns: list[str]) -> tuple[Path, ...]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(Path(p) for p in glob.glob(str(directory / pattern), recursive=True) if Path(p).is_file())
    return tuple(sorted(found))


def _matched(directory: Path, patterns: list[str], given: bool, recipe_path: Path, field: str) -> tuple[Path, ...]:
    """The files `patterns` match; a pattern the recipe wrote that matches no file is an error
    (the defaults may match nothing: a recipe without hooks or smoke notebooks)."""
    for pattern in patterns if given else ():
        if not globbed(directory, [pattern]):
            raise RecipeError(
                f"{field}: the pattern '{pattern}' matches no file",
                path=recipe_path,
                hint=f"patterns are relative to {directory}; correct it, add the files, or remove it",
            )
    return globbed(directory, patterns)


def _apt_lines(listing: Path) -> list[str]:
    """The packages of an apt.txt: one a line, '#' comments, each checked with its line number."""
    packages = []
    for number, line in enumerate(read_text(listing).splitlines(), start=1):
        package = line.split("#")[0].strip()
        if not package:
            continue
        try:
            packages.append(apt_package(package))
        except ValueError as error:
            raise RecipeError(f"line {number}: {error}", path=listing, hint="write one Debian package name per line") from None
    return packages


def load_recipe(path: Path) -> Recipe:
    spec = parse_toml(path, RecipeFile)
    directory = path.parent
    apt = list(spec.os.packages) + (["locales"] if spec.os.locales else [])
    if spec.os.packages_file:
        apt += _apt_lines(_existing(directory, spec.os.packages_file, path, "[os].packages_file"))
    requirements = (
        _text_file(directory, spec.python.requirements, path, "[python].requirements") if spec.python.requirements else None
    )
    post_build = _text_file(directory, spec.post_build, path, "post_build") if spec.post_build else None
    conda_environment = None
    if spec.conda.environment:
        conda_environment = _existing(directory, spec.conda.environment, path, "[conda].environment")
        load_environment(conda_environment)
        if (directory / CONDA_LOCK_FILE).exists():
            check_conda_lock(directory / CONDA_LOCK_FILE)
    files = tuple(
        (_existing(directory, item.src, path, f"[files][{index}].src"), item) for index, item in enumerate(spec.files)
    )
    notebooks: tuple[Path, ...] = ()
    if not spec.source:  # a source's notebooks are in its repository
        given = "notebooks" in spec.smoke.model_fields_set
        notebooks = _matched(directory, spec.smoke.notebooks, given, path, "[smoke].notebooks")
        for notebook in notebooks:
            load_notebook(notebook)
    _check_needed_assets(spec, notebooks, directory, path)
    if spec.dockerfile is not None and spec.dockerfile.repo is None:
        _check_stack_folder(spec.dockerfile, directory, path)
    hooks_given = "before_notebook" in spec.hooks.model_fields_set
    return Recipe(
        name=directory.name,
        path=path,
        spec=spec,
        apt_packages=tuple(sorted({p for p in apt if p})),
        requirements=requirements,
        post_build=post_build,
        conda_environment=conda_environment,
        files=files,
        hooks=_matched(directory, spec.hooks.before_notebook, hooks_given, path, "[hooks].before_notebook"),
        notebooks=notebooks,
        source=_source_location(spec.git_source, directory, path) if spec.git_source else None,
    )


def _check_stack_folder(dockerfile: DockerfileSpec, directory: Path, recipe_path: Path) -> None:
    """A Dockerfile in the recipe folder: it and its context folder are there."""
    _text_file(directory, dockerfile.path, recipe_path, "dockerfile.path")
    if not (directory / dockerfile.context).is_dir():
        raise RecipeError(
            f"dockerfile.context: folder '{dockerfile.context}' not found",
            path=recipe_path,
            hint=f"name the build context folder relative to {directory}",
        )


def _source_location(source: SourceSpec, directory: Path, recipe_path: Path) -> str:
    if source.is_url:
        return source.repo
    folder = (directory / source.repo).resolve()
    if not folder.is_dir():
        raise RecipeError(
            f"[source].repo: folder '{source.repo}' not found",
            path=recipe_path,
            hint=f"give a git URL, or a git repository's folder relative to {directory}",
        )
    return folder.as_uri()


def _check_needed_assets(spec: RecipeFile, notebooks: tuple[Path, ...], directory: Path, path: Path) -> None:
    """Each [smoke].needs_asset entry names one of the recipe's smoke notebooks and optional assets."""
    names = {notebook.relative_to(directory).as_posix() for notebook in notebooks}
    optional = {asset.name for asset in spec.assets if asset.optional}
    for notebook, asset in spec.smoke.needs_asset.items():
        if notebook not in names:
            raise RecipeError(
                f"[smoke].needs_asset names '{notebook}', which is not one of the smoke notebooks",
                path=path,
                hint=f"use a path relative to the recipe folder: {', '.join(sorted(names)) or '(none found)'}",
            )
        if asset not in optional:
            raise RecipeError(
                f"[smoke].needs_asset: '{asset}' is not an optional asset of this recipe",
                path=path,
                hint=f"optional assets here: {', '.join(sorted(optional)) or '(none)'}; a required asset is always in the image",
            )


def load_recipes(images_dir: Path) -> dict[str, Recipe]:
    """Every images/<name>/image.toml below `images_dir`, keyed by folder name."""
    if not images_dir.is_dir():
        raise RecipeError("images folder not found", path=images_dir, hint="run imagebuild from the project root")
    return {path.parent.name: load_recipe(path) for path in sorted(images_dir.glob(f"*/{RECIPE_FILE}"))}
