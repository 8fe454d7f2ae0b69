"""A recipe's conda files as typed models: environment.yml (written by the user) and the
conda-lock.yml beside it (written by `imagebuild lock`, but a file anyone may replace).

Both are checked when the recipe is loaded, so an environment whose dependencies are not a
list, or a lock that is no lock, is refused before a lock or a build starts.
"""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from imagebuild.errors import RecipeError
from imagebuild.model.text import TOO_DEEP, TOO_DEEP_HINT, read_text
from imagebuild.model.toml import StrictModel, validated

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml when PyYAML has it: lock files list thousands of packages."""


def load_yaml(path: Path) -> Any:
    """The YAML document at `path`; text, syntax and nesting problems become one RecipeError with the line."""
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_LOADER)  # a safe loader: CSafeLoader or SafeLoader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        problem = " ".join(part for part in (error.context, error.problem) if part)
        hint = TOO_DEEP_HINT if "nesting depth" in problem else "fix the YAML at that line (indentation, a missing ']' or ':')"
        raise RecipeError(f"{where}not valid YAML: {problem}", path=path, hint=hint) from None
    except yaml.YAMLError as error:
        raise RecipeError(f"not valid YAML: {error}", path=path, hint="fix the YAML syntax") from None
    except RecursionError:
        raise RecipeError(TOO_DEEP, path=path, hint=TOO_DEEP_HINT) from None


class EnvironmentFile(StrictModel):
    """The schema of environment.yml, as far as imagebuild installs it (conda specs from channels)."""

    name: str | None = Field(default=None, description="ignored: the environment is installed at [conda].prefix")
    channels: list[str] = Field(description="conda channels, e.g. [conda-forge]")
    dependencies: list[str | dict[str, Any]] = Field(description="a list of conda specs, e.g. [numpy, 'lammps>=2023']")
    prefix: str | None = Field(default=None, description="ignored: [conda].prefix in image.toml decides")

    @property
    def specs(self) -> tuple[str, ...]:
        return tuple(str(item) for item in self.dependencies)


def load_environment(path: Path) -> EnvironmentFile:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise RecipeError(
            "is not an environment file: its top level must be a mapping with 'channels:' and 'dependencies:'",
            path=path,
            hint="write channels: [conda-forge] and dependencies: [numpy, ...]",
        )
    environment = validated(data, path, EnvironmentFile)
    for index, item in enumerate(environment.dependencies):
        if isinstance(item, dict):
            raise RecipeError(
                f"dependencies[{index}]: a '{next(iter(item), '')}:' section is not installed by imagebuild",
                path=path,
                hint="put pip packages in requirements.txt beside the recipe ([python] requirements)",
            )
    if not environment.channels:
        raise RecipeError("channels: none given", path=path, hint="name at least one channel, e.g. conda-forge")
    if not environment.dependencies:
        raise RecipeError("dependencies: none given", path=path, hint="list at least one conda package, e.g. [numpy]")
    return environment


class _LockedPackage(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    version: str
    manager: str
    platform: str
    url: str
    hash: dict[str, str | None]


class _CondaLock(BaseModel):
    """The parts of a conda-lock file (version 1) the build reads; the rest is conda-lock's."""

    model_config = ConfigDict(extra="allow")
    version: int
    metadata: dict[str, Any]
    package: list[_LockedPackage]


def check_conda_lock(path: Path) -> None:
    """A conda-lock.yml is a lock: a mapping with version, metadata and a package list."""
    data = load_yaml(path)
    hint = f"run 'imagebuild lock {path.parent.name}' to write it again"
    if not isinstance(data, dict) or not {"version", "metadata", "package"} <= set(data):
        raise RecipeError(
            "is not a conda-lock file: it needs 'version', 'metadata' and 'package' at the top level", path=path, hint=hint
        )
    try:
        validated(data, path, _CondaLock)
    except RecipeError as error:
        raise RecipeError(f"is not a conda-lock file: {error.message}", path=path, hint=hint) from None
